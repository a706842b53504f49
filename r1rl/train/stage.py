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

from pathlib import Path
from typing import Any

from r1rl.errors import UserError
from r1rl.parallel.distributed import Parallel, is_main
from r1rl.parallel.sharding import full_state_dict
from r1rl.records import Task
from r1rl.report.plots import plot_expert_load, plot_metrics
from r1rl.report.trackers import Trackers
from r1rl.rundir import RunDir, atomic_write_text, read_jsonl
from r1rl.train.common import setup
from r1rl.train.prepare import resolved_config, write_task_info


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
        """Plots, then ``final/`` (model and tokenizer) by one rename; see :func:`finish`."""
        return finish(self.run, self.name, model, tokenizer, self.parallel)


def write_start(run: RunDir, cfg: Any, task: Task | None) -> RunDir:
    """The run directory with the resolved config (:func:`~r1rl.train.prepare.resolved_config`: reward
    tiers filled in from ``task``, ``task: null`` for ``data.path``) and ``task.json`` (the main
    process writes; the others return)."""
    if task is not None:
        cfg = resolved_config(cfg, task)
    run.start(cfg)
    report_to = getattr(cfg, "report_to", None)
    if report_to and is_main():  # every logged row goes to these trackers too
        run.trackers = Trackers(report_to, run.path, run.path.name, cfg.model_dump())
    if task is not None and is_main():
        write_task_info(run.path, task, getattr(cfg, "rewards", None))
    return run


def write_samples_table(run: RunDir, last: int = 10) -> Path | None:
    """``samples.md``: the logged sample completions of the last ``last`` logged steps, as a table."""
    path = run.path / "rollouts.jsonl"
    if not path.exists():
        return None
    rows = read_jsonl(path)[-last:]

    def cell(text: str) -> str:  # one table cell: control characters escaped, pipes and backticks neutralised
        text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in str(text))
        return "`" + text.replace("|", "\\|").replace("`", "'") + "`"

    lines = ["| step | prompt | completion | reward |", "|---:|---|---|---:|"]
    for r in rows:
        for s in r["samples"]:
            prompt, completion = cell(s["prompt"]), cell(s["completion"])
            lines.append(f"| {r['step']} | {prompt} | {completion} | {s['reward']:.3f} |")
    out = run.path / "samples.md"
    atomic_write_text(out, "\n".join(lines) + "\n")
    return out


def render_plots(run: RunDir, title: str) -> list[Path]:
    """Render ``plots/*.png`` from the run's ``metrics.jsonl``."""
    written = plot_metrics(run.read_metrics(), run.plots, title)
    if rows := read_jsonl(run.expert_load):
        written.append(plot_expert_load(rows, run.plots / "expert_load.png", title))
    return written


def finish(run: RunDir, stage: str, model: Any, tokenizer: Any, par: Any) -> RunDir:
    """The end of a training stage: plots, then ``final/`` (model and tokenizer) by one rename.

    Under a launcher only the main process writes; the others wait for it in ``par.close()``.
    A sharded model (FSDP2) is gathered first, every rank taking part; a PEFT model gathers only
    its adapters.
    """
    state = None
    if getattr(par, "sharded", False) and model is not None:
        state = full_state_dict(model, trainable_only=hasattr(model, "peft_config"))
    if par.is_main:
        try:
            render_plots(run, stage)
        except OSError as e:  # a full or failing disk: the run is done, say which file could not be written
            raise UserError(
                f"cannot write {run.plots} ({e.strerror or e}); re-run to finish the stage"
            ) from None
        if stage == "ppo":
            write_samples_table(run)
        with run.writing_final() as final:
            model.save_pretrained(final, **({"state_dict": state} if state is not None else {}))
            tokenizer.save_pretrained(final)
    par.close()
    return run
