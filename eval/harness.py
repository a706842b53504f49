"""Log-likelihood benchmark harness: GLUE-style tasks scored the way lm-evaluation-harness scores them.

    results = evaluate(model, tokenizer, ["sst2", "mrpc"], limit=200, num_fewshot=0)
    write_results(run_dir, results)   # eval_results.json, eval_results.md, eval_samples.jsonl

For each task: load the evaluation split (all tasks are loaded before any scoring, so a missing
file or column fails at once), keep the first ``limit`` documents, build each document's context
(few-shot examples, then its prompt), score every ``(context, " " + choice)`` pair in one batched
pass (:mod:`r1rl.eval.loglik`), turn the log-likelihoods into per-example items and reduce them
with the task's metrics (:mod:`r1rl.eval.metrics`).

Results (also the shape of ``eval_results.json``, less ``samples``)::

    {"model": str,
     "tasks": {task: {metric: float, "<metric>_stderr": float, "n": int}},
     "config": {"limit", "num_fewshot", "fewshot_seed", "batch_size", "max_length", "source", ...},
     "timing": {task: {"seconds", "examples_per_s", "requests"}, "total_s": float},
     "samples": {task: [per-example record, ...]}}
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from r1rl.eval.loglik import loglikelihood, resolve_max_length
from r1rl.eval.metrics import get_metric, stderr
from r1rl.eval.registry import FewshotSampler, Task, get_task

from r1rl.errors import UserError

FEWSHOT_SEED = 1234  # lm-eval's default fewshot_random_seed


def evaluate(
    model: Any,
    tokenizer: Any,
    tasks: Sequence[str | Task],
    *,
    limit: int | float | None = None,
    num_fewshot: int = 0,
    batch_size: int = 32,
    seed: int = FEWSHOT_SEED,
    fewshot_split: str | None = None,
    data_dir: str | Path | None = None,
    source: str | None = None,
    max_length: int | None = None,
    bootstrap_iters: int = 1000,
    progress: bool = False,
) -> dict[str, Any]:
    """Score ``model`` on ``tasks``; see the module docstring for the returned dict.

    Args:
        model: a causal LM (any ``transformers`` model, PEFT-wrapped or not) or a path to one
            (loaded with :func:`r1rl.model.load_merged`; adapters are merged).
        tokenizer: its tokenizer; loaded from ``model`` when that is a path and this is ``None``.
        tasks: registered task names (:func:`r1rl.eval.registry.list_tasks`) or :class:`Task` objects.
        limit: evaluate the first ``limit`` documents (a float in (0, 1) is a fraction, as lm-eval).
        num_fewshot: examples drawn from ``fewshot_split`` (default: each task's, ``train``).
        seed: few-shot sampling seed (lm-eval's ``fewshot_random_seed``) and bootstrap seed.
        source: ``"local"`` or ``"hub"``, overriding each task's YAML.
        max_length: context length for left truncation; default from the model config.
    """
    if num_fewshot < 0:
        raise UserError(f"num_fewshot must be >= 0, got {num_fewshot}")
    if batch_size < 1:
        raise UserError(f"batch_size must be >= 1, got {batch_size}")
    _limit(limit, 1)  # validate before loading anything
    loaded = [get_task(t) for t in tasks]  # unknown names fail before anything is loaded
    names = [t.name for t in loaded]
    if len(set(names)) != len(names):
        raise UserError(f"a task is listed twice: {names}")
    model_name = str(model) if isinstance(model, (str, Path)) else _model_name(model)
    if isinstance(model, (str, Path)):
        from r1rl.model import load_merged, load_tokenizer

        tokenizer = tokenizer if tokenizer is not None else load_tokenizer(str(model))
        model = load_merged(str(model))
    if tokenizer is None:
        raise UserError("evaluate: a tokenizer is needed with an in-memory model")
    max_length = max_length or resolve_max_length(model, tokenizer)

    data = {}
    for task in loaded:  # every file and column is checked before any model call
        docs = task.load(task.spec.validation_split, data_dir, source)
        docs = docs[: _limit(limit, len(docs))]
        shots = None
        if num_fewshot > 0:
            shots = task.load(fewshot_split or task.spec.fewshot_split, data_dir, source)
        data[task.name] = (docs, shots)

    results: dict[str, Any] = {"model": model_name, "tasks": {}, "config": {}, "timing": {}, "samples": {}}
    t_all = time.perf_counter()
    for task in loaded:
        docs, shots = data[task.name]
        t0 = time.perf_counter()
        metrics, records, n_req = evaluate_task(
            model, tokenizer, task, docs, shots,
            num_fewshot=num_fewshot, batch_size=batch_size, seed=seed, max_length=max_length,
            bootstrap_iters=bootstrap_iters, progress=progress,
        )  # fmt: skip
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
        "tasks": names,
        "limit": limit,
        "num_fewshot": num_fewshot,
        "fewshot_seed": seed,
        "fewshot_split": fewshot_split,
        "batch_size": batch_size,
        "max_length": max_length,
        "source": source,
        "data_dir": str(data_dir) if data_dir is not None else None,
        "bootstrap_iters": bootstrap_iters,
        "target_delimiter": {t.name: t.spec.target_delimiter for t in loaded},
        "fewshot_delimiter": {t.name: t.spec.fewshot_delimiter for t in loaded},
    }
    return results


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
    """``{metric: value, "<metric>_stderr": se, "n": n}`` for the task's metric list."""
    out: dict[str, Any] = {}
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
    from r1rl.rundir import atomic_write_text

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
