"""Run every stage of a pipeline recipe: pretrain → SFT → PPO (→ distill), each final model evaluated.

Each stage writes ``<output_dir>/<stage>/``; a stage whose ``final/`` exists is skipped, so a
re-run resumes where an interrupted one stopped. Every section of the recipe is validated
before the first stage starts. The pipeline's ``task``, ``data`` and ``rewards`` reach every
stage; with ``model_path`` it starts from that checkpoint (evaluated as ``base``) and skips
pretraining. A stage reads its models from earlier stages' ``final/`` (:data:`INPUTS`); the
distill stage runs only when the recipe has a ``distill:`` section, its teacher the PPO model and
its student the pretrained one. Under a multi-process launcher every process trains; the main
process alone evaluates, writes the summary and pushes. The summary lands in ``<output_dir>/summary.json``,
and the last thing drawn is ``<output_dir>/dashboard.png`` (see :mod:`r1rl.report.dashboard`)::

    {"task": "arithmetic", "stages": {"pretrain": {"run_dir": ..., "eval": {...}}, "sft": {...}, ...},
     "dashboard": "<output_dir>/dashboard.png"}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

from r1rl.config import TRAIN_STAGES, EvalConfig, PipelineConfig, PPOConfig, StageBase, dump_config, validate
from r1rl.parallel.distributed import is_main
from r1rl.report.dashboard import write_dashboard
from r1rl.report.hub import push_run
from r1rl.run.rerun import config_changes
from r1rl.run.stages import STAGES
from r1rl.rundir import RunDir, atomic_write_text
from r1rl.train.prepare import task_of

SHARED = ("task", "data", "rewards")  # sections every stage takes from the pipeline (its own may add to them)
# Each stage's model keys and, by default, the stage whose final/ they read ("base": the pretrained
# model, or the pipeline's model_path); a stage's own section may set them instead.
INPUTS: dict[str, dict[str, str]] = {
    "sft": {"model_path": "base"},
    "ppo": {"model_path": "sft"},
    "distill": {"model_path": "base", "teacher_path": "ppo"},
}


def train_stages(cfg: PipelineConfig) -> tuple[str, ...]:
    """The stages to train: from pretraining (from SFT when the pipeline starts from ``model_path``)
    to PPO, and distill when the recipe has a ``distill:`` section."""
    stages = TRAIN_STAGES[1:] if cfg.model_path else TRAIN_STAGES
    return tuple(s for s in stages if s != "distill" or cfg.distill is not None)


def _inputs(cfg: PipelineConfig, stage: str, out: Path) -> dict[str, str]:
    """The stage's model paths by default (:data:`INPUTS`)."""
    base = cfg.model_path or str(out / "pretrain" / "final")
    return {
        key: base if src == "base" else str(out / src / "final") for key, src in INPUTS.get(stage, {}).items()
    }


def _merge(base: Any, extra: Any) -> Any:
    """``extra`` over ``base``, mapping by mapping (a stage's section adds to the pipeline's)."""
    if isinstance(base, dict) and isinstance(extra, dict):
        return {**base, **{k: _merge(base.get(k), v) for k, v in extra.items()}}
    return extra if extra is not None else base


def _shared(cfg: PipelineConfig, section: dict[str, Any], stage: str) -> dict[str, Any]:
    dumped = cfg.model_dump(mode="json", include=set(SHARED))
    out: dict[str, Any] = {"seed": cfg.seed, "threads": cfg.threads, "device": cfg.device}
    for key in SHARED:
        if key == "rewards" and stage == "pretrain":
            continue  # pretraining has no rewards
        value = _merge(dumped.get(key), section.get(key))
        if value is not None:
            out[key] = value
    return out


def stage_configs(cfg: PipelineConfig, source: str = "pipeline") -> dict[str, StageBase]:
    """Validated configs of every stage (and one eval config per trained stage, and the start model)."""
    out = Path(cfg.output_dir)
    configs: dict[str, StageBase] = {}
    for stage in train_stages(cfg):
        section = getattr(cfg, stage) or {}
        data: dict[str, Any] = {**_inputs(cfg, stage, out), **section, **_shared(cfg, section, stage)}
        data["output_dir"] = str(out / stage)
        configs[stage] = validate(STAGES[stage].config, data, source=f"{source}: {stage}")
    rewards = cast(PPOConfig, configs["ppo"]).rewards.model_dump(mode="json")  # STAGES["ppo"].config
    evaluated = {s: str(out / s / "final") for s in train_stages(cfg)}
    if cfg.model_path:
        evaluated = {"base": cfg.model_path, **evaluated}
    for stage, model in evaluated.items():  # each scored by the PPO stage's hierarchy
        data = {**cfg.eval, "rewards": rewards, **_shared(cfg, cfg.eval, "eval")}
        if "rewards" not in cfg.eval:
            data["rewards"] = rewards
        data.update({"output_dir": str(out / "eval" / stage), "model_path": model})
        configs[f"eval_{stage}"] = validate(EvalConfig, data, source=f"{source}: eval")
    return configs


def run(cfg: PipelineConfig, source: str = "pipeline", overwrite: bool = False) -> RunDir:
    """Every stage and its eval; a stage that runs (or resumes) makes every later stage and eval run
    afresh too (their old runs moved aside), since they were trained on what it replaces.
    ``overwrite`` lets a stage whose config changed start afresh instead of refusing."""
    configs = stage_configs(cfg, source)
    root = start_pipeline(cfg)
    task_name = task_of(configs["ppo"]).name  # names the task; its rows load when a stage needs them
    summary: dict[str, Any] = {"task": task_name, "stages": {}}
    changed = False  # an earlier stage ran: what follows was built on its old result
    recipes: dict[str, str] = dict(cfg.recipes.items())
    for stage in ("base", *train_stages(cfg)):
        if f"eval_{stage}" not in configs:  # "base": only when the pipeline starts from a checkpoint
            continue
        if stage != "base":
            print(f"[run] {stage} → {configs[stage].output_dir}")
            rd, ran = STAGES[stage].run(configs[stage], recipes.get(stage), overwrite, force=changed)
            changed, run_dir = changed or ran, str(rd.path)
        else:
            run_dir = cfg.model_path or ""
        if not is_main():
            continue
        ev_cfg = configs[f"eval_{stage}"]
        STAGES["eval"].run(ev_cfg, recipes.get("eval"), overwrite, force=changed)
        metrics = json.loads(RunDir(ev_cfg.output_dir).eval_results.read_text())["tasks"][task_name]
        summary["stages"][stage] = {"run_dir": run_dir, "eval": metrics}
        atomic_write_text(root.path / "summary.json", json.dumps(summary, indent=2))
    if not is_main():
        return root
    summary["dashboard"] = str(write_dashboard(root.path, summary))
    atomic_write_text(root.path / "summary.json", json.dumps(summary, indent=2))
    print(format_summary(summary))
    print(f"[run] dashboard: {summary['dashboard']}")
    if cfg.push_to_hub and cfg.hub_repo_id:  # the last stage's model, its lineage and evals in its card
        # (the config refuses push_to_hub without hub_repo_id)
        print(f"[hub] {root.path} → {push_run(root.path, cfg.hub_repo_id, private=cfg.hub_private)}")
    return root


def start_pipeline(cfg: PipelineConfig) -> RunDir:
    """The pipeline's folder and ``config.yaml``; an earlier, different ``config.yaml`` is kept in
    ``config.history/`` (numbered), not overwritten."""
    root = RunDir(cfg.output_dir)
    if is_main() and root.config.is_file():
        import yaml

        old = yaml.safe_load(root.config.read_text()) or {}
        if config_changes(old, cfg.model_dump(mode="json")):
            history = root.path / "config.history"
            history.mkdir(exist_ok=True)
            n = len(list(history.glob("*.yaml"))) + 1
            atomic_write_text(history / f"{n:04d}.yaml", root.config.read_text())
    if is_main():
        root.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(root.config, dump_config(cfg))
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
