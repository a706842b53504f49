"""``r1rl sweep``: the study of :mod:`r1rl.tune` with trials that are runs of a stage or a pipeline.

Before any trial runs, the sweep file and every searched key are checked against the stage's config
type (a key the stage does not have is one line, with a did-you-mean), and an ``eval/...`` objective
of a stage needs its periodic held-out eval (``log.eval_every``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from r1rl.config import PipelineConfig, load_config
from r1rl.errors import UserError, did_you_mean
from r1rl.run import pipeline
from r1rl.run.stages import STAGES
from r1rl.strict import apply_overrides, load_yaml, validate
from r1rl.tune.report import write_report
from r1rl.tune.space import SweepConfig, Value
from r1rl.tune.study import import_optuna, metric_of, run_study, summary_metric


def run_sweep(args: argparse.Namespace) -> int:
    cfg = validate(SweepConfig, apply_overrides(load_yaml(args.sweep), args.overrides), source=args.sweep)
    import_optuna()  # a missing extra is one line before anything else
    runner = TrialRun(cfg)
    study = run_study(cfg, runner, runner.watch)
    table = write_report(study, cfg)
    print(table.read_text())
    print(f"[sweep] {table}; plots in {Path(cfg.output_dir) / 'plots'}")
    return 0


class TrialRun:
    """Runs one trial: the recipe, the sweep's overrides, the trial's values, ``output_dir=trial-NNN``."""

    def __init__(self, cfg: SweepConfig) -> None:
        self.cfg = cfg
        kinds = [*STAGES.names(), "pipeline"]
        if cfg.stage not in kinds:
            raise UserError(f"sweep: unknown stage {cfg.stage!r}{did_you_mean(cfg.stage, kinds)}")
        self.config_type: Any = PipelineConfig if cfg.stage == "pipeline" else STAGES[cfg.stage].config
        example = self.load({k: spec.example() for k, spec in cfg.space.items()}, Path(cfg.output_dir) / "x")
        self.watch = self._watch(example)

    def load(self, params: dict[str, Value], out: Path) -> Any:
        overrides = [*self.cfg.overrides, *(f"{k}={v}" for k, v in params.items()), f"output_dir={out}"]
        cfg = load_config(self.config_type, self.cfg.config, overrides)
        if self.cfg.stage == "pipeline":
            pipeline.stage_configs(cfg, source=self.cfg.config)  # every section, before any trial
        return cfg

    def _watch(self, example: Any) -> tuple[str, str]:
        """(stage, metric) whose periodic evals the pruner sees; checks the objective can be read."""
        objective = self.cfg.objective
        if self.cfg.stage != "pipeline":
            if objective.stage is not None:
                raise UserError("sweep: objective.stage names a pipeline's stage; this sweep runs one stage")
            if objective.metric.startswith("eval/") and self.cfg.stage != "eval":
                if example.log.eval_every == 0:
                    raise UserError(
                        f"sweep: objective {objective.metric!r} is the periodic held-out eval: "
                        "set log.eval_every > 0 (in overrides)"
                    )
            return self.cfg.stage, objective.metric
        stages = pipeline.train_stages(example)
        stage = objective.stage or stages[-1]
        if stage not in (*stages, "base"):
            raise UserError(
                f"sweep: objective.stage {stage!r} is not run by the pipeline ({', '.join(stages)})"
            )
        return stage, f"eval/{objective.metric}"

    def __call__(self, params: dict[str, Value], out: Path) -> float:
        cfg = self.load(params, out)
        if self.cfg.stage == "pipeline":
            pipeline.run(cfg, source=self.cfg.config)
            return summary_metric(out, self.watch[0], self.cfg.objective.metric)
        STAGES[self.cfg.stage](cfg)
        return metric_of(out, self.cfg.objective.metric)
