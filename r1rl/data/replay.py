"""Loss-prioritised replay: the examples the model does worst on come back to training more often.

A bounded buffer keeps the ``capacity`` example ids with the highest most-recent
per-example loss. Each document slot of a batch is a replay draw with probability
``replay_fraction`` (once the buffer holds anything), otherwise a fresh example; replay
draws pick id ``i`` with probability

    P(i) = p_i^α / Σ_k p_k^α

with ``p_i`` its latest loss (prioritised experience replay, Schaul et al. 2016, eq. 1;
α = 0 is uniform over the buffer, α → ∞ greedy on the worst). Every observed loss —
fresh or replayed — updates the example's priority, so a replayed example that the model
has since learned falls to the bottom and is evicted by harder ones: the buffer tracks
what is *currently* hard, not what once was.

    >>> buf = ReplayBuffer(capacity=2, replay_fraction=0.5)
    >>> buf.update([1, 2, 3], [0.5, 3.0, 1.0])
    >>> sorted(buf.priorities)  # the lowest loss (id 1) was evicted
    [2, 3]
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from r1rl.errors import UserError


@dataclass
class ReplayStats:
    """Counters since creation, and the buffer's current fill and priorities."""

    capacity: int
    size: int = 0
    observed: int = 0  # losses fed to update()
    inserted: int = 0  # ids that entered the buffer
    evicted: int = 0  # ids pushed out by higher-loss ones
    rejected: int = 0  # new ids whose loss was below everything in a full buffer
    replayed: int = 0  # replay draws handed out
    unique_replayed: int = 0
    mean_priority: float = 0.0
    min_priority: float = 0.0
    max_priority: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ReplayBuffer:
    """At most ``capacity`` example ids, each with its latest loss as priority."""

    def __init__(self, capacity: int, replay_fraction: float, alpha: float = 1.0, seed: int = 0) -> None:
        if capacity < 1:
            raise UserError(f"replay.capacity must be >= 1 (got {capacity})")
        if not 0 <= replay_fraction <= 1:
            raise UserError(f"replay.fraction must be in [0, 1] (got {replay_fraction})")
        if alpha < 0:
            raise UserError(f"replay.alpha must be >= 0 (got {alpha})")
        self.capacity, self.replay_fraction, self.alpha = capacity, replay_fraction, alpha
        self.priorities: dict[int, float] = {}
        self.rng = np.random.default_rng(seed)
        self._stats = ReplayStats(capacity)
        self._replayed_ids: set[int] = set()

    def __len__(self) -> int:
        return len(self.priorities)

    def update(self, ids: Sequence[int], losses: Sequence[float]) -> None:
        """Record each example's latest loss; keep the ``capacity`` highest. ``ids``, ``losses``: (D,)."""
        if len(ids) != len(losses):
            raise ValueError(f"{len(ids)} ids but {len(losses)} losses")
        new: set[int] = set()
        for i, loss in zip(ids, losses):
            loss = float(loss)
            if not np.isfinite(loss):
                continue
            self._stats.observed += 1
            i = int(i)
            if i not in self.priorities:
                new.add(i)
            self.priorities[i] = loss
        self._stats.inserted += len(new)
        if len(self.priorities) > self.capacity:
            # ties broken towards the lower id, so the buffer's content is deterministic
            keep = dict(
                heapq.nlargest(self.capacity, self.priorities.items(), key=lambda kv: (kv[1], -kv[0]))
            )
            dropped = [i for i in self.priorities if i not in keep]
            rejected = sum(1 for i in dropped if i in new)  # never made it in: not inserted, not evicted
            self._stats.rejected += rejected
            self._stats.inserted -= rejected
            self._stats.evicted += len(dropped) - rejected
            self.priorities = keep

    def sample(self, k: int) -> np.ndarray:
        """``k`` ids, drawn with replacement with ``P(i) ∝ p_i^α``. -> (k,) int64"""
        if k == 0 or not self.priorities:
            return np.zeros(0, dtype=np.int64)
        ids = np.fromiter(self.priorities.keys(), dtype=np.int64, count=len(self.priorities))
        p = np.fromiter(self.priorities.values(), dtype=np.float64, count=len(self.priorities))
        p = np.maximum(p, 1e-12) ** self.alpha
        out = ids[self.rng.choice(len(ids), size=k, p=p / p.sum())]
        self._stats.replayed += k
        self._replayed_ids.update(out.tolist())
        return out

    def num_replay(self, n: int) -> int:
        """How many of ``n`` slots are replay draws: ``Binomial(n, replay_fraction)``, 0 while empty."""
        return int(self.rng.binomial(n, self.replay_fraction)) if self.priorities else 0

    @property
    def stats(self) -> ReplayStats:
        s = self._stats
        s.size = len(self.priorities)
        s.unique_replayed = len(self._replayed_ids)
        vals = list(self.priorities.values())
        s.mean_priority = float(np.mean(vals)) if vals else 0.0
        s.min_priority = float(min(vals)) if vals else 0.0
        s.max_priority = float(max(vals)) if vals else 0.0
        return s

    def state_dict(self) -> dict[str, Any]:
        return {
            "priorities": dict(self.priorities),
            "rng": self.rng.bit_generator.state,
            "stats": asdict(self._stats),
            "replayed_ids": sorted(self._replayed_ids),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.priorities = dict(state["priorities"])
        self.rng.bit_generator.state = state["rng"]
        self._stats = ReplayStats(**state["stats"])
        self._replayed_ids = set(state["replayed_ids"])
