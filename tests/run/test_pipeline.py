"""The whole pipeline end to end on the micro recipe, and a re-run that skips finished stages."""

import json
import shutil
from pathlib import Path

import pytest

from r1rl.run.cli import main

MICRO = Path(__file__).parents[2] / "recipes" / "configs" / "micro" / "pipeline.yaml"
ALWAYS = Path(__file__).parents[1] / "recipes" / "always.py"  # a reward file: always_one passes everything


def _distill_section():
    """Overrides that add a micro ``distill:`` section, its traces accepted by an always-passing tier
    (the micro teacher passes none of the task's)."""
    section = {"sampling": "{num_prompts: 16, samples_per_prompt: 2, max_new_tokens: 24, batch_size: 8}",
               "lora": "{r: 4, alpha: 8}", "steps": 4, "batch_size": 8,
               "rewards.tiers": f"[{{name: any, reward: '{ALWAYS}:always_one'}}]"}  # fmt: skip
    return [f"distill.{k}={v}" for k, v in section.items()]


def test_a_distill_section_adds_the_stage_after_ppo(tmp_path):
    from r1rl.config import PipelineConfig, load_config
    from r1rl.run.pipeline import stage_configs

    out = tmp_path / "run"
    plain = stage_configs(load_config(PipelineConfig, MICRO, [f"output_dir={out}"]))
    assert "distill" not in plain and "eval_distill" not in plain
    configs = stage_configs(load_config(PipelineConfig, MICRO, [f"output_dir={out}", "distill.steps=3"]))
    assert list(configs)[:4] == ["pretrain", "sft", "ppo", "distill"]
    distill = configs["distill"]
    assert (distill.model_path, distill.teacher_path) == (
        str(out / "pretrain" / "final"),
        str(out / "ppo" / "final"),
    )
    assert distill.steps == 3 and distill.task == configs["ppo"].task
    assert configs["eval_distill"].model_path == str(out / "distill" / "final")
    started = stage_configs(
        load_config(PipelineConfig, MICRO, [f"output_dir={out}", "model_path=org/base", "distill={}"])
    )  # from a checkpoint: the student is that checkpoint, as the SFT stage's model is
    assert started["distill"].model_path == started["sft"].model_path == "org/base"
    student = stage_configs(
        load_config(PipelineConfig, MICRO, [f"output_dir={out}", "distill.model_path=small"])
    )
    assert student["distill"].model_path == "small"  # the section's own keys win


@pytest.mark.slow
def test_pipeline_runs_every_stage_and_skips_finished_ones(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", str(MICRO), f"output_dir={out}", *_distill_section()]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["stages"]) == ["pretrain", "sft", "ppo", "distill"]
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
    assert main(["run", str(MICRO), f"output_dir={out}", *_distill_section()]) == 0
    printed = capsys.readouterr().out
    for stage in ("pretrain", "sft", "ppo", "distill"):  # each stage and its eval say they are skipped
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
