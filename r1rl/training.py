"""Pieces shared by the training stages: seeding, threads, schedules, atomic checkpoints."""

from __future__ import annotations

import math
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

CKPT_PREFIX = "step-"


def setup(seed: int, threads: int | None) -> None:
    """Threads and seeds; under a multi-process launcher each rank gets its own random stream."""
    from r1rl.distributed import rank_seed

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


def save_checkpoint(ckpt_dir: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Write ``state`` to ``checkpoints/step-N`` atomically (temp dir + rename); keep the newest ``keep``."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    final = ckpt_dir / f"{CKPT_PREFIX}{step:08d}"
    tmp = ckpt_dir / f".tmp-{CKPT_PREFIX}{step:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    torch.save(state, tmp / "state.pt")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in list_checkpoints(ckpt_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(ckpt_dir: Path) -> list[Path]:
    if not ckpt_dir.is_dir():
        return []
    return sorted(
        p for p in ckpt_dir.iterdir() if p.name.startswith(CKPT_PREFIX) and (p / "state.pt").exists()
    )


def load_latest_checkpoint(ckpt_dir: Path) -> dict[str, Any] | None:
    ckpts = list_checkpoints(ckpt_dir)
    if not ckpts:
        return None
    return torch.load(ckpts[-1] / "state.pt", weights_only=False)


def grad_norm_finite(params: list[torch.nn.Parameter], max_norm: float) -> tuple[float, bool]:
    """Clip gradients; returns the pre-clip norm and whether it is finite."""
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    return float(norm), bool(torch.isfinite(norm))
