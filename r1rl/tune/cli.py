"""``r1rl sweep SWEEP.yaml``: the command's arguments (the CLI builds its parser before Optuna loads)."""

from __future__ import annotations

import argparse
from typing import Any

SWEEP_EXAMPLE = """SWEEP.yaml:
  stage: sft                               # or pretrain, ppo, distill, eval, pipeline
  config: recipes/configs/tiny/sft.yaml
  overrides: [log.eval_every=50]
  space:
    optim.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
    steps: {type: int, low: 50, high: 200, step: 50}
  objective: {metric: eval/accuracy, direction: maximize}
  trials: 20
  sampler: tpe                             # tpe | random | grid
  output_dir: runs/sweep                   # trial-NNN/, study.db, results.md, plots/
storage: sqlite:///<output_dir>/study.db by default; any Optuna storage URL shares a study
between processes or machines (run the same command on each)."""


def add_sweep_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``sweep`` to the ``r1rl`` CLI's subcommands."""
    p = subparsers.add_parser(
        "sweep",
        help="Bayesian hyper-parameter search (Optuna TPE) over a stage's or pipeline's config keys",
        description="Run an Optuna study whose trials are ordinary runs of a stage or pipeline, each in "
        "<output_dir>/trial-NNN; re-running the command resumes the study. Writes results.md and plots/.",
        epilog=SWEEP_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("sweep", metavar="SWEEP.yaml", help="the sweep: stage, config, space, objective, trials")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides of the sweep file (e.g. trials=40)")
    return p
