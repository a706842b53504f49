"""The figures a run writes: curves from ``metrics.jsonl`` (``plots/<group>.png``), the expert-load
heatmaps (``plots/expert_load.png``) and the eval stage's bars (``plots/eval_results.png``).

A group's figure is a list of panels. A panel gathers the metrics its pattern matches, one line
each; a series whose every value is 0 (or absent) is left out and a panel left without lines is
not drawn, so flat error counters never crowd out the curves that move. Rate panels (the reward
mean with the tier pass rates, held-out accuracy with the tier pass rates) are the exception: a
reward or an accuracy of 0 is the answer, not a dead counter.

Every figure uses matplotlib's constrained layout, which places the suptitle, panel titles, axis
labels, outside legends and colour bars so that none overlaps another (``tests/report/test_plots.py``
checks their bounding boxes). Figures are drawn on an Agg canvas without pyplot: nothing global is
left open, and importing this module is what imports matplotlib (callers import it only to plot).
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import TABLEAU_COLORS, to_rgb
from matplotlib.figure import Figure, FigureBase
from matplotlib.ticker import MaxNLocator

# Rate panels and the dashboard's bars: the headline (reward mean, accuracy) dark, tier i in colour Ci.
RATE_COLOURS = ["0.15", *[to_rgb(c) for c in TABLEAU_COLORS.values()][1:]]  # tab10's RGB tuples
MAX_LEGEND = 8  # beyond this many lines (layers of a deep model): dark → light, the legend names the two ends


@dataclass(frozen=True)
class Panel:
    """The metrics drawn together in one panel: those whose whole name matches ``pattern``.

    The pattern's named groups label the lines (the first that matched; ``label`` formats it),
    except ``panel``, which names the panel, so one pattern makes one panel per family
    (``moe/load_cv/<layer>``). ``rates`` keeps flat-zero lines and spans at least 0–1.
    """

    pattern: str
    title: str = ""
    rates: bool = False
    label: str = "{}"


@dataclass(frozen=True)
class Group:
    """One PNG: the metrics named by ``prefixes`` (``"x/"`` a prefix, ``"x"`` the name itself), in
    ``panels`` first and then one panel per metric no pattern matched."""

    prefixes: tuple[str, ...]
    panels: tuple[Panel, ...] = field(default=())

    def rank(self, key: str) -> int | None:
        """The index of the first prefix that names ``key`` (the order of its panels), or None."""
        hits = (i for i, p in enumerate(self.prefixes) if key == p or (p.endswith("/") and key.startswith(p)))
        return next(hits, None)


OWN_PANEL = Panel(r"(?P<panel>.+)")  # the last panel of every group: one metric on its own

REWARD_RATES = Panel(
    r"reward/(?P<mean>mean)|reward/tier/(?P<tier>[^/]+)/pass_rate",
    "reward mean and tier pass rates",
    rates=True,
)
TIER_SCORES = Panel(
    r"reward/tier/(?P<line>[^/]+/(?:mean|weight|running_mean|running_std))", "tier scores and weights"
)
TIER_COUNTS = Panel(
    r"reward/tier/(?P<line>[^/]+/(?:errors|timeouts|not_applicable|programs_run|truncated_inputs))",
    "counts per step",
)
EVAL_RATES = Panel(
    r"eval/(?P<line>accuracy|reward/mean)|eval/tier/(?P<tier>[^/]+)/pass_rate",
    "held-out accuracy and tier pass rates",
    rates=True,
)
# Phase timers add up over the steps since the previous row; perf/step_s is the last step's own time.
PHASES = Panel(
    r"perf/(?P<phase>(?!(?:tokens_per|samples_per|step)_s$)\w+)_s", "seconds per phase since the last row"
)
# MoE telemetry: one panel per statistic, one line per layer.
LAYERS = Panel(r"(?P<panel>moe/\w+)/(?P<layer>\d+)", label="layer {}")

# A metric goes to the first group that claims it (``moe/aux_loss`` is drawn with the losses).
GROUPS: dict[str, Group] = {
    "loss": Group(
        ("loss", "val/loss", "value/loss", "moe/aux_loss", "distill/kl", "distill/jsd"),
        (Panel(r"(?P<line>loss|val/loss)", "loss"),),
    ),
    "reward": Group(("reward/",), (REWARD_RATES, TIER_SCORES, TIER_COUNTS)),
    "policy": Group(("kl", "entropy", "policy/", "value/explained_var", "response/")),
    "eval": Group(("eval/",), (EVAL_RATES,)),
    "perf": Group(("perf/", "lr", "grad_norm"), (PHASES,)),
    "moe": Group(("moe/",), (LAYERS,)),
}


class Line(NamedTuple):
    label: str
    steps: list[int]
    values: list[float]
    stderr: list[float] | None  # a band of ± this around the values, when the metric has ``<name>_stderr``


def _series(rows: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for r in rows:
        v = r.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            xs.append(r["step"])
            ys.append(v)
    return xs, ys


def _line(rows: list[dict[str, Any]], key: str, label: str) -> Line:
    xs, ys = _series(rows, key)
    err_xs, err = _series(rows, f"{key}_stderr")
    return Line(label, xs, ys, err if err_xs == xs else None)


def group_panels(
    rows: list[dict[str, Any]], keys: list[str], group: Group
) -> dict[str, tuple[list[Line], Panel]]:
    """The panels of ``group`` that have something to show, by title, each with its lines.

    A key is drawn in the first of the group's panels whose pattern matches it (a stderr whose
    metric is drawn is that line's band); a flat-zero series is dropped unless the panel is ``rates``.
    """
    panels = (*group.panels, OWN_PANEL)
    matches = []
    for key in keys:
        if not (key.endswith("_stderr") and key.removesuffix("_stderr") in keys):
            matches.append(
                next((i, key, m) for i, p in enumerate(panels) if (m := re.fullmatch(p.pattern, key)))
            )
    out: dict[str, tuple[list[Line], Panel]] = {}
    for i, key, match in sorted(matches, key=lambda m: m[0]):  # stable: within a panel, the order of keys
        panel, names = panels[i], match.groupdict()
        title = names.pop("panel", None) or panel.title
        line = _line(rows, key, panel.label.format(next((v for v in names.values() if v), key)))
        if line.values and (panel.rates or any(v != 0 for v in line.values)):
            out.setdefault(title, ([], panel))[0].append(line)
    return out


def new_figure(width: float, height: float) -> Figure:
    """A figure on an Agg canvas with constrained layout (titles, labels and legends never overlap)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def style_axes(ax: Axes, title: str, xlabel: str, ylabel: str = "", integer_y: bool = False) -> None:
    """The look every panel shares: 9 pt title, 8 pt labels, 7 pt ticks, whole-number step (expert) ticks."""
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if integer_y:
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.tick_params(labelsize=7)


def colour_bar(
    fig: FigureBase, image: ScalarMappable, axes: Axes | list[Axes], label: str, shrink: float = 1.0
) -> None:
    bar = fig.colorbar(image, ax=axes, shrink=shrink)
    bar.set_label(label, fontsize=8)
    bar.ax.tick_params(labelsize=7)


def draw_panel(ax: Axes, title: str, lines: list[Line], rates: bool = False) -> None:
    """Lines over steps in one panel, with a legend outside it on the right (it never hides a curve)."""
    if rates:
        ax.set_prop_cycle(color=RATE_COLOURS)
    elif len(lines) > MAX_LEGEND:
        ax.set_prop_cycle(color=[colormaps["viridis"](i / (len(lines) - 1)) for i in range(len(lines))])
    drawn = []
    for line in lines:
        drawn += ax.plot(line.steps, line.values, marker="." if len(line.steps) < 30 else None, lw=1.2,
                         label=line.label)  # fmt: skip
        if line.stderr is not None:
            low = [v - e for v, e in zip(line.values, line.stderr)]
            high = [v + e for v, e in zip(line.values, line.stderr)]
            ax.fill_between(line.steps, low, high, color=drawn[-1].get_color(), alpha=0.15, lw=0)
    style_axes(ax, title, "step")
    ax.grid(alpha=0.3)
    if rates:
        bottom, top = ax.get_ylim()
        ax.set_ylim(min(bottom, -0.03), max(top, 1.03))
    if len(lines) > 1:
        handles = drawn if len(lines) <= MAX_LEGEND else [drawn[0], drawn[-1]]
        ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def metric_figures(rows: list[dict[str, Any]], title: str = "") -> dict[str, Figure]:
    """One figure per group of :data:`GROUPS` with a panel to draw, by group name."""
    keys = list(dict.fromkeys(k for r in rows for k in r if k not in ("step", "stage")))  # first-logged order
    owner = {k: next((name for name, g in GROUPS.items() if g.rank(k) is not None), None) for k in keys}
    figures = {}
    for name, group in GROUPS.items():
        # owner[k] == name: the group ranks k (not None)
        mine = sorted((k for k in keys if owner[k] == name), key=lambda k: group.rank(k) or 0)
        panels = group_panels(rows, mine, group)
        if not panels:
            continue
        cols = min(3, len(panels))
        nrows = -(-len(panels) // cols)
        legend = any(len(lines) > 1 for lines, _ in panels.values())
        fig = new_figure((4.2 + 1.0 * legend) * cols, 0.4 + 2.8 * nrows)
        axes = list(fig.subplots(nrows, cols, squeeze=False).flat)
        for ax, (panel_title, (lines, panel)) in zip(axes, panels.items()):
            draw_panel(ax, panel_title, lines, panel.rates)
        for ax in axes[len(panels) :]:
            ax.remove()
        fig.suptitle(f"{title} {name}".strip(), fontsize=10)
        figures[name] = fig
    return figures


# The RL run at a glance (``learning.png``): what it optimises beside what it is for, and why it moves.
LEARNING_PANELS: tuple[tuple[str, str, bool], ...] = (
    (r"reward/tier/(?P<line>[^/]+)/pass_rate|eval/(?P<eval>accuracy)",
     "sampled pass rate (train) and greedy accuracy (held-out)", True),
    (r"(?P<line>entropy|kl/per_token)", "entropy and KL to the reference, per token", False),
    (r"rollout/(?P<line>zero_variance)|selection/(?P<sel>always_solved|never_solved)",
     "groups without signal; prompts always / never solved", True),
    (r"(?P<line>policy/update_norm|grad_norm|advantages/abs_mean)", "update size and advantage scale", False),
    (r"selection/(?P<line>replay_size|replayed|skipped)", "curriculum and replay", False),
)  # fmt: skip


def learning_figure(rows: list[dict[str, Any]], title: str = "") -> Figure | None:
    """The RL panels of :data:`LEARNING_PANELS` that have data (held-out accuracy drawn as ``eval
    (greedy)``), or None when the rows have no tier pass rates (not an RL run)."""
    keys = list(dict.fromkeys(k for r in rows for k in r if k not in ("step", "stage")))
    panels = []
    for pattern, panel_title, rates in LEARNING_PANELS:
        lines = []
        for key in keys:
            m = re.fullmatch(pattern, key)
            if m:
                name = next(v for v in m.groupdict().values() if v)
                label = "eval (greedy)" if name == "accuracy" else name
                line = _line(rows, key, label)
                if line.values:
                    lines.append(line)
        if lines:
            panels.append((panel_title, lines, rates))
    if not panels or not any(k.startswith("reward/tier/") for k in keys):
        return None
    cols = min(3, len(panels))
    fig = new_figure(5.6 * cols, 0.4 + 2.8 * -(-len(panels) // cols))
    axes = list(fig.subplots(-(-len(panels) // cols), cols, squeeze=False).flat)
    for ax, (panel_title, lines, rates) in zip(axes, panels):
        draw_panel(ax, panel_title, lines, rates)
    for ax in axes[len(panels) :]:
        ax.remove()
    fig.suptitle(f"{title} learning".strip(), fontsize=10)
    return fig


def plot_metrics(rows: list[dict[str, Any]], out_dir: Path, title: str = "") -> list[Path]:
    """Write ``<group>.png`` for each group with something to show, and ``learning.png`` for an RL
    run; returns the files written."""
    written = [save(fig, out_dir / f"{name}.png") for name, fig in metric_figures(rows, title).items()]
    learning = learning_figure(rows, title)
    if learning is not None:
        written.append(save(learning, out_dir / "learning.png"))
    return written


def expert_load_figure(rows: list[dict[str, Any]], title: str = "") -> Figure:
    """One heatmap per MoE layer: each expert's share of routed tokens (rows) over steps (columns).

    ``rows``: ``{"step": int, "tokens_per_expert": [[...E] * L]}``. A balanced router is an even
    colour at 1/E; a dead expert is a dark row.
    """
    import numpy as np

    steps = [r["step"] for r in rows]
    load = np.array([r["tokens_per_expert"] for r in rows], dtype=float)  # (steps, L, E)
    share = load / np.clip(load.sum(-1, keepdims=True), 1e-9, None)
    n_layers, n_experts = share.shape[1], share.shape[2]
    nrows = -(-n_layers // 4)
    cols = -(-n_layers // nrows)  # at most four a row, rows as full as they can be
    fig = new_figure(1.2 + 3.2 * cols, 0.5 + 2.4 * nrows)
    axes = list(fig.subplots(nrows, cols, squeeze=False).flat)
    vmax = max(2.0 / n_experts, float(share.max()))
    for layer, ax in enumerate(axes):
        if layer >= n_layers:
            ax.remove()
            continue
        im = ax.imshow(
            share[:, layer].T, aspect="auto", cmap="viridis", vmin=0, vmax=vmax, interpolation="nearest",
            extent=(steps[0] - 0.5, steps[-1] + 0.5, n_experts - 0.5, -0.5),
        )  # fmt: skip
        style_axes(ax, f"layer {layer}", "step", "expert", integer_y=True)
    colour_bar(fig, im, axes[:n_layers], "share of routed tokens", shrink=0.8)
    fig.suptitle(f"{title} expert load (uniform = {1 / n_experts:.3f})".strip(), fontsize=10)
    return fig


def plot_expert_load(rows: list[dict[str, Any]], path: Path, title: str = "") -> Path:
    """Write :func:`expert_load_figure` to ``path``."""
    return save(expert_load_figure(rows, title), path)


def _headline(name: str, value: Any) -> bool:
    """A task's headline metrics: not ``n``, stderrs or slash-named diagnostics (tier pass rates)."""
    numeric = isinstance(value, (int, float))
    return numeric and name != "n" and not name.endswith("_stderr") and "/" not in name


def eval_results_figure(results: dict[str, Any]) -> Figure:
    """One bar per (task, metric) with its standard error; the model's name (wrapped) as the title."""
    bars = [
        (f"{task}\n{name}", value, metrics.get(f"{name}_stderr"))
        for task, metrics in results["tasks"].items()
        for name, value in metrics.items()
        if _headline(name, value)
    ]
    width = max(4.0, 1.1 * len(bars))
    fig = new_figure(width, 3.4)
    ax = fig.subplots()
    xs = range(len(bars))
    errs = [e if isinstance(e, (int, float)) else 0.0 for _, _, e in bars]
    drawn = ax.bar(xs, [v for _, v, _ in bars], yerr=errs, capsize=3, color="#4c72b0")
    ax.bar_label(drawn, fmt="%.3f", fontsize=7, padding=2)  # above the error bar; a 0 shows as 0.000
    ax.margins(y=0.12)
    ax.set_xticks(list(xs), [b[0] for b in bars], fontsize=7)
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(textwrap.fill(str(results.get("model", "")), int(12 * width)), fontsize=8)
    return fig


def plot_eval_results(results: dict[str, Any], path: Path) -> Path:
    """The eval stage's ``plots/eval_results.png``: :func:`eval_results_figure` written to ``path``."""
    return save(eval_results_figure(results), path)
