"""The skeleton every training loop stands on: a :class:`Checkpointer`, a :class:`StepLogger` and
the :class:`Cadence` that ends every step.

A loop (pretraining, SFT, distillation, PPO) reads::

    ckpt = Checkpointer(run.checkpoints, every=cfg.checkpoint.every, keep=cfg.checkpoint.keep)
    start, state = ckpt.resume()                  # newest checkpoint, or (0, None)
    log = StepLogger(run, "ppo", total=cfg.steps, start=start, every=cfg.log.every)
    cadence = Cadence(log, ckpt, par, evaluate, eval_every=cfg.log.eval_every)
    for step in log.steps():                      # a progress bar on the main process
        with log.phase("generate"):               # timed: logged as perf/generate_s
            ...
        cadence.end_step(step + 1, row=metrics_and_side_logs, save=write_checkpoint)

- **Atomic, durable checkpoints.** A checkpoint is written into a temporary folder, its files
  and the folder fsynced, then renamed to ``step-NNNNNNNN``; a crash leaves the previous
  checkpoint loadable. The newest ``keep`` are kept. The state itself goes through a backend of
  :mod:`r1rl.parallel.checkpoint`: ``TorchBackend`` (one ``torch.save`` file, written by the main
  process) or, under FSDP2, ``ShardedBackend`` (a torch distributed checkpoint: every rank writes
  its own shards).
- **Exact resume.** The state is whatever the loop hands over (weights, optimizers, schedulers,
  samplers, controllers); :func:`rng_state_of` adds every process's RNG state, so a resumed run
  continues each random stream. The logger drops rows logged after the resumed step.
- **One cadence.** ``log.due`` is the logging schedule (every ``every`` steps, the last step, or
  when forced, e.g. by an eval); phase timers add up within a step, so a row's ``perf/<phase>_s``
  and its ``perf/step_s`` describe the same (last) step. On a GPU, ``perf/gpu_peak_mem_gb`` is
  the peak memory torch has allocated on it since the process started.
- **The end of a step** (:meth:`Cadence.end_step`): the held-out eval when due (every
  ``eval_every`` steps and at the last, on the main process, logged under ``eval/``), the metrics
  row when due, then a checkpoint when due — or when SIGTERM came, followed by :class:`Preempted`.
- **Eval listeners.** Code outside the loop may watch the periodic held-out eval
  (:func:`eval_listener`: a hyper-parameter search reports it to its pruner). A listener sees each
  eval but the last (that one is the run's result) right after its row is logged; whatever it
  raises ends the run there, as any error in a step would.
- **Preemption.** While the steps run, SIGTERM (what Slurm and Kubernetes send before killing)
  only sets a flag; at the next step boundary every process agrees on it (``log.stop_requested``,
  one collective), the loop writes a checkpoint there and raises :class:`Preempted`, and the CLI
  exits with status 143. The same command resumes. A step must fit in the grace period: one
  ``perf/step_s`` plus a checkpoint write.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm.auto import tqdm

from r1rl.errors import Preempted, UserError
from r1rl.parallel.checkpoint import ShardedBackend, TorchBackend
from r1rl.parallel.distributed import main_decides
from r1rl.rundir import RunDir
from r1rl.train.common import rng_state, set_rng_state

__all__ = [
    "Cadence",
    "Checkpointer",
    "Preempted",
    "ShardedBackend",
    "StepLogger",
    "restore_rng",
    "rng_state_of",
]

CKPT_PREFIX = "step-"
_STOP = threading.Event()  # set by SIGTERM while a loop runs


class CheckpointBackend(Protocol):
    """How one checkpoint's state is written into, and read back from, its folder."""

    def save(self, state: dict[str, Any], directory: Path) -> None: ...

    def load(self, directory: Path) -> dict[str, Any]: ...

    def complete(self, directory: Path) -> bool: ...


def _fsync_file(path: Path) -> None:
    with path.open("rb+") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Checkpointer:
    """Numbered, atomic checkpoints under ``directory``: only ``is_main`` writes, except with a
    collective backend (:class:`ShardedBackend`), where every rank writes its shards and the main
    process publishes the folder."""

    def __init__(
        self,
        directory: Path,
        every: int = 0,
        keep: int = 2,
        backend: CheckpointBackend | None = None,
        is_main: bool = True,
    ) -> None:
        self.directory, self.every, self.keep = Path(directory), every, keep
        self.backend = backend or TorchBackend()
        self.is_main = is_main

    def due(self, done: int, total: int) -> bool:
        """A checkpoint is written every ``every`` steps, never at the end (``final/`` is)."""
        return self.every > 0 and done % self.every == 0 and done < total

    def paths(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.directory.is_dir():
            return []
        return sorted(
            p
            for p in self.directory.iterdir()
            if p.name.startswith(CKPT_PREFIX) and any(b.complete(p) for b in (TorchBackend, ShardedBackend))
        )

    def save(self, step: int, state: dict[str, Any]) -> Path | None:
        """Write ``state`` as checkpoint ``step`` (temp folder, fsync, rename); keep the newest ``keep``.

        With a collective backend every rank calls this and writes its part; the main process
        renames. Returns the checkpoint's path (``None`` on the ranks that write nothing).
        """
        collective = getattr(self.backend, "collective", False)
        if not (self.is_main or collective):
            return None
        final = self.directory / f"{CKPT_PREFIX}{step:08d}"
        tmp = self.directory / f".tmp-{CKPT_PREFIX}{step:08d}"
        error = None
        try:
            if self.is_main:
                self.directory.mkdir(parents=True, exist_ok=True)
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir()
            if collective:
                self.backend.par.barrier()  # type: ignore[attr-defined]
            self.backend.save(state, tmp)
        except OSError as e:  # a full or failing disk: the previous checkpoint is untouched
            error = e
        if collective:
            error = error or self._agree(error)
        if error is None and self.is_main:
            error = self._publish(tmp, final)
        if error is not None:
            if self.is_main:
                shutil.rmtree(tmp, ignore_errors=True)
            previous = self.paths()
            kept = f"the newest intact one is {previous[-1]}" if previous else "no earlier one exists"
            raise UserError(f"cannot write checkpoint {final} ({error.strerror or error}); {kept}")
        if self.is_main:
            for old in self.paths()[: -self.keep]:
                shutil.rmtree(old, ignore_errors=True)
        if collective:
            self.backend.par.barrier()  # type: ignore[attr-defined]
        return final if self.is_main else None

    def _agree(self, error: OSError | None) -> OSError | None:
        """Every rank learns whether any rank's write failed (one collective)."""
        ok = self.backend.par.all_true(error is None)  # type: ignore[attr-defined]
        return None if ok else OSError(errno.EIO, "another process could not write its shards")

    def _publish(self, tmp: Path, final: Path) -> OSError | None:
        """fsync every file of ``tmp`` and the folder, then rename it to ``final``."""
        try:
            for f in tmp.iterdir():
                _fsync_file(f)
            _fsync_dir(tmp)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            _fsync_dir(self.directory)
        except OSError as e:
            return e
        return None

    def load_latest(self) -> dict[str, Any] | None:
        """The newest checkpoint's state; one written under another sharding is a one-line error.
        The main process names it, so every rank loads the same one."""
        paths = main_decides(self.paths)
        if not paths:
            return None
        if not self.backend.complete(paths[-1]):
            saved, now = (
                ("sharded (FSDP2)", "unsharded")
                if ShardedBackend.complete(paths[-1])
                else ("unsharded", "FSDP2")
            )
            raise UserError(
                f"checkpoint {paths[-1]} holds {saved} state and this run is {now}; resume it under the "
                "launch that wrote it, or start afresh with --overwrite"
            )
        return self.backend.load(paths[-1])

    def resume(self) -> tuple[int, dict[str, Any] | None]:
        """``(step, state)`` of the newest checkpoint, or ``(0, None)`` for a fresh run."""
        state = self.load_latest()
        return (int(state["step"]), state) if state is not None else (0, None)


def rng_state_of(par: Any) -> dict[str, Any]:
    """Checkpoint entries for the RNG: the main process's, plus every rank's under a launcher.

    A collective under a launcher: every rank must call it.
    """
    state = rng_state()
    if not par.enabled:
        return {"rng": state}
    return {"rng": state, "rng_ranks": par.gather_objects(state)}


def restore_rng(par: Any, state: dict[str, Any]) -> None:
    """Undo :func:`rng_state_of` (from another process count, rank 0 takes the main stream)."""
    ranks = state.get("rng_ranks")
    if ranks is not None and len(ranks) == par.world:
        set_rng_state(ranks[par.rank])
    elif par.is_main:
        set_rng_state(state["rng"])


def _install_sigterm() -> Any:
    """Make SIGTERM set the stop flag (only the main thread may install handlers); the old handler."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, lambda signum, frame: _STOP.set())


class StepLogger:
    """Logging cadence, ``metrics.jsonl`` rows (and trackers), side logs, progress bar, phase timers."""

    def __init__(
        self, run: RunDir, stage: str, total: int, start: int = 0, every: int = 1, is_main: bool = True
    ) -> None:
        self.run, self.stage, self.total, self.start, self.every = run, stage, total, start, every
        self.is_main = is_main
        self.phases: dict[str, float] = {}
        self._step_t0 = time.perf_counter()
        self.bar: Any = None
        if start and is_main:
            run.truncate_metrics(start)  # a resumed run re-logs what came after its checkpoint

    def steps(self) -> Iterator[int]:
        """The remaining steps behind a progress bar (main process); meanwhile SIGTERM only sets a flag."""
        self.bar = tqdm(
            range(self.start, self.total), desc=self.stage, initial=self.start, total=self.total,
            dynamic_ncols=True, disable=not self.is_main,
        )  # fmt: skip
        _STOP.clear()
        previous = _install_sigterm()
        try:
            for step in self.bar:
                self._step_t0, self.phases = time.perf_counter(), {}  # a row shows its own step's phases
                yield step
        finally:
            self.bar.close()
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    def stop_requested(self, par: Any) -> bool:
        """Whether any process got SIGTERM (a collective under a launcher: every rank calls it each step)."""
        return not par.all_true(not _STOP.is_set())

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time a block; its seconds within the step are logged as ``perf/<name>_s``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - t0

    @property
    def step_seconds(self) -> float:
        return time.perf_counter() - self._step_t0

    def due(self, done: int, force: bool = False) -> bool:
        return force or done % self.every == 0 or done == self.total

    def log(self, done: int, metrics: dict[str, Any], side: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write one row (with the phase timers) and each ``side`` entry to ``<name>.jsonl``."""
        row = {**metrics, **{f"perf/{k}_s": v for k, v in self.phases.items()}}
        row.setdefault("perf/step_s", self.step_seconds)
        if torch.cuda.is_available() and torch.cuda.is_initialized():  # this process's peak so far
            row.setdefault("perf/gpu_peak_mem_gb", torch.cuda.max_memory_allocated() / 2**30)
        if self.is_main:
            self.run.log(done, self.stage, row)
            for name, value in (side or {}).items():
                self.run.append_line(self.run.path / f"{name}.jsonl", json.dumps({"step": done, **value}))
        return row

    def postfix(self, **values: float | None) -> None:
        """Show ``values`` on the progress bar (a count as an integer); ``None`` is left out."""
        if self.bar is not None:
            shown = {k: v if isinstance(v, int) else f"{v:.3f}" for k, v in values.items() if v is not None}
            self.bar.set_postfix(shown)


Row = tuple[dict[str, Any], dict[str, Any]]  # a step's metrics, and its side logs ({name: entry})
EvalListener = Callable[[str, int, dict[str, Any]], None]  # (stage, step, the logged row)
_EVAL_LISTENERS: list[EvalListener] = []


@contextmanager
def eval_listener(listener: EvalListener) -> Iterator[None]:
    """While the block runs, every loop's periodic held-out eval (but the last) calls
    ``listener(stage, step, row)`` on the main process after logging ``row``."""
    _EVAL_LISTENERS.append(listener)
    try:
        yield
    finally:
        _EVAL_LISTENERS.remove(listener)


@dataclass
class Cadence:
    """The end of every step, the same in every loop: eval, log, checkpoint, SIGTERM, in that order.

    ``evaluate`` (main process only) returns held-out metrics, logged under ``eval/`` every
    ``eval_every`` steps and at the last; ``postfix`` names the metrics the progress bar shows
    (label -> metric, or label -> a function of the row, whose ``None`` is not shown).
    """

    log: StepLogger
    ckpt: Checkpointer
    par: Any
    evaluate: Callable[[], dict[str, float]] | None = None
    eval_every: int = 0
    postfix: Mapping[str, str | Callable[[dict[str, Any]], float | None]] = field(
        default_factory=lambda: {"loss": "loss"}
    )

    def end_step(
        self, done: int, row: Callable[[float], Row], save: Callable[[int], Path | None], last: bool = False
    ) -> None:
        """After step ``done``: ``row(step_seconds)`` (computed only when a row is due: it may be a
        collective) with the eval when due goes to ``metrics.jsonl``; ``save(done)`` writes a
        checkpoint when one is due or SIGTERM came, and then :class:`Preempted` is raised.
        ``last``: the loop ends after this step though ``done`` is short of the total (a sample
        budget ran out)."""
        log = self.log
        last = last or done == log.total
        every = self.eval_every
        eval_due = self.evaluate is not None and every > 0 and (done % every == 0 or last)
        if log.due(done, force=eval_due or last):
            metrics, side = row(log.step_seconds)
            if eval_due and self.par.is_main:
                with log.phase("eval"):
                    metrics.update({f"eval/{k}": v for k, v in self.evaluate().items()})  # type: ignore[misc]
            log.log(done, metrics, side)
            log.postfix(**{k: m(metrics) if callable(m) else metrics[m] for k, m in self.postfix.items()})
            if eval_due and self.par.is_main and not last:
                for listener in list(_EVAL_LISTENERS):
                    listener(log.stage, done, metrics)
        stop = log.stop_requested(self.par) and not last
        if self.ckpt.due(done, log.total) or stop:
            path = save(done)
            if stop:
                raise Preempted(done, path)
