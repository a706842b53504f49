"""The pipeline's one picture, ``<output_dir>/dashboard.png``, three panels side by side:

- held-out accuracy and tier pass rates of every evaluated stage (grouped bars, from the summary);
- the PPO stage's reward curve: reward mean and tier pass rates over steps (its ``metrics.jsonl``);
- the PPO stage's expert load at its last logged step, layers × experts, each layer's token counts
  over their mean (1: the share a balanced router gives; 0: a dead expert). From
  ``ppo/expert_load.jsonl``; a dense model logs none and the panel is left out.

Tier ``i`` has one colour in the bars and the curve; accuracy and the reward mean are dark.
Importing this module imports matplotlib: the pipeline imports it only to draw.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from r1rl.report import plots
from r1rl.rundir import RunDir, read_jsonl

ANNOTATE_CELLS = 64  # heatmaps up to this many cells print each cell's value


def _stage_bars(ax: Axes, stages: dict[str, Any]) -> None:
    """Grouped bars: one group per stage, one bar per headline metric (accuracy, then each tier)."""
    first = next(iter(stages.values()))["eval"]
    keys = ["accuracy"] + [k for k in first if k.startswith("tier/") and k.endswith("/pass_rate")]
    width = 0.8 / len(keys)
    for j, (key, colour) in enumerate(zip(keys, plots.RATE_COLOURS)):
        xs = [i + (j - (len(keys) - 1) / 2) * width for i in range(len(stages))]
        values = [s["eval"].get(key, float("nan")) for s in stages.values()]
        label = key.removeprefix("tier/").removesuffix("/pass_rate")
        bars = ax.bar(xs, values, width, color=colour, label=label)
        ax.bar_label(bars, fmt="%.2f", fontsize=6, rotation=90, padding=2)  # a 0 is a number, not a gap
    plots.style_axes(ax, "held-out accuracy and tier pass rates", "stage")
    ax.set_xticks(range(len(stages)), list(stages), fontsize=8)
    ax.set_ylim(0, 1.25)  # room for the labels above bars at 1
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def _load_heatmap(ax: Axes, row: dict[str, Any]) -> None:
    """Layers × experts at one step, each layer's counts over their mean, on a scale centred at 1."""
    load = np.asarray(row["tokens_per_expert"], dtype=float)  # (L, E)
    ratio = load / np.clip(load.mean(axis=1, keepdims=True), 1e-9, None)  # (L, E)
    norm = TwoSlopeNorm(vcenter=1.0, vmin=0.0, vmax=max(2.0, float(ratio.max())))
    im = ax.imshow(ratio, cmap="RdBu_r", norm=norm, aspect="auto", interpolation="nearest")
    if ratio.size <= ANNOTATE_CELLS:
        for (layer, expert), value in np.ndenumerate(ratio):
            colour = "white" if abs(norm(value) - 0.5) > 0.3 else "black"
            ax.text(expert, layer, f"{value:.2f}", ha="center", va="center", fontsize=7, color=colour)
    plots.style_axes(ax, f"PPO expert load at step {row['step']}", "expert", "layer", integer_y=True)
    plots.colour_bar(ax.figure, im, ax, "tokens / layer mean")


def dashboard_figure(
    summary: dict[str, Any], ppo_rows: list[dict[str, Any]], load_row: dict[str, Any] | None, title: str = ""
) -> Figure:
    """The dashboard from a pipeline summary, the PPO stage's metric rows and its last expert-load row.

    Without reward metrics (no PPO rows) or without a load row (a dense model), that panel is left out.
    """
    keys = list(dict.fromkeys(k for r in ppo_rows for k in r if k.startswith("reward/")))
    reward = plots.group_panels(ppo_rows, keys, plots.GROUPS["reward"]).get(plots.REWARD_RATES.title)
    n = 1 + (reward is not None) + (load_row is not None)
    fig = plots.new_figure(5.4 * n, 3.8)
    axes = list(np.atleast_1d(fig.subplots(1, n)))
    _stage_bars(axes.pop(0), summary["stages"])
    if reward is not None:
        plots.draw_panel(axes.pop(0), "PPO reward mean and tier pass rates", reward[0], rates=True)
    if load_row is not None:
        _load_heatmap(axes.pop(0), load_row)
    fig.suptitle(title, fontsize=10)
    return fig


def write_dashboard(out_dir: Path, summary: dict[str, Any]) -> Path:
    """Draw ``<out_dir>/dashboard.png`` from ``summary`` and the PPO stage's run directory."""
    ppo = summary["stages"].get("ppo")
    run = RunDir(ppo["run_dir"]) if ppo else None
    rows = run.read_metrics() if run else []
    loads = read_jsonl(run.expert_load) if run else []
    title = f"{summary.get('task', '')} pipeline: {out_dir}"
    return plots.save(
        dashboard_figure(summary, rows, loads[-1] if loads else None, title), out_dir / "dashboard.png"
    )
