"""The schema of a benchmark task's YAML, its checks, and the Jinja environment its templates use.

Keys follow lm-evaluation-harness's task YAML where they mean the same thing (see
:mod:`r1rl.eval.registry` for what each output type does with them); templates render in
lm-eval's environment (``StrictUndefined``, trailing newlines kept), so a prompt copied from
lm-eval renders to the same string.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, Literal

import jinja2
import jinja2.meta
from pydantic import Field
from r1rl.eval.metrics import get_metric, split_at_k
from r1rl.eval.scorers import SCORERS, get_scorer

from r1rl.errors import UserError, did_you_mean
from r1rl.strict import Strict

# lm-eval's template environment (lm_eval/utils.py): undefined fields are errors, newlines are kept.
_ENV = jinja2.Environment(
    loader=jinja2.BaseLoader(), undefined=jinja2.StrictUndefined, keep_trailing_newline=True
)
# Jinja's own ``tojson`` escapes <, >, & and ' for HTML; few-shot JSON answers want plain JSON.
_ENV.filters["json"] = lambda value: json.dumps(value, ensure_ascii=False)

Quoting = Literal["none", "csv"]


class LocalSplit(Strict):
    """One split's file, with any reading option that differs from the task's defaults."""

    file: str
    header: bool | None = None
    quoting: Quoting | None = None
    columns: dict[str, str | int] | None = None
    filter: str | None = Field(None, description="Jinja expression; keep the documents where it is true")


class LocalSource(Strict):
    """Files under the data directory: GLUE-layout TSV or JSON records (see :mod:`r1rl.eval.data`)."""

    dir: str = Field(description="folder relative to the data directory, e.g. glue/SST-2")
    format: Literal["tsv", "jsonl", "json"] = "tsv"
    splits: dict[str, str | LocalSplit] = Field(description="split name -> file name (or LocalSplit)")
    header: bool = True
    quoting: Quoting = Field("none", description="'none': csv.QUOTE_NONE; 'csv': standard quoting")
    columns: dict[str, str | int] | None = Field(
        None, description="document field -> header name or position (TSV); JSON: rename/select"
    )
    label_map: dict[str, int] = Field(default_factory=dict, description="string label -> Hub integer")


class HubSource(Strict):
    path: str
    name: str | None = None


class GenerationKwargs(Strict):
    """lm-eval's ``generation_kwargs``: stop sequences, length and sampling of a generation task."""

    until: list[str] | None = Field(None, description="stop sequences (default: [fewshot_delimiter])")
    max_gen_toks: int = Field(256, ge=1, description="most tokens generated (lm-eval's default 256)")
    do_sample: bool = False
    temperature: float = Field(0.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)


class TaskSpec(Strict):
    """A task as written in its YAML file."""

    task: str
    reference: str = Field("", description="where the prompt format comes from")
    output_type: Literal["multiple_choice", "choice_expectation", "generate_until"] = "multiple_choice"
    source: Literal["local", "hub"] = "local"
    local: LocalSource | None = None
    hub: HubSource | None = None
    test_split: str | None = Field(None, description="the split scored; default validation_split")
    validation_split: str = "validation"
    fewshot_split: str = "train"
    num_fewshot: int | None = Field(None, ge=0, description="used when the caller gives no num_fewshot")
    fewshot_samples: list[dict[str, Any]] | None = Field(
        None, description="few-shot documents written out, taken in order (lm-eval's first_n)"
    )
    doc_to_text: str
    doc_to_target: str | None = Field(
        None, description="field or template: the gold choice index, or a generation task's few-shot answer"
    )
    doc_to_choice: list[str] | None = None
    doc_to_score: str | None = Field(None, description="choice_expectation: field with the real gold")
    choice_values: list[float] | None = None
    label_type: Literal["int", "float"] = "int"
    metric_list: list[str]
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    generation_kwargs: GenerationKwargs | None = None
    repeats: int = Field(1, ge=1, description="generate_until: samples per document (n of pass@k)")
    scorer: str | None = Field(None, description="generate_until: a scorer of r1rl.eval.scorers")
    scorer_columns: dict[str, str] = Field(
        default_factory=dict, description="scorer column -> document field it is read from"
    )


def _check_spec(s: TaskSpec) -> None:
    """What the schema cannot say: metrics exist and fit the output type, templates parse."""
    where = f"task {s.task!r}"
    if s.output_type == "generate_until":
        _check_generation_spec(s, where)
    else:
        for name in s.metric_list:
            metric = get_metric(name)
            fits = ("score_pair",) if s.output_type == "choice_expectation" else ("correct", "class_pair")
            if metric.item not in fits:
                raise UserError(f"{where}: metric {name!r} does not apply to output_type {s.output_type!r}")
        if not s.doc_to_choice:
            raise UserError(f"{where}: doc_to_choice is empty")
        if s.doc_to_target is None:
            raise UserError(f"{where}: {s.output_type} needs doc_to_target (the gold choice index)")
    if s.output_type == "choice_expectation":
        if s.choice_values is None or len(s.choice_values) != len(s.doc_to_choice or []):
            raise UserError(f"{where}: choice_expectation needs one choice_values entry per choice")
        if s.doc_to_score is None:
            raise UserError(f"{where}: choice_expectation needs doc_to_score (the gold field)")
    for key in ("doc_to_text", "doc_to_target"):
        try:
            _ENV.parse(getattr(s, key) or "")
        except jinja2.TemplateSyntaxError as e:
            raise UserError(f"{where}: {key} is not a valid template ({e.message})") from None
    if s.local is not None and s.local.format == "tsv" and s.local.columns is None:
        if any(isinstance(v, str) or v.columns is None for v in s.local.splits.values()):
            raise UserError(f"{where}: local TSV files need columns (document field -> header or position)")


def _check_generation_spec(s: TaskSpec, where: str) -> None:
    """A generation task names a scorer, metrics among its outputs, and a k no larger than repeats."""
    if s.scorer is None:
        raise UserError(f"{where}: generate_until needs a scorer{did_you_mean('', SCORERS)}")
    scorer = get_scorer(s.scorer)
    for name in s.metric_list:
        base, k = split_at_k(name)
        if base not in scorer.outputs:
            raise UserError(
                f"{where}: metric {name!r}: scorer {s.scorer!r} has no output {base!r} "
                f"(outputs: {', '.join(scorer.outputs)}; pass@k is written <output>@<k>)"
            )
        if k is not None and not 1 <= k <= s.repeats:
            raise UserError(f"{where}: metric {name!r} needs 1 <= k <= repeats ({s.repeats})")
    gen = s.generation_kwargs or GenerationKwargs()
    if s.repeats > 1 and not gen.do_sample:
        raise UserError(
            f"{where}: repeats: {s.repeats} with greedy decoding gives identical samples; set do_sample"
        )
    if gen.do_sample and gen.temperature <= 0:
        raise UserError(f"{where}: do_sample needs temperature > 0")


@functools.lru_cache(maxsize=64)
def template_renderer(template: str) -> Callable[[dict[str, Any]], str]:
    """``template`` compiled in lm-eval's environment: ``render(row) -> str``; a syntax error is a UserError.

    A bare identifier is a field name (lm-eval's rule): it renders to that field's value.
    """
    if _is_field(template):
        return lambda row: str(row[template])
    try:
        compiled = _ENV.from_string(template)
    except jinja2.TemplateSyntaxError as e:
        raise UserError(f"not a valid template ({e.message})") from None

    def render(row: dict[str, Any]) -> str:
        try:
            return compiled.render(**row)
        except jinja2.UndefinedError as e:
            raise UserError(f"template: {e.message}") from None

    return render


def template_fields(template: str) -> set[str]:
    """The row fields a template reads (a bare identifier is a field name itself)."""
    if _is_field(template):
        return {template}
    try:
        return _variables(template)
    except jinja2.TemplateSyntaxError as e:
        raise UserError(f"not a valid template ({e.message})") from None


def _is_field(template: str) -> bool:
    return template.isidentifier()


def _variables(template: str) -> set[str]:
    return set(jinja2.meta.find_undeclared_variables(_ENV.parse(template)))
