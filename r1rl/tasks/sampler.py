"""Drawing a task's training rows: without replacement, reshuffled every epoch, resumable exactly."""

from __future__ import annotations

from typing import Any

import torch

from r1rl.errors import UserError


class EpochSampler:
    """Batches of record indices drawn without replacement, reshuffled every epoch.

    The permutation of each epoch comes from one seeded ``torch.Generator`` whose state is in
    :meth:`state_dict`, so a resumed run draws exactly the batches an uninterrupted one would. An
    epoch's last ``n % batch_size`` indices are left out (no record repeats within a batch).

    >>> s = EpochSampler(5, 2, seed=0)
    >>> a, b, c = s.next(), s.next(), s.next()
    >>> sorted(a + b) == sorted(set(a + b)) and s.epoch == 1
    True
    """

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        if n < batch_size:
            raise UserError(f"the task has {n} training rows, fewer than one batch of {batch_size}")
        self.n, self.batch_size = n, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch, self.position = 0, 0
        self._perm = torch.randperm(n, generator=self.generator).tolist()

    def next(self) -> list[int]:
        if self.position + self.batch_size > self.n:
            self.epoch, self.position = self.epoch + 1, 0
            self._perm = torch.randperm(self.n, generator=self.generator).tolist()
        out = self._perm[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position, "perm": list(self._perm),
                "generator": self.generator.get_state(), "n": self.n}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["n"] != self.n:
            raise UserError(
                f"the checkpoint was written for {state['n']} training rows, the task now has {self.n}; "
                "resume with the same data or start afresh"
            )
        self.epoch, self.position, self._perm = state["epoch"], state["position"], list(state["perm"])
        self.generator.set_state(state["generator"])
