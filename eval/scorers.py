"""Per-sample scorers of generation tasks: the task-tier reward functions, seen from the benchmark.

A scorer has a reward function's signature, ``fn(prompts, completions, **columns)`` with one
value per completion in every column (TRL's convention, :mod:`r1rl.rewards.protocol`), and
returns several named per-sample values, ``{output: [float, ...]}``. A task's ``metric_list``
names these outputs; the harness averages them over a document's samples (``pass``), or turns
them into the unbiased ``pass@k`` estimate (``pass@10``: :func:`r1rl.eval.metrics.pass_at_k`).

Each scorer calls the task-tier reward itself, so the benchmark and the reward cannot disagree
(STYLE.md, 7):

==========  =====================================  ==========================================
scorer      outputs                                reward it wraps
==========  =====================================  ==========================================
math        exact_match_strict,                    ``math_task`` (strict); the flexible one
            exact_match_flexible                   falls back to the last number, as lm-eval
code        pass, tests                            ``code_task`` (sandbox): ``tests`` is its
                                                   fraction of asserts (or ``input_output``
                                                   cases), ``pass`` = all passed
extraction  field_f1, exact_match                  ``extraction_task`` (``field_f1`` on
                                                   ``extract_json``); exact = F1 of 1
rouge       rouge1, rouge2, rougeL                 none in ``r1rl.rewards`` yet: F1 from
                                                   ``rouge-score``, best over the references
==========  =====================================  ==========================================

A value that is not a finite number (``None``: not applicable; NaN: a reward error such as a
sandbox that cannot start) is refused by the harness rather than counted as a failure, since a
benchmark number with broken scoring would be wrong without saying so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from r1rl.rewards.code import code_task
from r1rl.rewards.extraction import extraction_task
from r1rl.rewards.math import extract_final_number, math_task, numeric_equal, reference_number
from r1rl.rewards.sandbox import drop_constant_asserts  # re-exported for the eval scorers

from r1rl.errors import UserError
from r1rl.registry import Registry

ScoreFn = Callable[..., dict[str, list[Any]]]


@dataclass(frozen=True)
class Scorer:
    """A named scorer: ``fn``, the per-sample ``outputs`` it returns, the columns it reads.

    ``columns`` lists groups of column names; each group needs at least one present (the code
    scorer reads MBPP's ``test_list`` or HumanEval's ``test``).
    """

    name: str
    fn: ScoreFn
    outputs: tuple[str, ...]
    columns: tuple[tuple[str, ...], ...] = ()


SCORERS: Registry[Scorer] = Registry("scorer")


def register_scorer(
    name: str, outputs: Sequence[str], columns: Sequence[Sequence[str]] = ()
) -> Callable[[ScoreFn], ScoreFn]:
    """Register ``fn(prompts, completions, **columns) -> {output: values}``; duplicates raise."""

    def deco(fn: ScoreFn) -> ScoreFn:
        SCORERS.add(name, Scorer(name, fn, tuple(outputs), tuple(tuple(g) for g in columns)))
        return fn

    return deco


def get_scorer(name: str) -> Scorer:
    return SCORERS.get(name)


@register_scorer("math", outputs=("exact_match_strict", "exact_match_flexible"), columns=[("answer",)])
def math_scorer(prompts: list[str], completions: list[str], answer: list[Any], **columns: Any) -> dict:
    """GSM8K accuracy: the ``math_task`` reward, and lm-eval's flexible fallback to the last number.

    >>> completions = [" 3*4=12 so 12\\n#### 12", " so the answer is 12.", " 11"]
    >>> math_scorer(["q"] * 3, completions, answer=["#### 12"] * 3)
    {'exact_match_strict': [1.0, 0.0, 0.0], 'exact_match_flexible': [1.0, 1.0, 0.0]}
    """
    strict = math_task(prompts, completions, answer=answer)
    flexible = [
        float(numeric_equal(extract_final_number(c, flexible=True), reference_number(a)))
        for c, a in zip(completions, answer)
    ]
    return {"exact_match_strict": strict, "exact_match_flexible": flexible}


@register_scorer("code", outputs=("pass", "tests"), columns=[("test_list", "test", "input_output")])
def code_scorer(prompts: list[str], completions: list[str], **columns: Any) -> dict:
    """Programs run against the document's tests in the sandbox by the ``code_task`` reward.

    ``pass`` is 1.0 when every assert passed: HumanEval's and MBPP's criterion, given that all
    of their asserts are reachable (checked on every canonical solution in ``tests/eval``).
    HumanEval's ``assert True`` lines are dropped first (:func:`drop_constant_asserts`).

    >>> code_scorer(["Write sq."] * 2, ["def sq(x): return x * x", "def sq(x): return x + x"],
    ...             test_list=[["assert sq(3) == 9", "assert sq(2) == 4"]] * 2)
    {'pass': [1.0, 0.0], 'tests': [1.0, 0.5]}
    """
    columns = dict(columns)
    if isinstance(columns.get("test"), list):
        columns["test"] = [drop_constant_asserts(t) if isinstance(t, str) else t for t in columns["test"]]
    tests = code_task(prompts, completions, **columns)
    return {"pass": [1.0 if t == 1.0 else 0.0 for t in tests], "tests": tests}


@register_scorer("extraction", outputs=("field_f1", "exact_match"), columns=[("answer", "reference")])
def extraction_scorer(prompts: list[str], completions: list[str], **columns: Any) -> dict:
    """Field-level F1 of the completion's JSON (the ``extraction_task`` reward) and exact match.

    F1 is 1 exactly when the (field, normalised value) sets are equal, so exact match is F1 == 1.

    >>> extraction_scorer(["p"] * 2, ['{"Agreement Date": "October 1, 2019"}', '{"Agreement Date": "2019"}'],
    ...                   answer=[["10/1/2019"]] * 2, schema=["Agreement Date"] * 2)
    {'field_f1': [1.0, 0.0], 'exact_match': [1.0, 0.0]}
    """
    f1 = extraction_task(prompts, completions, **columns)
    return {"field_f1": f1, "exact_match": [1.0 if f == 1.0 else 0.0 for f in f1]}


ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


@register_scorer("rouge", outputs=ROUGE_TYPES, columns=[("references",)])
def rouge_scorer(prompts: list[str], completions: list[str], references: list[Any], **columns: Any) -> dict:
    """ROUGE-1/2/L F1 (``rouge-score``, Porter stemming), each the best over the references.

    SciTLDR scores a summary against each of its references and keeps the best (Cachola et al. 2020).

    >>> out = rouge_scorer(["p"] * 2, ["a dog ran", "a cat"], references=[["the cat sat", "a dog ran"]] * 2)
    >>> out["rouge1"], [round(x, 3) for x in out["rouge2"]]
    ([1.0, 0.4], [1.0, 0.0])
    """
    scorer = _rouge()
    out: dict[str, list[Any]] = {k: [] for k in ROUGE_TYPES}
    for c, refs in zip(completions, references):
        refs = [refs] if isinstance(refs, str) else list(refs or [])
        if not refs:
            for k in ROUGE_TYPES:
                out[k].append(None)  # nothing to compare with: not applicable
            continue
        best = scorer.score_multi(refs, c)
        for k in ROUGE_TYPES:
            out[k].append(float(best[k].fmeasure))
    return out


@cache
def _rouge() -> Any:
    try:
        from rouge_score import rouge_scorer as rs
    except ImportError:
        raise UserError("the rouge scorer needs the rouge-score package: pip install rouge-score") from None
    return rs.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
