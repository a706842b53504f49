"""A stage's run: the preamble and the end that every recipe shares.

A recipe reads build → train → save::

    stage = StageRun(cfg, "sft", Parallel.for_training(cfg))   # the run directory, the processes
    ...                                          # check the inputs: nothing is written yet
    stage.start(task)                            # config.yaml, task.json; every process's seed, threads
    ...                                          # build the model and train it into stage.run
    return stage.finish(model, tokenizer)        # plots, then final/ by one rename

Whether a stage runs at all — a finished run is skipped, an unfinished one resumed, a changed config
refused — is decided once, before its recipe runs, by :meth:`r1rl.run.stages.Stage.run`, which
``r1rl STAGE``, ``r1rl run`` and ``python my_recipe.py`` all go through; it also pushes ``final/``
to the Hub when the config asks.
"""

from __future__ import annotations

from typing import Any

from r1rl.parallel.distributed import Parallel, is_main
from r1rl.records import Task
from r1rl.rundir import RunDir, finish
from r1rl.train.common import setup
from r1rl.train.prepare import resolved_rewards, write_task_info


class StageRun:
    """The run directory, the processes and the config of one stage, from its preamble to ``final/``."""

    def __init__(self, cfg: Any, name: str, parallel: Parallel) -> None:
        self.cfg, self.name, self.parallel = cfg, name, parallel
        self.run = RunDir(cfg.output_dir)

    def start(self, task: Task | None) -> RunDir:
        """Write ``config.yaml`` and ``task.json`` (:func:`write_start`), wait for the main process
        to have written them, then seed every process's random streams and set its threads."""
        write_start(self.run, self.cfg, task)
        self.parallel.barrier()
        setup(self.cfg.seed, self.cfg.threads)
        return self.run

    def finish(self, model: Any, tokenizer: Any) -> RunDir:
        """Plots, then ``final/`` (model and tokenizer) by one rename; see :func:`r1rl.rundir.finish`."""
        return finish(self.run, self.name, model, tokenizer, self.parallel)


def write_start(run: RunDir, cfg: Any, task: Task | None) -> RunDir:
    """The run directory with the resolved config — its reward tiers filled in from ``task`` when the
    stage has rewards — and ``task.json`` (the main process writes; the others return)."""
    if task is not None and hasattr(cfg, "rewards"):
        cfg = cfg.model_copy(update={"rewards": resolved_rewards(cfg.rewards, task)})
    run.start(cfg)
    if task is not None and is_main():
        write_task_info(run.path, task)
    return run
