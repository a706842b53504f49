"""Corpus-level benchmark metrics and their standard errors, in numpy.

Each metric takes one *item* per example and reduces the list to one number, the way
lm-evaluation-harness pairs a pass-through per-example metric with a corpus aggregation:

=========  ===================================  ===========================================
metric     item per example                     aggregation (reference)
=========  ===================================  ===========================================
acc        1.0 if the top choice is gold else 0  mean
f1         (gold, pred) class indices            binary F1 of class 1 (sklearn ``f1_score``)
mcc        (gold, pred) class indices            Matthews corr. (sklearn ``matthews_corrcoef``)
pearson    (gold, pred) real numbers             Pearson's r (scipy ``pearsonr``)
spearman   (gold, pred) real numbers             Spearman's rho (scipy ``spearmanr``)
=========  ===================================  ===========================================

They are written here (a few lines each) rather than imported so that the harness needs neither
scikit-learn nor scipy; ``tests/eval/test_metrics.py`` checks them against both when installed.

Generation tasks (:mod:`r1rl.eval.scorers`) reduce per document instead: each document's value
is the mean of a scorer output over its samples, or :func:`pass_at_k` of them, and the task's
value is the mean over documents, with the mean's standard error.

Standard errors follow lm-eval: a mean's is the sample standard error ``std(x, ddof=1) / sqrt(n)``;
the others are bootstrapped (lm-eval resamples 100,000 times; we default to 1,000 seeded draws,
so the third significant digit of a bootstrapped stderr is noise).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from r1rl.errors import UserError, did_you_mean


@dataclass(frozen=True)
class Metric:
    """A named corpus metric: ``fn(items) -> float`` and how its standard error is estimated."""

    name: str
    fn: Callable[[Sequence[Any]], float]
    item: str  # per-example item: "correct" (0/1), "class_pair" (gold, pred), "score_pair" (gold, pred)
    stderr: str  # "mean": analytic sample standard error; "bootstrap": resampled


METRICS: dict[str, Metric] = {}


def register_metric(name: str, item: str, stderr: str = "bootstrap") -> Callable[[Callable], Callable]:
    """Register ``fn(items) -> float`` under ``name``; a duplicate name is an error."""

    def deco(fn: Callable[[Sequence[Any]], float]) -> Callable[[Sequence[Any]], float]:
        if name in METRICS:
            raise ValueError(f"metric {name!r} is already registered")
        METRICS[name] = Metric(name, fn, item, stderr)
        return fn

    return deco


def get_metric(name: str) -> Metric:
    if name not in METRICS:
        raise UserError(f"unknown metric {name!r}{did_you_mean(name, METRICS)}")
    return METRICS[name]


def _pairs(items: Sequence[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    arr = np.asarray(items, dtype=np.float64).reshape(len(items), 2)  # (N, 2): gold, pred
    return arr[:, 0], arr[:, 1]


@register_metric("acc", item="correct", stderr="mean")
def accuracy(items: Sequence[float]) -> float:
    """Mean of per-example 0/1 correctness.

    >>> accuracy([1.0, 0.0, 1.0, 1.0])
    0.75
    """
    return float(np.mean(np.asarray(items, dtype=np.float64)))


@register_metric("f1", item="class_pair")
def f1(items: Sequence[tuple[int, int]]) -> float:
    """Binary F1 of class 1 over ``(gold, pred)`` pairs; 0.0 when there is no true positive.

    F1 = 2·TP / (2·TP + FP + FN), as sklearn's ``f1_score`` (``zero_division`` gives 0.0).

    >>> f1([(1, 1), (1, 0), (0, 1), (0, 0), (1, 1)])  # TP=2, FP=1, FN=1
    0.6666666666666666
    """
    gold, pred = _pairs(items)
    tp = float(np.sum((gold == 1) & (pred == 1)))
    fp = float(np.sum((gold != 1) & (pred == 1)))
    fn = float(np.sum((gold == 1) & (pred != 1)))
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


@register_metric("mcc", item="class_pair")
def mcc(items: Sequence[tuple[int, int]]) -> float:
    """Matthews correlation over ``(gold, pred)`` class pairs; 0.0 when undefined (as sklearn).

    The multi-class form (Gorodkin 2004, as in sklearn): with confusion matrix ``C``, ``t_k`` gold
    counts, ``p_k`` predicted counts, ``c`` correct and ``s`` total,
    ``MCC = (c·s − Σ p_k t_k) / sqrt((s² − Σ p_k²)(s² − Σ t_k²))``. For two classes this is
    ``(TP·TN − FP·FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN))``.

    >>> round(mcc([(1, 1), (1, 1), (1, 0), (0, 0), (0, 1), (0, 0)]), 6)  # TP=2 TN=2 FP=1 FN=1
    0.333333
    """
    gold, pred = _pairs(items)
    labels = np.union1d(gold, pred)
    t = np.array([np.sum(gold == k) for k in labels], dtype=np.float64)  # (K,)
    p = np.array([np.sum(pred == k) for k in labels], dtype=np.float64)  # (K,)
    c, s = float(np.sum(gold == pred)), float(len(gold))
    denom = math.sqrt((s * s - p @ p) * (s * s - t @ t))
    return 0.0 if denom == 0 else float((c * s - p @ t) / denom)


@register_metric("pearson", item="score_pair")
def pearson(items: Sequence[tuple[float, float]]) -> float:
    """Pearson's r between gold and predicted scores; NaN if either is constant.

    >>> pearson([(1.0, 2.0), (2.0, 4.0), (3.0, 7.0)])  # doctest: +ELLIPSIS
    0.9933...
    """
    gold, pred = _pairs(items)
    return _corr(gold, pred)


@register_metric("spearman", item="score_pair")
def spearman(items: Sequence[tuple[float, float]]) -> float:
    """Spearman's rho: Pearson's r of the ranks, ties sharing their average rank (as scipy).

    >>> spearman([(1.0, 10.0), (2.0, 30.0), (3.0, 20.0), (4.0, 40.0)])
    0.8
    """
    gold, pred = _pairs(items)
    return _corr(rankdata(gold), rankdata(pred))


def _corr(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(), y - y.mean()
    denom = math.sqrt(float(x @ x) * float(y @ y))
    return float("nan") if denom == 0 else float(np.clip((x @ y) / denom, -1.0, 1.0))


def rankdata(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank (scipy's ``rankdata(method='average')``).

    >>> rankdata(np.array([3.0, 1.0, 3.0, 2.0])).tolist()
    [3.5, 1.0, 3.5, 2.0]
    """
    order = np.argsort(x, kind="stable")
    xs = x[order]
    # Runs of equal values: start index of each run, then the average of its 1-based positions.
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], len(xs)]
    avg = (starts + ends + 1) / 2.0  # mean of (start+1 .. end)
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples of which ``c`` are correct: ``1 - C(n-c, k) / C(n, k)``.

    Chen et al. 2021 ("Evaluating Large Language Models Trained on Code"), eq. 1: the chance
    that ``k`` samples drawn without replacement from the ``n`` include a correct one. Python's
    exact integers take the place of the paper's product form, which avoids float overflow.

    >>> pass_at_k(5, 2, 1), pass_at_k(5, 2, 2), pass_at_k(5, 0, 3), pass_at_k(5, 3, 3)
    (0.4, 0.7, 0.0, 1.0)
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)  # comb(m, k) = 0 for m < k


def split_at_k(name: str) -> tuple[str, int | None]:
    """A generation metric's name as ``(scorer output, k)``: ``pass@10`` -> ``("pass", 10)``.

    >>> split_at_k("pass@10"), split_at_k("rougeL")
    (('pass', 10), ('rougeL', None))
    """
    m = re.fullmatch(r"(?P<base>.+)@(?P<k>[0-9]+)", name)
    return (m["base"], int(m["k"])) if m else (name, None)


def mean_stderr(items: Sequence[float]) -> float:
    """Sample standard error of the mean, ``std(x, ddof=1) / sqrt(n)`` (lm-eval's ``mean_stderr``).

    >>> round(mean_stderr([1.0, 0.0, 1.0, 0.0]), 6)
    0.288675
    """
    x = np.asarray(items, dtype=np.float64)
    if len(x) < 2:
        return float("nan")
    return float(np.std(x, ddof=1) / math.sqrt(len(x)))


def bootstrap_stderr(
    fn: Callable[[Sequence[Any]], float], items: Sequence[Any], iters: int = 1000, seed: int = 0
) -> float:
    """Standard deviation (ddof=1, as lm-eval) of ``fn`` over ``iters`` resamples with replacement."""
    n = len(items)
    if n < 2 or iters < 2:
        return float("nan")
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(iters):
        idx = rng.integers(0, n, size=n)
        stats.append(fn([items[i] for i in idx]))
    arr = np.asarray(stats, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    return float(np.std(arr, ddof=1)) if len(arr) > 1 else float("nan")


def stderr(metric: Metric, items: Sequence[Any], bootstrap_iters: int = 1000, seed: int = 0) -> float:
    """The standard error of ``metric`` over ``items``: analytic for means, bootstrapped otherwise."""
    if metric.stderr == "mean":
        return mean_stderr(items)
    return bootstrap_stderr(metric.fn, items, iters=bootstrap_iters, seed=seed)
