"""Checkpoint backends: the whole state in one file, or a torch distributed checkpoint of shards.

:class:`r1rl.train.loop.Checkpointer` writes through one of them into a temporary folder it then
renames; :meth:`r1rl.parallel.distributed.Parallel.checkpoint_backend` picks the sharded one for
an FSDP2 model.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.tensor import DTensor

from r1rl.errors import UserError


class TorchBackend:
    """The whole state in one ``state.pt`` (``torch.save``), fsynced before the folder is renamed."""

    FILE = "state.pt"

    def save(self, state: dict[str, Any], directory: Path) -> None:
        self.write(state, directory / self.FILE)

    @staticmethod
    def write(state: Any, path: Path) -> None:
        """``torch.save`` into ``path``, fsynced; a failed write raises its ``OSError``."""
        try:
            with path.open("wb") as f:
                torch.save(state, f)
                f.flush()
                os.fsync(f.fileno())
        except RuntimeError as e:  # torch's zip writer wraps the OSError of a failed write
            cause = e.__context__ if isinstance(e.__context__, OSError) else OSError(errno.EIO, str(e))
            raise cause from None

    def load(self, directory: Path) -> dict[str, Any]:
        return torch.load(directory / self.FILE, weights_only=False)

    @classmethod
    def complete(cls, directory: Path) -> bool:
        return (directory / cls.FILE).exists()


@dataclass(frozen=True)
class _Shard:
    """Where a sharded tensor of the state went: its key in the distributed checkpoint."""

    key: str


def _split(state: Any, prefix: str, shards: dict[str, Any]) -> Any:
    """``state`` with every DTensor replaced by a :class:`_Shard` marker, the DTensors into ``shards``."""
    if isinstance(state, DTensor):
        shards[prefix] = state
        return _Shard(prefix)
    if isinstance(state, dict):
        return {k: _split(v, f"{prefix}/{k}", shards) for k, v in state.items()}
    return state


def _join(state: Any, shards: dict[str, Any]) -> Any:
    if isinstance(state, _Shard):
        return shards[state.key]
    if isinstance(state, dict):
        return {k: _join(v, shards) for k, v in state.items()}
    return state


class ShardedBackend:
    """A torch distributed checkpoint: each rank writes its shards of the sharded tensors (FSDP2's
    weights and optimizer moments) and the main process the rest (``extra.pt``: schedules, RNG
    streams, counters). A collective: every rank saves and loads.

    Loading fills ``template()`` — the loop's current state, of the same layout — in place, so a
    checkpoint resumes under the same sharding; a shard the run does not have is a one-line error.
    """

    FILE = "extra.pt"
    collective = True

    def __init__(self, template: Callable[[], dict[str, Any]], par: Any) -> None:
        self.template, self.par = template, par

    def save(self, state: dict[str, Any], directory: Path) -> None:
        shards: dict[str, Any] = {}
        rest = _split(state, "", shards)
        dcp.save(shards, checkpoint_id=directory)
        if self.par.is_main:
            TorchBackend.write(rest, directory / self.FILE)

    def load(self, directory: Path) -> dict[str, Any]:
        rest = torch.load(directory / self.FILE, weights_only=False)
        shards: dict[str, Any] = {}
        _split(self.template(), "", shards)
        missing = sorted(_shard_keys(rest) - set(shards))
        if missing:
            raise UserError(f"checkpoint {directory} holds shards this run does not have: {missing[:3]}")
        dcp.load(shards, checkpoint_id=directory)
        return _join(rest, shards)

    @classmethod
    def complete(cls, directory: Path) -> bool:
        return (directory / cls.FILE).exists() and (directory / ".metadata").exists()


def _shard_keys(state: Any) -> set[str]:
    if isinstance(state, _Shard):
        return {state.key}
    if isinstance(state, dict):
        return set().union(*(_shard_keys(v) for v in state.values()))
    return set()
