"""Re-running a stage into its run directory: skip or resume when the config is the same, refuse
(naming the changed keys) when it is not, --overwrite moves the old run aside, PPO extends exactly."""

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from r1rl.run.cli import main

MICRO = Path(__file__).parents[2] / "recipes" / "configs" / "micro"


@pytest.fixture(scope="module")
def base(micro_pretrained):
    return micro_pretrained  # the session's micro pretrain (tests/conftest.py), read only


def _ppo(capsys, base, out, *over, overwrite=False):
    args = ["ppo", str(MICRO / "ppo.yaml"), f"model_path={base}", f"output_dir={out}", "steps=2", *over]
    code = main(args + (["--overwrite"] if overwrite else []))
    return code, capsys.readouterr()


def _weights(run):
    return load_file(next((run / "final").glob("*.safetensors")))


def test_same_config_is_skipped_and_says_so(capsys, base, tmp_path):
    out = tmp_path / "ppo"
    assert _ppo(capsys, base, out)[0] == 0
    stamp = (out / "final").stat().st_mtime_ns
    # threads, trackers and a relative spelling of the same path change nothing
    code, io = _ppo(capsys, os.path.relpath(base), out, "threads=2")
    assert code == 0 and f"[ppo] {out} is finished; skipping" in io.out
    assert (out / "final").stat().st_mtime_ns == stamp


def test_changed_config_is_refused_naming_the_keys(capsys, base, tmp_path):
    out = tmp_path / "ppo"
    _ppo(capsys, base, out)
    before = (out / "config.yaml").read_text()
    code, io = _ppo(capsys, base, out, "algorithm.kl_coef=0.5", "optim.lr=0.01")
    err = io.err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert (
        "algorithm.kl_coef: 0.02 → 0.5" in err[0]
        and "optim.lr: 0.001 → 0.01" in err[0]
        and "--overwrite" in err[0]
    )
    assert (out / "config.yaml").read_text() == before


def test_resuming_with_a_changed_config_is_refused(capsys, base, tmp_path):
    out = tmp_path / "ppo"
    _ppo(capsys, base, out, "checkpoint.every=1")
    (out / "final").rename(out / "gone")  # as if killed after its checkpoint: unfinished
    code, io = _ppo(capsys, base, out, "checkpoint.every=1", "rollout.temperature=0.5")
    assert code == 2 and "rollout.temperature: 1.0 → 0.5" in io.err


def test_overwrite_moves_the_old_run_aside(capsys, base, tmp_path):
    out = tmp_path / "ppo"
    _ppo(capsys, base, out)
    code, io = _ppo(capsys, base, out, "algorithm.kl_coef=0.5", overwrite=True)
    assert code == 0 and f"moved the run in {out} to {out}.prev-1" in io.out
    assert "kl_coef: 0.02" in (tmp_path / "ppo.prev-1" / "config.yaml").read_text()
    assert "kl_coef: 0.5" in (out / "config.yaml").read_text() and (out / "final").is_dir()


def test_a_longer_ppo_run_continues_exactly(capsys, base, tmp_path):
    straight = tmp_path / "straight"
    assert _ppo(capsys, base, straight, "steps=4")[0] == 0
    out = tmp_path / "extended"
    _ppo(capsys, base, out)  # 2 steps
    code, io = _ppo(capsys, base, out, "steps=4")
    assert code == 0 and "continuing it to the new steps" in io.out
    a, b = _weights(straight), _weights(out)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (out / "final.step-00000002").is_dir()
    assert [r["step"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())] == [
        1,
        2,
        3,
        4,
    ]


def test_a_longer_sft_run_is_refused(capsys, base, tmp_path):
    args = ["sft", str(MICRO / "sft.yaml"), f"model_path={base}", f"output_dir={tmp_path / 'sft'}", "steps=2"]
    assert main(args) == 0
    capsys.readouterr()
    assert main([*args, "steps=4"]) == 2
    assert "cosine decay over the total steps" in capsys.readouterr().err


def test_output_dir_that_is_a_file_is_one_line(capsys, base, tmp_path):
    (tmp_path / "taken").write_text("x")
    for out in (tmp_path / "taken", tmp_path / "taken" / "below"):
        code, io = _ppo(capsys, base, out)
        assert code == 2 and "is a file, not a directory" in io.err and len(io.err.strip().splitlines()) == 1


@pytest.mark.slow
def test_pipeline_rerun_invalidates_later_stages_and_keeps_config_history(capsys, tmp_path):
    out = tmp_path / "run"
    fast = ["pretrain.steps=4", "sft.steps=2", "ppo.steps=1", "eval.num_examples=4"]
    assert main(["run", str(MICRO / "pipeline.yaml"), f"output_dir={out}", *fast]) == 0
    capsys.readouterr()
    changed = [*fast, "sft.optim.lr=0.01"]
    assert main(["run", str(MICRO / "pipeline.yaml"), f"output_dir={out}", *changed]) == 2  # refused
    assert "sft holds a run with another config (optim.lr: 0.003 → 0.01)" in capsys.readouterr().err
    assert main(["run", str(MICRO / "pipeline.yaml"), f"output_dir={out}", *changed, "--overwrite"]) == 0
    io = capsys.readouterr().out
    assert f"[pretrain] {out / 'pretrain'} is finished; skipping" in io
    for moved in ("sft", "ppo", "eval/sft", "eval/ppo"):  # re-run: SFT changed, the rest was built on it
        assert (out / f"{moved}.prev-1").is_dir(), moved
    assert not (out / "eval" / "pretrain.prev-1").exists()
    assert "lr: 0.01" not in (out / "config.history" / "0001.yaml").read_text()
    assert "lr: 0.01" in (out / "config.yaml").read_text()
