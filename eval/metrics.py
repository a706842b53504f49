"""Corpus-level benchmark metrics and their standard errors.

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

Pearson's r, the ranks behind Spearman's rho, confusion matrices and the standard error of a
mean come from SciPy. MCC and F1 are formulas over SciPy's confusion matrix: SciPy has neither,
and scikit-learn, which has both, is not a dependency (``tests/eval/test_metrics.py`` checks them
against it). SciPy is imported inside the functions that use it, because the training stages
import :mod:`r1rl.eval` for their held-out evaluation and need no ``scipy.stats``.

Generation tasks (:mod:`r1rl.eval.scorers`) reduce per document instead: each document's value
is the mean of a scorer output over its samples, or :func:`pass_at_k` of them, and the task's
value is the mean over documents, with the mean's standard error.

Standard errors follow lm-eval: a mean's is the sample standard error ``std(x, ddof=1) / sqrt(n)``;
the others are bootstrapped (lm-eval resamples 100,000 times; we default to 1,000 seeded draws,
so the third significant digit of a bootstrapped stderr is noise). An undefined value (NaN: the
correlation of a resample that happens to be constant) is left out of the bootstrap distribution,
which is why :func:`bootstrap_draws` is a loop and not ``scipy.stats.bootstrap``, whose standard
error and interval are NaN as soon as one resample is.
"""

from __future__ import annotations

import math
import re
import warnings
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
    (_, fp), (fn, tp) = _confusion(gold == 1, pred == 1, [False, True])  # class 1 against the rest
    return 0.0 if tp == 0 else float(2 * tp / (2 * tp + fp + fn))


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
    C = _confusion(gold, pred, np.union1d(gold, pred))  # (K, K)
    t, p = C.sum(axis=1), C.sum(axis=0)  # (K,) gold and predicted counts
    c, s = float(np.trace(C)), float(C.sum())
    denom = math.sqrt((s * s - p @ p) * (s * s - t @ t))
    return 0.0 if denom == 0 else float((c * s - p @ t) / denom)


def _confusion(gold: np.ndarray, pred: np.ndarray, labels: Sequence[Any] | np.ndarray) -> np.ndarray:
    """``C[i, j]``: the examples of gold ``labels[i]`` predicted ``labels[j]`` (SciPy's ``crosstab``)."""
    from scipy.stats.contingency import crosstab

    return crosstab(gold, pred, levels=(labels, labels)).count.astype(np.float64)


@register_metric("pearson", item="score_pair")
def pearson(items: Sequence[tuple[float, float]]) -> float:
    """Pearson's r between gold and predicted scores; NaN if either is constant or there are < 2 pairs.

    >>> pearson([(1.0, 2.0), (2.0, 4.0), (3.0, 7.0)])  # doctest: +ELLIPSIS
    0.9933...
    """
    gold, pred = _pairs(items)
    return _pearsonr(gold, pred)


@register_metric("spearman", item="score_pair")
def spearman(items: Sequence[tuple[float, float]]) -> float:
    """Spearman's rho: Pearson's r of the ranks, ties sharing their average rank; NaN as :func:`pearson`.

    This is ``scipy.stats.spearmanr`` by definition; computed as ``pearsonr`` of ``rankdata``
    rather than through ``spearmanr`` (``np.corrcoef`` of the ranks, which rounds differently:
    0.7999999999999999 below).

    >>> spearman([(1.0, 10.0), (2.0, 30.0), (3.0, 20.0), (4.0, 40.0)])
    0.8
    """
    from scipy.stats import rankdata

    gold, pred = _pairs(items)
    return _pearsonr(rankdata(gold, method="average"), rankdata(pred, method="average"))


def _pearsonr(x: np.ndarray, y: np.ndarray) -> float:
    """``scipy.stats.pearsonr``'s r, NaN where it is undefined.

    SciPy returns NaN for a constant input and warns (``ConstantInputWarning``); that case is an
    expected outcome here (a model that predicts one score), so exactly that warning is silenced.
    Fewer than two pairs, which SciPy refuses, are NaN too.
    """
    from scipy.stats import ConstantInputWarning, pearsonr

    if len(x) < 2:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantInputWarning)
        return float(pearsonr(x, y).statistic)


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

    SciPy's ``sem``; NaN for fewer than two items, where ``sem`` would warn.

    >>> round(mean_stderr([1.0, 0.0, 1.0, 0.0]), 6)
    0.288675
    """
    from scipy.stats import sem

    x = np.asarray(items, dtype=np.float64)
    return float(sem(x, ddof=1)) if len(x) >= 2 else float("nan")


def bootstrap_draws(
    fn: Callable[..., float], *samples: Sequence[Any], iters: int, seed: int = 0
) -> np.ndarray:
    """``fn(*resampled)`` over ``iters`` resamples with replacement, the finite values only.

    Every sample is resampled with the same indices (documents resampled jointly, for paired
    statistics). Resample ``k`` is the ``k``-th ``integers(0, n, n)`` of ``default_rng(seed)``: the
    resamples ``scipy.stats.bootstrap`` draws from that generator.
    """
    n = len(samples[0])
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(iters):
        idx = rng.integers(0, n, size=n)  # (n,)
        stats.append(fn(*([s[i] for i in idx] for s in samples)))
    arr = np.asarray(stats, dtype=np.float64)  # (iters,)
    return arr[np.isfinite(arr)]


def bootstrap_stderr(
    fn: Callable[[Sequence[Any]], float], items: Sequence[Any], iters: int = 1000, seed: int = 0
) -> float:
    """Standard deviation (ddof=1, as lm-eval) of ``fn`` over ``iters`` resamples with replacement."""
    if len(items) < 2 or iters < 2:
        return float("nan")
    draws = bootstrap_draws(fn, items, iters=iters, seed=seed)
    return float(np.std(draws, ddof=1)) if len(draws) > 1 else float("nan")


def stderr(metric: Metric, items: Sequence[Any], bootstrap_iters: int = 1000, seed: int = 0) -> float:
    """The standard error of ``metric`` over ``items``: analytic for means, bootstrapped otherwise."""
    if metric.stderr == "mean":
        return mean_stderr(items)
    return bootstrap_stderr(metric.fn, items, iters=bootstrap_iters, seed=seed)
