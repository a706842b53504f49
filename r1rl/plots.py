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
    "moe": ("moe/",),
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


def plot_expert_load(rows: list[dict[str, Any]], path: Path, title: str = "") -> Path:
    """One heatmap per MoE layer: each expert's share of routed tokens (rows) over steps (columns).

    ``rows``: ``{"step": int, "tokens_per_expert": [[...E] * L]}``. A balanced router is an even
    colour at 1/E; a dead expert is a dark row.
    """
    import numpy as np

    steps = [r["step"] for r in rows]
    load = np.array([r["tokens_per_expert"] for r in rows], dtype=float)  # (steps, L, E)
    share = load / np.clip(load.sum(-1, keepdims=True), 1e-9, None)
    n_layers, n_experts = share.shape[1], share.shape[2]
    cols = min(4, n_layers)
    nrows = (n_layers + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(3.6 * cols, 2.6 * nrows), squeeze=False)
    vmax = max(2.0 / n_experts, float(share.max()))
    for layer, ax in enumerate(axes.flat):
        if layer >= n_layers:
            ax.axis("off")
            continue
        im = ax.imshow(
            share[:, layer].T, aspect="auto", cmap="viridis", vmin=0, vmax=vmax, interpolation="nearest",
            extent=(steps[0] - 0.5, steps[-1] + 0.5, n_experts - 0.5, -0.5),
        )  # fmt: skip
        ax.set_title(f"layer {layer}", fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("expert", fontsize=8)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="share of routed tokens")
    fig.suptitle(f"{title} expert load (uniform = {1 / n_experts:.3f})".strip(), fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _headline(name: str, value: Any) -> bool:
    """A task's headline metrics: not ``n``, stderrs or slash-named diagnostics (tier pass rates)."""
    numeric = isinstance(value, (int, float))
    return numeric and name != "n" and not name.endswith("_stderr") and "/" not in name


def plot_eval_results(results: dict[str, Any], path: Path) -> Path:
    """One bar per (task, metric) with its standard error: the eval stage's ``plots/eval_results.png``."""
    bars = [
        (f"{task}\n{name}", value, metrics.get(f"{name}_stderr"))
        for task, metrics in results["tasks"].items()
        for name, value in metrics.items()
        if _headline(name, value)
    ]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(bars)), 3.4))
    xs = range(len(bars))
    errs = [e if isinstance(e, (int, float)) else 0.0 for _, _, e in bars]
    ax.bar(xs, [v for _, v, _ in bars], yerr=errs, capsize=3, color="#4c72b0")
    ax.set_xticks(list(xs), [b[0] for b in bars], fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(str(results.get("model", "")), fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
