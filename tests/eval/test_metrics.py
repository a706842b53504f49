"""Metrics against values worked out by hand, and against sklearn/scipy where they are installed."""

import inspect
import math
import warnings

import numpy as np
import pytest
import scipy.stats as st
from r1rl.eval.metrics import (
    METRICS,
    accuracy,
    bootstrap_stderr,
    f1,
    get_metric,
    mcc,
    mean_stderr,
    pearson,
    register_metric,
    spearman,
)

from r1rl.errors import UserError

# gold, pred: TP = 3, TN = 2, FP = 1, FN = 2
CLASS_PAIRS = [(1, 1), (1, 1), (1, 1), (0, 0), (0, 0), (0, 1), (1, 0), (1, 0)]


def test_f1_by_hand():
    # precision 3/4, recall 3/5 -> F1 = 2PR/(P+R) = 2*(9/20)/(27/20) = 2/3
    assert f1(CLASS_PAIRS) == pytest.approx(2 / 3)
    assert f1([(0, 0), (0, 0)]) == 0.0  # no positives at all: sklearn's zero_division gives 0
    assert f1([(1, 1), (0, 0)]) == 1.0


def test_mcc_by_hand():
    tp, tn, fp, fn = 3, 2, 1, 2
    expected = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert mcc(CLASS_PAIRS) == pytest.approx(expected)  # 4 / sqrt(4*5*3*4) = 0.2582
    assert mcc(CLASS_PAIRS) == pytest.approx(4 / math.sqrt(240))
    assert mcc([(1, 1), (0, 0), (1, 1)]) == pytest.approx(1.0)
    assert mcc([(1, 0), (0, 1)]) == pytest.approx(-1.0)
    assert mcc([(1, 1), (0, 1), (1, 1)]) == 0.0  # constant prediction: undefined -> 0, as sklearn


def test_mcc_multiclass_by_hand():
    # 3 classes; C = confusion matrix rows gold, cols pred
    pairs = [(0, 0), (0, 1), (1, 1), (1, 1), (2, 2), (2, 0)]
    t, p = np.array([2, 2, 2]), np.array([2, 3, 1])
    c, s = 4, 6
    expected = (c * s - p @ t) / math.sqrt((s * s - p @ p) * (s * s - t @ t))
    assert mcc(pairs) == pytest.approx(expected)


def test_pearson_spearman_by_hand():
    pairs = [(1.0, 2.0), (2.0, 1.0), (3.0, 4.0), (4.0, 3.0)]
    # centred x = [-1.5,-.5,.5,1.5], y = [-.5,-1.5,1.5,.5]: sum xy = 4 * .75 = 3, sum x^2 = sum y^2 = 5
    assert pearson(pairs) == pytest.approx(0.6)
    assert spearman(pairs) == pytest.approx(0.6)  # already ranks
    # a monotone but non-linear relation: spearman 1, pearson below 1
    mono = [(1.0, 1.0), (2.0, 8.0), (3.0, 27.0), (4.0, 64.0)]
    assert spearman(mono) == pytest.approx(1.0)
    assert pearson(mono) < 0.99
    assert math.isnan(pearson([(1.0, 2.0), (2.0, 2.0)]))  # constant prediction


def test_spearman_gives_ties_their_average_rank():
    gold, pred = [10.0, 20.0, 10.0, 30.0, 20.0], [1.0, 2.0, 3.0, 4.0, 5.0]
    # average ranks of gold [1.5, 3.5, 1.5, 5, 3.5], centred [-1.5, .5, -1.5, 2, .5]; pred centred [-2..2]:
    # sum xy = 3 - .5 + 0 + 2 + 1 = 5.5, sum x^2 = 9, sum y^2 = 10 (ordinal or min ranks give other values)
    assert spearman(list(zip(gold, pred))) == pytest.approx(5.5 / math.sqrt(90))
    assert spearman(list(zip(gold, pred))) == pytest.approx(pearson(list(zip([1.5, 3.5, 1.5, 5, 3.5], pred))))


def test_undefined_inputs_give_nan_or_zero_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scipy's ConstantInputWarning is expected here and silenced
        for fn in (pearson, spearman):
            assert math.isnan(fn([(1.0, 2.0), (2.0, 2.0), (3.0, 2.0)]))  # constant prediction
            assert math.isnan(fn([(2.0, 1.0), (2.0, 3.0)]))  # constant gold
            assert math.isnan(fn([(1.0, 2.0)])) and math.isnan(fn([]))  # fewer than two pairs
        assert mcc([]) == 0.0 and f1([]) == 0.0
        assert math.isnan(mean_stderr([])) and math.isnan(bootstrap_stderr(pearson, [(1.0, 2.0)]))


def test_accuracy_and_mean_stderr_by_hand():
    x = [1.0, 1.0, 0.0, 1.0]
    assert accuracy(x) == 0.75
    # sample std (ddof=1) of [1,1,0,1] = sqrt(0.25) = 0.5; stderr = 0.5 / sqrt(4)
    assert mean_stderr(x) == pytest.approx(0.25)
    assert math.isnan(mean_stderr([1.0]))


def test_bootstrap_stderr_is_seeded_and_close_to_analytic():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, size=400).astype(float).tolist()
    a = bootstrap_stderr(accuracy, x, iters=500, seed=3)
    assert a == bootstrap_stderr(accuracy, x, iters=500, seed=3)
    assert a == pytest.approx(mean_stderr(x), rel=0.15)
    assert a == 0.024676128091643358  # pinned: the seeded draws must not change between versions


def test_bootstrap_leaves_undefined_resamples_out():
    # 8 identical pairs and 2 others: many resamples are constant, so their pearson is NaN
    pairs = [(1.0, 1.0)] * 8 + [(2.0, 3.0), (3.0, 2.0)]
    se = bootstrap_stderr(pearson, pairs, iters=200, seed=0)
    assert se == pytest.approx(0.12952076470117568, abs=1e-12)  # scipy.stats.bootstrap: NaN


def test_bootstrap_draws_are_scipy_bootstrap_resamples():
    rng = np.random.default_rng(1)
    pairs = list(zip(rng.integers(0, 3, 150).tolist(), rng.integers(0, 3, 150).tolist()))
    key = "rng" if "rng" in inspect.signature(st.bootstrap).parameters else "random_state"  # scipy < 1.15
    res = st.bootstrap(
        (np.arange(len(pairs)),), lambda idx: mcc([pairs[i] for i in idx]), n_resamples=200,
        vectorized=False, method="percentile", **{key: np.random.default_rng(2)},
    )  # fmt: skip
    assert bootstrap_stderr(mcc, pairs, iters=200, seed=2) == pytest.approx(res.standard_error, rel=1e-12)


def test_against_sklearn_and_scipy():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    gold, pred = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    pairs = list(zip(gold.tolist(), pred.tolist()))
    assert f1(pairs) == pytest.approx(sk.f1_score(gold, pred))
    assert mcc(pairs) == pytest.approx(sk.matthews_corrcoef(gold, pred))
    g3, p3 = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    assert mcc(list(zip(g3.tolist(), p3.tolist()))) == pytest.approx(sk.matthews_corrcoef(g3, p3))
    x, y = rng.normal(size=100), rng.normal(size=100).round(1)  # rounding makes ties
    sp = list(zip(x.tolist(), y.tolist()))
    assert pearson(sp) == pytest.approx(st.pearsonr(x, y)[0])
    assert spearman(sp) == pytest.approx(st.spearmanr(x, y)[0])


def test_registry():
    assert {"acc", "f1", "mcc", "pearson", "spearman"} <= set(METRICS)
    with pytest.raises(UserError, match="did you mean 'mcc'"):
        get_metric("mmc")
    with pytest.raises(ValueError, match="already registered"):
        register_metric("acc", item="correct")(accuracy)
