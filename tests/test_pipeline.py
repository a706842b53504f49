"""The whole pipeline end to end on the micro recipe, and a re-run that skips finished stages."""

import json
import shutil
from pathlib import Path

import pytest

from r1rl.cli import main

MICRO = Path(__file__).parents[1] / "recipes" / "configs" / "micro" / "pipeline.yaml"


@pytest.mark.slow
def test_pipeline_runs_every_stage_and_skips_finished_ones(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", str(MICRO), f"output_dir={out}"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["stages"]) == ["pretrain", "sft", "ppo"]
    for stage, entry in summary["stages"].items():
        assert Path(entry["run_dir"]) == out / stage
        assert (out / stage / "final").is_dir()
        assert {"accuracy", "tier/syntax/pass_rate", "tier/logic/pass_rate", "tier/task/pass_rate"} <= set(
            entry["eval"]
        )
        assert entry["eval"]["n"] == 16
    assert summary["dashboard"] == str(out / "dashboard.png")
    assert (out / "dashboard.png").stat().st_size > 10_000
    assert f"[run] dashboard: {out / 'dashboard.png'}" in capsys.readouterr().out.splitlines()
    mtimes = {s: (out / s / "final").stat().st_mtime_ns for s in summary["stages"]}
    capsys.readouterr()
    assert main(["run", str(MICRO), f"output_dir={out}"]) == 0
    printed = capsys.readouterr().out
    for stage in ("pretrain", "sft", "ppo"):  # each stage and its eval say they are skipped
        assert f"[{stage}] {out / stage} is finished; skipping" in printed
        assert f"[eval] {out / 'eval' / stage} is finished; skipping" in printed
    assert {s: (out / s / "final").stat().st_mtime_ns for s in summary["stages"]} == mtimes


@pytest.mark.slow
def test_pipeline_resumes_after_an_interrupted_stage(tmp_path):
    out = tmp_path / "run"
    assert main(["run", str(MICRO), f"output_dir={out}", "ppo.checkpoint.every=1"]) == 0
    first = json.loads((out / "summary.json").read_text())
    # the PPO stage "crashed" before writing final/: its checkpoints remain
    shutil.rmtree(out / "ppo" / "final")
    shutil.rmtree(out / "eval" / "ppo")
    assert main(["run", str(MICRO), f"output_dir={out}", "ppo.checkpoint.every=1"]) == 0
    second = json.loads((out / "summary.json").read_text())
    assert second["stages"]["ppo"]["eval"] == first["stages"]["ppo"]["eval"]
