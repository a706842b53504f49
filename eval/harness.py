"""Benchmark harness: tasks scored the way lm-evaluation-harness scores them.

    results = evaluate(model, tokenizer, ["sst2", "mrpc", "gsm8k"], limit=200, num_fewshot=0)
    write_results(run_dir, results)   # eval_results.json, eval_results.md, eval_samples.jsonl

For each task: load the evaluation split (all tasks are loaded before any scoring, so a missing
file or column fails at once), keep the first ``limit`` documents, build each document's context
(few-shot examples, then its prompt), then

- log-likelihood tasks (``multiple_choice``, ``choice_expectation``): score every
  ``(context, " " + choice)`` pair in one batched pass (:mod:`r1rl.eval.loglik`), turn the
  log-likelihoods into per-example items and reduce them with the task's metrics
  (:mod:`r1rl.eval.metrics`);
- generation tasks (``generate_until``): generate ``repeats`` continuations per context until a
  stop sequence (:mod:`r1rl.eval.generate`), score each with the task's scorer (the task-tier
  reward, :mod:`r1rl.eval.scorers`), reduce each document's samples to one value per metric
  (mean, or unbiased pass@k) and average over documents, with the mean's standard error.

Results (also the shape of ``eval_results.json``, less ``samples``)::

    {"model": str,
     "tasks": {task: {metric: float, "<metric>_stderr": float, "n": int}},
     "config": {"limit", "num_fewshot", "fewshot_seed", "batch_size", "max_length", "source", ...,
                "generation": {task: {"until", "max_gen_toks", "do_sample", "temperature", ...}}},
     "timing": {task: {"seconds", "examples_per_s", "requests"}, "total_s": float},
     "samples": {task: [per-example record, ...]}}

A generation task's record holds ``context``, ``completions`` (``repeats`` of them), ``finish``
(``stop``/``eos``/``length`` each), ``scores`` (the scorer's per-sample values) and one value
per metric.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from r1rl.eval.generate import effective_max_gen_toks, generate_until
from r1rl.eval.loglik import loglikelihood, resolve_max_length
from r1rl.eval.metrics import get_metric, mean_stderr, pass_at_k, split_at_k, stderr
from r1rl.eval.registry import FewshotSampler, Task, get_task
from r1rl.eval.scorers import get_scorer

from r1rl.errors import UserError
from r1rl.models.factory import load_merged, load_tokenizer
from r1rl.rundir import atomic_write_text

FEWSHOT_SEED = 1234  # lm-eval's default fewshot_random_seed


def evaluate(
    model: Any,
    tokenizer: Any,
    tasks: Sequence[str | Task],
    *,
    limit: int | float | None = None,
    num_fewshot: int | None = 0,
    batch_size: int = 32,
    seed: int = FEWSHOT_SEED,
    fewshot_split: str | None = None,
    data_dir: str | Path | None = None,
    source: str | None = None,
    max_length: int | None = None,
    bootstrap_iters: int = 1000,
    max_gen_toks: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Score ``model`` on ``tasks``; see the module docstring for the returned dict.

    Args:
        model: a causal LM (any ``transformers`` model, PEFT-wrapped or not) or a path to one
            (loaded with :func:`r1rl.models.factory.load_merged`; adapters are merged).
        tokenizer: its tokenizer; loaded from ``model`` when that is a path and this is ``None``.
        tasks: registered task names (:func:`r1rl.eval.registry.list_tasks`) or :class:`Task` objects.
        limit: evaluate the first ``limit`` documents (a float in (0, 1) is a fraction, as lm-eval).
        num_fewshot: examples drawn from ``fewshot_split`` (default: each task's, ``train``);
            ``None`` takes each task's own ``num_fewshot`` (lm-eval's: gsm8k 5, mbpp 3, else 0).
        seed: few-shot sampling seed (lm-eval's ``fewshot_random_seed``), bootstrap seed and
            sampling seed of generation tasks.
        source: ``"local"`` or ``"hub"``, overriding each task's YAML.
        max_length: context length for left truncation; default from the model config.
        max_gen_toks: cap on generated tokens for every generation task (default: each task's).
    """
    _check_options(num_fewshot, batch_size, max_gen_toks, limit)
    loaded = [get_task(t) for t in tasks]  # unknown names fail before anything is loaded
    names = [t.name for t in loaded]
    if len(set(names)) != len(names):
        raise UserError(f"a task is listed twice: {names}")
    model_name = str(model) if isinstance(model, (str, Path)) else _model_name(model)
    model, tokenizer = _model_and_tokenizer(model, tokenizer)
    max_length = max_length or resolve_max_length(model, tokenizer)

    shots_of = {t.name: num_fewshot if num_fewshot is not None else (t.spec.num_fewshot or 0) for t in loaded}
    data = _load_documents(loaded, limit, shots_of, fewshot_split, data_dir, source)

    results: dict[str, Any] = {"model": model_name, "tasks": {}, "config": {}, "timing": {}, "samples": {}}
    t_all = time.perf_counter()
    for task in loaded:
        docs, shots = data[task.name]
        t0 = time.perf_counter()
        common: dict[str, Any] = {"num_fewshot": shots_of[task.name], "batch_size": batch_size, "seed": seed,
                  "max_length": max_length, "progress": progress}  # fmt: skip
        if task.is_generation:
            run = evaluate_generation_task(
                model, tokenizer, task, docs, shots, max_gen_toks=max_gen_toks, **common
            )
        else:
            run = evaluate_task(
                model, tokenizer, task, docs, shots, bootstrap_iters=bootstrap_iters, **common
            )
        metrics, records, n_req = run
        dt = time.perf_counter() - t0
        results["tasks"][task.name] = metrics
        results["samples"][task.name] = records
        results["timing"][task.name] = {
            "seconds": round(dt, 4),
            "examples_per_s": round(len(docs) / dt, 2) if dt > 0 else None,
            "requests": n_req,
        }
    results["timing"]["total_s"] = round(time.perf_counter() - t_all, 4)
    results["config"] = {
        "tasks": names, "limit": limit, "num_fewshot": num_fewshot, "num_fewshot_by_task": shots_of,
        "fewshot_seed": seed, "fewshot_split": fewshot_split, "batch_size": batch_size,
        "max_length": max_length, "source": source,
        "data_dir": str(data_dir) if data_dir is not None else None, "bootstrap_iters": bootstrap_iters,
        **_task_config(loaded, max_gen_toks, max_length),
    }  # fmt: skip
    return results


def _check_options(num_fewshot: int | None, batch_size: int, max_gen_toks: int | None, limit: Any) -> None:
    """The caller's options, checked before anything is loaded."""
    if num_fewshot is not None and num_fewshot < 0:
        raise UserError(f"num_fewshot must be >= 0, got {num_fewshot}")
    if batch_size < 1:
        raise UserError(f"batch_size must be >= 1, got {batch_size}")
    if max_gen_toks is not None and max_gen_toks < 1:
        raise UserError(f"max_gen_toks must be >= 1, got {max_gen_toks}")
    _limit(limit, 1)


def _model_and_tokenizer(model: Any, tokenizer: Any) -> tuple[Any, Any]:
    """An in-memory model and its tokenizer: a path is loaded (adapters merged)."""
    if isinstance(model, (str, Path)):
        tokenizer = tokenizer if tokenizer is not None else load_tokenizer(str(model))
        model = load_merged(str(model))
    if tokenizer is None:
        raise UserError("evaluate: a tokenizer is needed with an in-memory model")
    return model, tokenizer


def evaluate_task(
    model: Any,
    tokenizer: Any,
    task: Task,
    docs: list[dict[str, Any]],
    fewshot_docs: list[dict[str, Any]] | None = None,
    *,
    num_fewshot: int = 0,
    batch_size: int = 32,
    seed: int = FEWSHOT_SEED,
    max_length: int | None = None,
    bootstrap_iters: int = 1000,
    progress: bool = False,
) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    """Metrics, per-example records and the number of scored pairs for ``task`` on ``docs``."""
    contexts = build_contexts(task, docs, fewshot_docs, num_fewshot, seed)
    pairs, owner = [], []
    for i, (ctx, doc) in enumerate(zip(contexts, docs)):
        reqs = task.requests(ctx, doc)
        pairs += reqs
        owner += [i] * len(reqs)
    scores = loglikelihood(
        model, tokenizer, pairs, batch_size=batch_size, max_length=max_length, progress=progress
    )
    per_doc: list[list[tuple[float, bool]]] = [[] for _ in docs]
    for i, s in zip(owner, scores):
        per_doc[i].append(s)
    records = [score_example(task, doc, ctx, res) for doc, ctx, res in zip(docs, contexts, per_doc)]
    return aggregate(task, records, bootstrap_iters=bootstrap_iters, seed=seed), records, len(pairs)


def build_contexts(
    task: Task,
    docs: list[dict[str, Any]],
    fewshot_docs: list[dict[str, Any]] | None,
    num_fewshot: int,
    seed: int,
) -> list[str]:
    """Each document's context: ``num_fewshot`` sampled examples, then its prompt; fixed by ``seed``."""
    if num_fewshot == 0:
        return [task.doc_to_text(d) for d in docs]
    if not fewshot_docs:
        raise UserError(f"task {task.name!r}: num_fewshot={num_fewshot} but there are no few-shot documents")
    if task.spec.fewshot_samples is not None:  # written-out examples, in order (lm-eval's first_n)
        if len(fewshot_docs) < num_fewshot:
            have = len(fewshot_docs)
            raise UserError(
                f"task {task.name!r}: num_fewshot={num_fewshot} but it has {have} fewshot_samples"
            )
        return [task.fewshot_context(d, fewshot_docs[:num_fewshot]) for d in docs]
    sampler = FewshotSampler(fewshot_docs, seed)  # one generator per task, used in document order
    return [task.fewshot_context(d, sampler.sample(num_fewshot, eval_doc=d)) for d in docs]


def score_example(
    task: Task, doc: dict[str, Any], context: str, res: list[tuple[float, bool]]
) -> dict[str, Any]:
    """One example's record: log-likelihoods per choice, prediction, gold and per-example metric items."""
    lls = np.array([r[0] for r in res], dtype=np.float64)  # (choices,)
    rec: dict[str, Any] = {
        "doc": doc,
        "context": context,
        "choices": task.choices(doc),
        "loglikelihoods": lls.tolist(),
        "is_greedy": [r[1] for r in res],
    }
    if task.spec.output_type == "choice_expectation":
        probs = np.exp(lls - lls.max())
        probs /= probs.sum()
        rec["pred"] = float(probs @ np.asarray(task.spec.choice_values, dtype=np.float64))
        rec["gold"] = task.doc_to_score(doc)
    else:
        rec["pred"] = int(np.argmax(lls))  # first maximum on ties, as lm-eval's np.argmax
        rec["gold"] = task.doc_to_target(doc)
        rec["acc"] = float(rec["pred"] == rec["gold"])
    return rec


def aggregate(
    task: Task, records: list[dict[str, Any]], bootstrap_iters: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """``{metric: value, "<metric>_stderr": se, "n": n}`` for the task's metric list.

    A generation task's records carry one value per metric (:func:`doc_metrics`): the task's
    value is their mean, with the mean's standard error.
    """
    out: dict[str, Any] = {}
    if task.is_generation:
        for name in task.spec.metric_list:
            values = [r[name] for r in records]
            out[name] = float(np.mean(values)) if values else float("nan")
            out[f"{name}_stderr"] = mean_stderr(values)
        out["n"] = len(records)
        return out
    for name in task.spec.metric_list:
        metric = get_metric(name)
        if metric.item == "correct":
            items: list[Any] = [r["acc"] for r in records]
        else:
            items = [(r["gold"], r["pred"]) for r in records]
        out[name] = metric.fn(items) if items else float("nan")
        out[f"{name}_stderr"] = stderr(metric, items, bootstrap_iters, seed) if items else float("nan")
    out["n"] = len(records)
    return out


def evaluate_generation_task(
    model: Any,
    tokenizer: Any,
    task: Task,
    docs: list[dict[str, Any]],
    fewshot_docs: list[dict[str, Any]] | None = None,
    *,
    num_fewshot: int = 0,
    batch_size: int = 32,
    seed: int = FEWSHOT_SEED,
    max_length: int | None = None,
    max_gen_toks: int | None = None,
    progress: bool = False,
) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    """Metrics, per-document records and the number of generations for a ``generate_until`` task.

    Each record holds the document, its context, the ``repeats`` completions (with why each
    stopped), the scorer's per-sample values under ``scores`` and one value per metric.
    """
    contexts = build_contexts(task, docs, fewshot_docs, num_fewshot, seed)
    gen, n = task.generation, task.spec.repeats
    outs = generate_until(
        model, tokenizer, [c for c in contexts for _ in range(n)],
        until=gen.until or [], max_gen_toks=max_gen_toks or gen.max_gen_toks, do_sample=gen.do_sample,
        temperature=gen.temperature, top_p=gen.top_p, batch_size=batch_size, max_length=max_length,
        seed=seed, progress=progress,
    )  # fmt: skip
    scores = score_samples(task, docs, [o.text for o in outs])
    records = []
    for i, (doc, ctx) in enumerate(zip(docs, contexts)):
        mine = outs[i * n : (i + 1) * n]
        rec: dict[str, Any] = {
            "doc": doc,
            "context": ctx,
            "prompt_truncated": mine[0].prompt_truncated,
            "completions": [o.text for o in mine],
            "finish": [o.finish for o in mine],
            "scores": {k: v[i * n : (i + 1) * n] for k, v in scores.items()},
        }
        rec.update(doc_metrics(task.spec.metric_list, rec["scores"]))
        records.append(rec)
    return aggregate(task, records), records, len(outs)


def score_samples(task: Task, docs: list[dict[str, Any]], completions: list[str]) -> dict[str, list[float]]:
    """The task's scorer on ``completions`` (``repeats`` per document, in document order).

    The scorer sees each document's prompt without few-shot examples and its columns
    (:meth:`Task.scorer_columns`). A value that is not a finite number is a :class:`UserError`.
    """
    scorer, n = get_scorer(task.spec.scorer), task.spec.repeats  # type: ignore[arg-type]
    prompts = [task.doc_to_text(d) for d in docs for _ in range(n)]
    cols = [task.scorer_columns(d) for d in docs for _ in range(n)]
    names = list(dict.fromkeys(k for c in cols for k in c))
    out = scorer.fn(prompts, completions, **{k: [c.get(k) for c in cols] for k in names})
    for name in scorer.outputs:
        values = out.get(name)
        if values is None or len(values) != len(completions):
            raise ValueError(
                f"scorer {scorer.name!r}: output {name!r} does not have one value per completion"
            )
        for j, v in enumerate(values):
            if v is None or not math.isfinite(v):
                why = getattr(v, "detail", "") or ("not applicable" if v is None else "not a number")
                raise UserError(
                    f"task {task.name!r}: scorer {scorer.name!r} could not score document {j // n} "
                    f"(idx {docs[j // n].get('idx')!r}), sample {j % n}: {why}"
                )
    return {name: [float(v) for v in out[name]] for name in scorer.outputs}


def doc_metrics(metric_list: list[str], scores: dict[str, list[float]]) -> dict[str, float]:
    """One document's value per metric: ``<output>@<k>`` is pass@k of its samples, else their mean.

    A sample counts as correct for pass@k when its value is 1 (all tests passed, exact match).

    >>> doc_metrics(["pass@1", "pass@2", "tests"], {"pass": [1.0, 0, 0, 0], "tests": [1.0, 0.5, 0, 0]})
    {'pass@1': 0.25, 'pass@2': 0.5, 'tests': 0.375}
    """
    out = {}
    for name in metric_list:
        base, k = split_at_k(name)
        if k is not None:
            values = scores[base]
            out[name] = pass_at_k(len(values), sum(v == 1.0 for v in values), k)
        else:
            out[name] = float(np.mean(scores[name]))
    return out


def generation_config(task: Task, max_gen_toks: int | None, max_length: int) -> dict[str, Any]:
    """What a generation task ran with, for ``eval_results.json`` (``max_gen_toks`` as used)."""
    gen = task.generation
    return {
        "until": gen.until,
        "max_gen_toks": effective_max_gen_toks(max_gen_toks or gen.max_gen_toks, max_length),
        "do_sample": gen.do_sample,
        "temperature": gen.temperature if gen.do_sample else 0.0,
        "top_p": gen.top_p if gen.do_sample else 1.0,
        "repeats": task.spec.repeats,
        "scorer": task.spec.scorer,
    }


def _load_documents(
    tasks: list[Task],
    limit: int | float | None,
    shots_of: dict[str, int],
    fewshot_split: str | None,
    data_dir: str | Path | None,
    source: str | None,
) -> dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]] | None]]:
    """Each task's first ``limit`` documents and its few-shot pool (``None`` at zero shots).

    Every file and column is checked here, before any model call.
    """
    data = {}
    for task in tasks:
        docs = task.load(task.eval_split, data_dir, source)
        shots = None
        if shots_of[task.name] > 0:
            shots = task.fewshot_docs(fewshot_split or task.spec.fewshot_split, data_dir, source)
        data[task.name] = (docs[: _limit(limit, len(docs))], shots)
    return data


def _task_config(tasks: list[Task], max_gen_toks: int | None, max_length: int) -> dict[str, Any]:
    """Per-task settings for ``config``: delimiters, and generation settings as they were used."""
    out: dict[str, Any] = {
        "target_delimiter": {t.name: t.spec.target_delimiter for t in tasks},
        "fewshot_delimiter": {t.name: t.spec.fewshot_delimiter for t in tasks},
    }
    if any(t.is_generation for t in tasks):
        out["generation"] = {
            t.name: generation_config(t, max_gen_toks, max_length) for t in tasks if t.is_generation
        }
    return out


def _limit(limit: int | float | None, n: int) -> int:
    if limit is None:
        return n
    if isinstance(limit, float) and 0 < limit < 1:
        return math.ceil(n * limit)
    if limit < 1 or int(limit) != limit:
        raise UserError(f"limit must be a positive integer or a fraction in (0, 1), got {limit!r}")
    return min(int(limit), n)


def _model_name(model: Any) -> str:
    cfg = getattr(model, "config", None)
    name = getattr(cfg, "_name_or_path", "") or getattr(cfg, "name_or_path", "")
    return name or type(model).__name__


def write_results(run_dir: str | Path, results: dict[str, Any]) -> Path:
    """Write ``eval_results.json`` (run-directory contract), ``eval_results.md`` and ``eval_samples.jsonl``.

    NaN (an undefined correlation or stderr) is written as ``null``. Returns the JSON path.
    """
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    body = {k: results[k] for k in ("model", "tasks", "config", "timing") if k in results}
    path = run / "eval_results.json"
    atomic_write_text(path, json.dumps(_finite(body), indent=2) + "\n")
    atomic_write_text(run / "eval_results.md", markdown_table(results))
    lines = [
        json.dumps(_finite({"task": task, "doc_id": i, **rec}))
        for task, recs in results.get("samples", {}).items()
        for i, rec in enumerate(recs)
    ]
    atomic_write_text(run / "eval_samples.jsonl", "".join(line + "\n" for line in lines))
    return path


def print_results(results: dict[str, Any], prefix: str = "[eval]") -> None:
    """One line per task: its metrics (standard errors and ``n`` left out)."""
    for name, m in results["tasks"].items():
        shown = {k: v for k, v in m.items() if k != "n" and not k.endswith("_stderr")}
        print(f"{prefix} {name}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in shown.items()))


def markdown_table(results: dict[str, Any]) -> str:
    """lm-eval-style table: one row per (task, metric) with value, stderr and n."""
    rows = ["| Task | Metric | Value | ± Stderr | n |", "|---|---|---:|---:|---:|"]
    for task, m in results["tasks"].items():
        for name in [k for k in m if k != "n" and not k.endswith("_stderr")]:
            rows.append(f"| {task} | {name} | {_fmt(m[name])} | {_fmt(m.get(name + '_stderr'))} | {m['n']} |")
    return f"Model: `{results.get('model', '')}`\n\n" + "\n".join(rows) + "\n"


def _fmt(x: Any) -> str:
    return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.4f}"


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.generic):
        return _finite(obj.item())
    return obj
