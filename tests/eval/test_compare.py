"""`r1rl eval --compare`: paired bootstrap and McNemar on two runs' per-example records."""

import inspect
import json
import math

import numpy as np
import pytest
import scipy.stats as st
from r1rl.eval.compare import compare, mcnemar_exact, paired_bootstrap
from r1rl.eval.metrics import accuracy

from r1rl.errors import UserError
from r1rl.run.cli import main


def _run(path, accs, task="sst2", docs=None):
    path.mkdir(parents=True)
    docs = docs or [{"sentence": f"s{i}"} for i in range(len(accs))]
    rows = [{"task": task, "doc_id": i, "doc": d, "acc": a} for i, (d, a) in enumerate(zip(docs, accs))]
    lines = [json.dumps(r) for r in rows]
    (path / "eval_samples.jsonl").write_text("\n".join(lines) + "\n")
    n = len(accs)
    (path / "eval_results.json").write_text(json.dumps({"tasks": {task: {"acc": sum(accs) / n, "n": n}}}))
    return path


def test_mcnemar_matches_binomial_by_hand():
    # 2 discordant pairs, both one way: p = 2 · (1/2)² = 0.5
    assert mcnemar_exact(2, 0) == pytest.approx(0.5)
    assert mcnemar_exact(0, 0) == 1.0


def test_mcnemar_is_the_two_sided_binomial_tail():
    # exact rational form: p = min(1, 2 · sum_{i <= min(b, c)} C(n, i) / 2^n), n = b + c
    for b in range(25):
        for c in range(25):
            n, k = b + c, min(b, c)
            expected = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n) if n else 1.0
            assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-12, abs=1e-300), (b, c)


def test_paired_bootstrap_is_scipys_paired_percentile_interval():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 2, 120).astype(float), rng.integers(0, 2, 120).astype(float)
    diff, lo, hi = paired_bootstrap(a.tolist(), b.tolist(), accuracy, iters=300, seed=5)
    key = "rng" if "rng" in inspect.signature(st.bootstrap).parameters else "random_state"  # scipy < 1.15
    res = st.bootstrap(
        (a, b), lambda x, y: y.mean() - x.mean(), paired=True, vectorized=False, n_resamples=300,
        method="percentile", **{key: np.random.default_rng(5)},
    )  # fmt: skip
    assert diff == pytest.approx(b.mean() - a.mean())
    assert (lo, hi) == pytest.approx(tuple(res.confidence_interval), rel=1e-12)
    # pinned: 60 of 100 documents flip from wrong to right
    assert paired_bootstrap([0.0] * 60 + [1.0] * 40, [1.0] * 100, accuracy, 500, 0) == (0.6, 0.51, 0.7)


def test_clear_improvement_names_a_winner(tmp_path):
    a = _run(tmp_path / "a", [0.0] * 60 + [1.0] * 40)
    b = _run(tmp_path / "b", [1.0] * 100)
    (row,) = compare(a, b, iters=500)
    assert row["diff"] == pytest.approx(0.6) and row["ci_low"] > 0
    assert row["p_mcnemar"] < 1e-10 and row["winner"] == "B"


def test_small_difference_is_not_a_win(tmp_path):
    accs = [1.0, 0.0] * 50
    a = _run(tmp_path / "a", accs)
    b = _run(tmp_path / "b", [1.0, 1.0] + accs[2:])  # one extra right answer in 100
    (row,) = compare(a, b, iters=500)
    assert row["winner"] is None and row["p_mcnemar"] == 1.0


def test_different_documents_are_refused(tmp_path):
    a = _run(tmp_path / "a", [1.0, 0.0])
    b = _run(tmp_path / "b", [1.0, 0.0], docs=[{"sentence": "x"}, {"sentence": "y"}])
    with pytest.raises(UserError, match="different documents"):
        compare(a, b)


def test_cli_compare_and_its_bad_input(tmp_path, capsys):
    a = _run(tmp_path / "a", [0.0] * 30)
    b = _run(tmp_path / "b", [1.0] * 30)
    assert main(["eval", "--compare", str(a), str(b)]) == 0
    assert "B better" in capsys.readouterr().out
    assert main(["eval", "--compare", str(a), str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("r1rl: error:") and "eval_samples.jsonl not found" in err and "\n" not in err
    assert main(["eval"]) == 2


def test_unknown_eval_task_is_one_line_with_suggestion(tmp_path, capsys):
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(f"output_dir: {tmp_path / 'out'}\nmodel_path: {tmp_path}\ntasks: [arithmetic, sst3]\n")
    assert main(["eval", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert "did you mean 'sst2'" in err and "\n" not in err
    assert not (tmp_path / "out").exists()
