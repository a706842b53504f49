"""Which prompts a PPO step trains on: a curriculum by the policy's own pass rate, and replay of failures.

Notation: ``N`` training rows, ``k`` prompts per step, ``G`` samples per prompt (a group), ``p`` a
prompt's pass rate (the share of its last group that passed the top tier).

- **Stream.** Rows come from an :class:`~r1rl.tasks.sampler.EpochSampler`: without replacement,
  reshuffled every epoch. With both options off, the selector draws exactly its batches.
- **Curriculum** (``curriculum_floor``): a row already seen is kept with probability
  ``max(floor, 4·p·(1 − p))`` when the stream offers it again, so rows the policy always
  (p = 1) or never (p = 0) solves are sampled less, and rows it solves half the time — where a
  group's rewards vary most, GRPO's signal is largest — as often as unseen ones. Unseen rows
  are always kept. (The Bernoulli variance p(1 − p) is the expected squared advantage of a
  binary reward; DAPO and the curriculum of Kimi k1.5 drop or down-weight the same rows.)
- **Replay** (``replay_fraction``): a row whose group's pass rate was below
  ``replay_threshold`` enters a bounded FIFO buffer; ``replay_fraction`` of every batch comes
  from the buffer's oldest rows. A replayed row that passes leaves; one that fails again goes
  back to the end, at most ``replay_max_visits`` times. The buffer holds ``replay_capacity`` rows
  (the oldest fall out).

All state (the stream, pass rates, the buffer, the curriculum's random stream) is in
:meth:`PromptSelector.state_dict`, so a resumed run draws exactly the batches an uninterrupted
one would. Under a launcher every rank holds the same selector and observes the global batch.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from r1rl.tasks.sampler import EpochSampler


@dataclass(frozen=True)
class SelectionSettings:
    """The selector's options, as floats and ints (the config's ``rollout.selection``)."""

    curriculum_floor: float | None = None  # None = no curriculum
    replay_fraction: float = 0.0
    replay_threshold: float = 0.5
    replay_capacity: int = 256
    replay_max_visits: int = 4


def keep_probability(pass_rate: float, floor: float) -> float:
    """The curriculum's chance to keep a seen row: ``max(floor, 4·p·(1 − p))``.

    >>> [keep_probability(p, 0.1) for p in (0.0, 0.25, 0.5, 1.0)]
    [0.1, 0.75, 1.0, 0.1]
    """
    return max(floor, 4.0 * pass_rate * (1.0 - pass_rate))


class PromptSelector:
    """Batches of row indices: the epoch stream, filtered by the curriculum, plus replayed failures.

    >>> s = PromptSelector(8, 2, seed=0, settings=SelectionSettings(replay_fraction=0.5))
    >>> first = s.next()
    >>> s.observe(first, [0.0, 1.0])  # the first row failed: it comes back in the next batch
    >>> s.next()[0] == first[0]
    True
    """

    def __init__(self, n: int, batch_size: int, seed: int, settings: SelectionSettings | None = None) -> None:
        self.settings = settings or SelectionSettings()
        self.batch_size = batch_size
        self.stream = EpochSampler(n, batch_size, seed=seed)
        self.generator = torch.Generator().manual_seed(seed + 7919)  # the curriculum's coin flips
        self.pass_rate: dict[int, float] = {}  # row -> its last group's pass rate
        self.buffer: OrderedDict[int, int] = OrderedDict()  # row -> times replayed, oldest first
        self.replayed: set[int] = set()  # rows of the current batch that came from the buffer
        self.skipped = 0  # rows the curriculum passed over for the current batch
        self.pending: list[int] = []  # rows the stream offered that no batch has taken yet

    @property
    def active(self) -> bool:
        s = self.settings
        return s.curriculum_floor is not None or s.replay_fraction > 0

    def next(self) -> list[int]:
        """The next batch of ``batch_size`` distinct row indices."""
        if not self.active:
            return self.stream.next()
        s = self.settings
        n_replay = min(len(self.buffer), int(round(s.replay_fraction * self.batch_size)))
        batch = list(self.buffer)[:n_replay]
        self.replayed = set(batch)
        self.skipped = 0
        while len(batch) < self.batch_size:
            if not self.pending:
                self.pending = self.stream.next()
            i = self.pending.pop(0)
            if i in batch or not self._keep(i):
                continue
            batch.append(i)
        return batch

    def _keep(self, i: int) -> bool:
        floor = self.settings.curriculum_floor
        if floor is None or i not in self.pass_rate:
            return True
        p = keep_probability(self.pass_rate[i], floor)
        keep = p >= 1.0 or float(torch.rand((), generator=self.generator)) < p
        self.skipped += int(not keep)
        return keep

    def observe(self, indices: Sequence[int], pass_rates: Sequence[float]) -> None:
        """Record each row's group pass rate; move rows in and out of the replay buffer."""
        s = self.settings
        for i, p in zip(indices, pass_rates):
            i, p = int(i), float(p)
            self.pass_rate[i] = p
            if s.replay_fraction <= 0:
                continue
            if p >= s.replay_threshold:
                self.buffer.pop(i, None)
                continue
            visits = self.buffer.pop(i) + int(i in self.replayed) if i in self.buffer else 0
            if visits < s.replay_max_visits:
                self.buffer[i] = visits  # (back) to the end of the queue
            while len(self.buffer) > s.replay_capacity:
                self.buffer.popitem(last=False)

    def metrics(self) -> dict[str, float]:
        """``selection/*``: the buffer, the batch's replayed rows, the curriculum's skips and state."""
        if not self.active:
            return {}
        seen = list(self.pass_rate.values())
        n = max(len(seen), 1)
        return {
            "selection/replay_size": float(len(self.buffer)),
            "selection/replayed": float(len(self.replayed)),
            "selection/skipped": float(self.skipped),
            "selection/seen": float(len(seen)),
            "selection/always_solved": sum(p >= 1.0 for p in seen) / n,
            "selection/never_solved": sum(p <= 0.0 for p in seen) / n,
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            **self.stream.state_dict(),
            "selection": {
                "generator": self.generator.get_state(),
                "pass_rate": dict(self.pass_rate),
                "buffer": list(self.buffer.items()),
                "replayed": sorted(self.replayed),
                "skipped": self.skipped,
                "pending": list(self.pending),
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stream.load_state_dict(state)
        sel = state.get("selection")
        if sel is None:  # a checkpoint of a run without selection options
            return
        self.generator.set_state(sel["generator"])
        self.pass_rate = {int(k): float(v) for k, v in sel["pass_rate"].items()}
        self.buffer = OrderedDict((int(i), int(v)) for i, v in sel["buffer"])
        self.replayed = set(sel["replayed"])
        self.skipped = int(sel["skipped"])
        self.pending = [int(i) for i in sel["pending"]]
