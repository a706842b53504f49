"""Run every stage of a pipeline recipe: pretrain → SFT → PPO, with each stage's final model evaluated.

Each stage writes ``<output_dir>/<stage>/``; a stage whose ``final/`` exists is skipped, so a
re-run resumes where an interrupted one stopped. Every section of the recipe is validated
before the first stage starts. Under a multi-process launcher every process trains; the main
process alone evaluates, writes the summary and pushes. The summary lands in ``<output_dir>/summary.json``::

    {"stages": {"pretrain": {"run_dir": ..., "eval": {...}}, "sft": {...}, "ppo": {...}}}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from r1rl.config import EvalConfig, PipelineConfig, PPOConfig, PretrainConfig, SFTConfig, validate
from r1rl.distributed import is_main
from r1rl.rundir import RunDir, atomic_write_text

TRAIN_STAGES = ("pretrain", "sft", "ppo")


def stage_configs(cfg: PipelineConfig, source: str = "pipeline") -> dict[str, BaseModel]:
    """Validated configs of every stage (and one eval config per trained stage)."""
    out = Path(cfg.output_dir)
    shared = {"seed": cfg.seed, "threads": cfg.threads, "task": cfg.task.model_dump()}
    configs: dict[str, BaseModel] = {}
    types = {"pretrain": PretrainConfig, "sft": SFTConfig, "ppo": PPOConfig}
    previous: str | None = None
    for stage in TRAIN_STAGES:
        data: dict[str, Any] = {**shared, "output_dir": str(out / stage), **getattr(cfg, stage)}
        if previous is not None:
            data.setdefault("model_path", str(out / previous / "final"))
        configs[stage] = validate(types[stage], data, source=f"{source}: {stage}")
        previous = stage
    rewards = configs["ppo"].rewards.model_dump()
    for stage in TRAIN_STAGES:
        data = {
            **shared,
            "rewards": rewards,
            **cfg.eval,
            "output_dir": str(out / "eval" / stage),
            "model_path": str(out / stage / "final"),
        }
        configs[f"eval_{stage}"] = validate(EvalConfig, data, source=f"{source}: eval")
    return configs


def run(cfg: PipelineConfig, source: str = "pipeline") -> RunDir:
    from r1rl.stages import STAGES  # late import: stages pull in torch/transformers

    configs = stage_configs(cfg, source)
    root = RunDir(cfg.output_dir).start(cfg)
    summary: dict[str, Any] = {"stages": {}}
    for stage in TRAIN_STAGES:
        rd = RunDir(configs[stage].output_dir)
        if rd.is_finished():
            print(f"[run] {stage}: finished already, skipping ({rd.path})")
        else:
            print(f"[run] {stage} → {rd.path}")
            STAGES[stage](configs[stage])
        if not is_main():
            continue
        ev = RunDir(configs[f"eval_{stage}"].output_dir)
        if not ev.eval_results.exists():
            STAGES["eval"](configs[f"eval_{stage}"])
        metrics = json.loads(ev.eval_results.read_text())["tasks"]["arithmetic"]
        summary["stages"][stage] = {"run_dir": str(rd.path), "eval": metrics}
        atomic_write_text(root.path / "summary.json", json.dumps(summary, indent=2))
    if not is_main():
        return root
    print(format_summary(summary))
    if cfg.push_to_hub:  # the last stage's model, with the whole lineage and every eval in its card
        from r1rl.hub import push_run

        print(f"[hub] {root.path} → {push_run(root.path, cfg.hub_repo_id, private=cfg.hub_private)}")
    return root


def format_summary(summary: dict[str, Any]) -> str:
    first = next(iter(summary["stages"].values()))["eval"]
    keys = ["accuracy"] + [k for k in first if k.startswith("tier/")]
    lines = ["| stage | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for stage, s in summary["stages"].items():
        lines.append(
            f"| {stage} | " + " | ".join(f"{s['eval'].get(k, float('nan')):.3f}" for k in keys) + " |"
        )
    return "\n".join(lines)
