"""Paired comparison of two evaluated models: ``r1rl eval --compare RUN_A RUN_B``.

Both runs must have scored the same documents (``eval_samples.jsonl``, matched by task and
``doc_id``, and checked to be the same documents). Per task and metric:

- the difference B − A with a 95% paired-bootstrap interval (documents resampled jointly);
- for accuracy-like metrics, McNemar's exact test on the discordant pairs (two-sided binomial,
  ``scipy.stats.binomtest``).

A winner is named only where the interval excludes 0 (and, for accuracy, McNemar's p < 0.05);
otherwise the row says "no significant difference".
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from r1rl.eval.metrics import bootstrap_draws, get_metric
from scipy.stats import binomtest  # at the top: only ``r1rl eval --compare`` imports this module

from r1rl.errors import UserError


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts ``b`` (A right, B wrong) and ``c``.

    Under "no difference" each discordant pair goes either way with probability 1/2, so ``b`` is
    Binomial(b + c, 1/2): the exact test is SciPy's two-sided binomial test. No discordant pair
    gives 1.0 (nothing tells the models apart), where SciPy would refuse ``n = 0``.

    >>> round(mcnemar_exact(10, 0), 4)
    0.002
    >>> mcnemar_exact(3, 3)
    1.0
    """
    if b + c == 0:
        return 1.0
    return float(binomtest(b, b + c, p=0.5).pvalue)


def paired_bootstrap(
    items_a: list[Any], items_b: list[Any], fn, iters: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Difference fn(B) − fn(A) and its 95% percentile interval, resampling documents jointly."""
    diff = fn(items_b) - fn(items_a)
    draws = bootstrap_draws(lambda a, b: fn(b) - fn(a), items_a, items_b, iters=iters, seed=seed)
    if draws.size == 0:
        return diff, float("nan"), float("nan")
    return diff, float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))


def load_samples(run: str | Path) -> dict[str, list[dict[str, Any]]]:
    """``{task: [record, ...]}`` ordered by ``doc_id`` from a run's ``eval_samples.jsonl``."""
    path = Path(run) / "eval_samples.jsonl"
    if not path.exists():
        raise UserError(f"{path} not found: --compare needs two eval run directories (r1rl eval writes it)")
    out: dict[str, list[dict[str, Any]]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            out.setdefault(rec["task"], []).append(rec)
    return {t: sorted(r, key=lambda x: x["doc_id"]) for t, r in out.items()}


def _metrics_for(task: str, run: Path) -> list[str]:
    res = json.loads((run / "eval_results.json").read_text())["tasks"].get(task, {})
    return [k for k in res if k != "n" and not k.endswith("_stderr") and _known(k)]


def _known(name: str) -> bool:
    try:
        get_metric(name)
        return True
    except UserError:
        return False


def compare(run_a: str | Path, run_b: str | Path, iters: int = 2000, seed: int = 0) -> list[dict[str, Any]]:
    """One row per (task, metric) both runs scored: values, difference, interval, p, verdict."""
    a, b = load_samples(run_a), load_samples(run_b)
    common = [t for t in a if t in b]
    if not common:
        raise UserError(f"{run_a} and {run_b} have no task in common: {sorted(a)} vs {sorted(b)}")
    rows = []
    for task in common:
        ra, rb = a[task], b[task]
        if [r["doc_id"] for r in ra] != [r["doc_id"] for r in rb] or any(
            x.get("doc") != y.get("doc") for x, y in zip(ra, rb)
        ):
            raise UserError(
                f"task {task!r}: the two runs scored different documents; re-run with the same limit"
            )
        names = _metrics_for(task, Path(run_a)) or (["acc"] if "acc" in ra[0] else [])
        for name in names:
            metric = get_metric(name)
            if metric.item == "correct":
                ia, ib = [r["acc"] for r in ra], [r["acc"] for r in rb]
            else:
                ia, ib = [(r["gold"], r["pred"]) for r in ra], [(r["gold"], r["pred"]) for r in rb]
            diff, lo, hi = paired_bootstrap(ia, ib, metric.fn, iters, seed)
            row: dict[str, Any] = {
                "task": task, "metric": name, "a": metric.fn(ia), "b": metric.fn(ib), "diff": diff,
                "ci_low": lo, "ci_high": hi, "n": len(ra), "p_mcnemar": None,
            }  # fmt: skip
            significant = math.isfinite(lo) and (lo > 0 or hi < 0)
            if metric.item == "correct":
                only_a = sum(1 for x, y in zip(ia, ib) if x and not y)
                only_b = sum(1 for x, y in zip(ia, ib) if y and not x)
                row["p_mcnemar"] = mcnemar_exact(only_a, only_b)
                significant = significant and row["p_mcnemar"] < 0.05
            row["winner"] = ("B" if diff > 0 else "A") if significant else None
            rows.append(row)
    return rows


def format_comparison(rows: list[dict[str, Any]], name_a: str, name_b: str) -> str:
    out = [
        f"A = {name_a}\nB = {name_b}\n",
        "| task | metric | A | B | B − A | 95% CI | McNemar p | verdict |",
        "|---|---|---:|---:|---:|---|---:|---|",
    ]
    for r in rows:
        p = "—" if r["p_mcnemar"] is None else f"{r['p_mcnemar']:.3g}"
        verdict = f"{r['winner']} better" if r["winner"] else "no significant difference"
        out.append(
            f"| {r['task']} | {r['metric']} | {r['a']:.4f} | {r['b']:.4f} | {r['diff']:+.4f} "
            f"| [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}] | {p} | {verdict} |"
        )
    return "\n".join(out)
