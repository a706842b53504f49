"""The run-directory contract every stage writes (see DESIGN.md, "Stages and the run directory").

::

    <output_dir>/config.yaml  metrics.jsonl  checkpoints/  final/  plots/*.png  [eval_results.json]
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from r1rl.errors import UserError
from r1rl.parallel.distributed import is_main
from r1rl.strict import dump_config

STEP_LOGS = ("rollouts.jsonl", "expert_load.jsonl")  # per-step side logs besides metrics.jsonl


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.trackers: Any = None  # experiment trackers (report_to) that get every logged row too

    config = property(lambda self: self.path / "config.yaml")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    checkpoints = property(lambda self: self.path / "checkpoints")
    final = property(lambda self: self.path / "final")
    plots = property(lambda self: self.path / "plots")
    eval_results = property(lambda self: self.path / "eval_results.json")
    expert_load = property(lambda self: self.path / "expert_load.jsonl")

    def is_finished(self) -> bool:
        """A stage is finished once its ``final/`` exists; it is only ever created by an atomic rename."""
        return self.final.is_dir()

    def start(self, cfg: BaseModel) -> RunDir:
        """Create the directory and write the resolved config before any training.

        Trackers set on :attr:`trackers` (``report_to``: :func:`r1rl.train.stage.write_start`) get
        every logged row as well. Under a multi-process launcher only the main process writes (here
        and in :meth:`log`).
        """
        if not is_main():
            return self
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"output_dir {self.path}: cannot create it ({e.strerror or e})") from None
        atomic_write_text(self.config, dump_config(cfg))
        return self

    def log(self, step: int, stage: str, metrics: dict[str, Any]) -> None:
        if not is_main():
            return
        row: dict[str, Any] = {"step": int(step), "stage": stage}
        for k, v in metrics.items():
            v = float(v) if hasattr(v, "__float__") and not isinstance(v, bool) else v
            row[k] = None if isinstance(v, float) and not math.isfinite(v) else v
        self.append_line(self.metrics, json.dumps(row))
        if self.trackers is not None:
            self.trackers.log(int(step), {k: v for k, v in row.items() if k not in ("step", "stage")})

    @staticmethod
    def append_line(path: Path, line: str) -> None:
        """Append one JSON line; a failing disk is a one-line :class:`UserError` naming the file."""
        try:
            with path.open("a") as f:
                f.write(line + "\n")
        except OSError as e:
            raise UserError(f"cannot write {path} ({e.strerror or e})") from None

    def read_metrics(self) -> list[dict[str, Any]]:
        return read_jsonl(self.metrics)

    def truncate_metrics(self, after_step: int) -> None:
        """Drop rows logged after ``after_step`` (a resumed run re-logs them), in every step log."""
        if not is_main():
            return
        for path in [self.metrics, *(self.path / name for name in STEP_LOGS)]:
            if not path.exists():
                continue
            kept = [r for r in read_jsonl(path) if r["step"] <= after_step]
            atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))

    @contextmanager
    def writing_final(self) -> Iterator[Path]:
        """Yield a temporary folder that becomes ``final/`` by one rename when the block succeeds.

        A write that fails (a full or failing disk) leaves no half-written ``final/`` and the
        checkpoints untouched, and is one line naming the folder.
        """
        from safetensors import SafetensorError  # what safetensors raises for a failed write

        tmp = self.path / "final.tmp"
        try:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            yield tmp
            shutil.rmtree(self.final, ignore_errors=True)
            os.replace(tmp, self.final)
        except (OSError, SafetensorError) as e:
            shutil.rmtree(tmp, ignore_errors=True)
            why = getattr(e, "strerror", None) or str(e).split("I/O error: ")[-1].split(" (os error")[0]
            raise UserError(f"cannot write {self.final} ({why}); re-run to write it again") from None
        if self.trackers is not None:
            self.trackers.close()


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``path`` by a rename (a crash leaves the old file); a failing disk is a one-line UserError."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write {path} ({e.strerror or e})") from None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSON-lines log; a torn last line (a kill mid-write) is left out."""
    if not path.exists():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    rows = []
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise UserError(f"{path}: line {i + 1} is not JSON") from None
    return rows
