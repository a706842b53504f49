"""Pieces shared by the training loops: seeding, threads, schedules, gradient clipping, the sync check."""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from r1rl.parallel.distributed import rank_seed


def setup(seed: int, threads: int | None) -> None:
    """Threads and seeds; under a multi-process launcher each rank gets its own random stream."""
    if threads:
        torch.set_num_threads(threads)
    seed_everything(rank_seed(seed))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def cosine_schedule(
    optimizer: torch.optim.Optimizer, warmup: int, total: int, min_ratio: float = 0.1
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up then cosine decay to ``min_ratio`` of the peak learning rate."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def grad_norm_finite(params: list[torch.nn.Parameter], max_norm: float) -> tuple[float, bool]:
    """Clip gradients; returns the pre-clip norm and whether it is finite."""
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    if hasattr(norm, "full_tensor"):  # FSDP2's sharded gradients: a norm over every rank's shards
        norm = norm.full_tensor()
    return float(norm), bool(torch.isfinite(norm))


def check_in_sync(par: Any, tensors: Iterable[torch.Tensor], what: str) -> None:
    """Raise if any rank's ``tensors`` differ from the main process's (a hash of their bytes).

    A collective under a launcher; nothing to check alone.
    """
    if not par.enabled or par.sharded:  # sharded weights have one copy: nothing to compare
        return
    digest = hashlib.blake2b(digest_size=16)
    for t in tensors:
        digest.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    hashes = par.gather_objects(digest.hexdigest())
    if len(set(hashes)) > 1:
        raise RuntimeError(f"{what} differ across ranks after training (per-rank hashes {hashes})")
