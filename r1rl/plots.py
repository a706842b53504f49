"""Curves rendered from ``metrics.jsonl`` into ``plots/*.png``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# Each PNG gathers the metrics whose name starts with one of its prefixes.
GROUPS: dict[str, tuple[str, ...]] = {
    "loss": ("loss", "value/loss", "moe/aux_loss"),
    "reward": ("reward/",),
    "policy": ("kl", "entropy", "policy/", "value/explained_var"),
    "eval": ("eval/",),
    "perf": ("perf/", "lr", "grad_norm"),
}


def _series(rows: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for r in rows:
        v = r.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            xs.append(r["step"])
            ys.append(v)
    return xs, ys


def plot_metrics(rows: list[dict[str, Any]], out_dir: Path, title: str = "") -> list[Path]:
    """Write one PNG per non-empty metric group; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    keys = sorted({k for r in rows for k in r if k not in ("step", "stage")})
    written = []
    for group, prefixes in GROUPS.items():
        names = [k for k in keys if any(k == p or (p.endswith("/") and k.startswith(p)) for p in prefixes)]
        names = [k for k in names if len(_series(rows, k)[0]) > 0]
        if not names:
            continue
        n = len(names)
        cols = min(3, n)
        nrows = (n + cols - 1) // cols
        fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.0 * nrows), squeeze=False)
        for ax, name in zip(axes.flat, names):
            xs, ys = _series(rows, name)
            ax.plot(xs, ys, marker="." if len(xs) < 30 else None, lw=1.2)
            ax.set_title(name, fontsize=9)
            ax.set_xlabel("step", fontsize=8)
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[n:]:
            ax.axis("off")
        fig.suptitle(f"{title} {group}".strip(), fontsize=10)
        fig.tight_layout()
        path = out_dir / f"{group}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written
