"""Every figure r1rl writes, drawn from hand-built metric rows with the key names the stages log.

Two checks run on every figure: no two of its titles, axis labels, tick labels and legends
overlap (their rendered bounding boxes), and every one lies inside the figure. The metric figures
also draw no panel whose every value is 0, except the rate panels, where 0 is the answer.
"""

import itertools
import json
import math

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

from r1rl.report.dashboard import dashboard_figure, write_dashboard
from r1rl.report.plots import eval_results_figure, expert_load_figure, metric_figures

TIERS = ("syntax", "logic", "task")
RATE_PANELS = {"reward mean and tier pass rates", "held-out accuracy and tier pass rates"}


def _tier_rows(step: int, errors: bool) -> dict[str, float]:
    """``HierarchyResult.metrics()`` of one step: tier i passes at a rate rising with the step."""
    out = {"reward/mean": 0.05 * step}
    for i, tier in enumerate(TIERS):
        t = f"reward/tier/{tier}"
        out |= {f"{t}/pass_rate": min(1.0, 0.08 * step / (i + 1)), f"{t}/mean": 0.1 * step / (i + 1)}
        out |= {f"{t}/errors": 0.0, f"{t}/timeouts": 0.0, f"{t}/not_applicable": 0.0, f"{t}/weight": 1.0}
    if errors:  # a code tier that ran programs, two of which raised at step 3
        out |= {"reward/tier/task/programs_run": 8.0, "reward/tier/task/errors": 2.0 if step == 3 else 0.0}
    return out


def _moe_rows(step: int, layers: int = 2) -> dict[str, float]:
    """``moe.load_metrics`` of one step, and the aux loss: no expert died."""
    out = {"moe/aux_loss": 2.0 - 0.01 * step, "moe/routing_agreement": 1.0}
    for i in range(layers):
        out |= {f"moe/load_cv/{i}": 0.5 + 0.1 * i - 0.01 * step, f"moe/max_over_mean/{i}": 1.7 + 0.1 * i}
        out |= {f"moe/dead_experts/{i}": 0.0, f"moe/router_entropy/{i}": 1.38 + 0.001 * step}
    return out


def ppo_rows(steps: int = 12, errors: bool = True, layers: int = 2) -> list[dict]:
    """What ``train_ppo`` logs: rewards, policy and value statistics, MoE telemetry, timers, eval."""
    rows = []
    for step in range(1, steps + 1):
        row = {"step": step, "stage": "ppo", **_tier_rows(step, errors), "kl": 0.001 * step}
        row |= {"response/length": 20.0 - step / 2, "response/truncated": 0.5, "response/empty": 0.0}
        row |= {"policy/clipfrac": 0.0, "policy/approx_kl": 0.0, "policy/ratio_var": 0.0, "loss": 0.1}
        row |= {"entropy": 5.2, "value/loss": 1.0 / step, "value/explained_var": None, "grad_norm": 0.3}
        row |= {**_moe_rows(step, layers), "lr": 1e-3, "perf/step_s": 0.5, "perf/tokens_per_s": 440.0}
        row |= {"perf/generate_s": 0.28, "perf/update_s": 0.15, "perf/samples_per_s": 16.0}
        if step % 4 == 0:
            row |= {"eval/accuracy": 0.05 * step, "eval/accuracy_stderr": 0.05, "eval/truncated": 0.0}
            row |= {f"eval/tier/{t}/pass_rate": 0.06 * step for t in TIERS}
        rows.append(row)
    return rows


def pretrain_rows(steps: int = 20) -> list[dict]:
    """What the supervised loop logs, and the held-out loss at the end."""
    rows = [
        {"step": s, "stage": "pretrain", "loss": 4.0 / s, "grad_norm": 1.0, "perf/step_s": 0.03,
         "perf/tokens_per_s": 16000.0, "perf/train_s": 0.15, "lr": 3e-3 * (1 - s / steps), **_moe_rows(s)}
        for s in range(5, steps + 1, 5)
    ]  # fmt: skip
    rows[-1]["val/loss"] = 0.3
    return rows


def load_rows(steps: int = 12, layers: int = 2, experts: int = 4) -> list[dict]:
    rng = np.random.default_rng(0)
    return [
        {"step": s, "tokens_per_expert": rng.integers(0, 200, (layers, experts)).tolist()}
        for s in range(1, steps + 1)
    ]


STAGES = {
    stage: {"run_dir": f"runs/x/{stage}", "eval": {"accuracy": acc, "accuracy_stderr": 0.1, "n": 16,
            **{f"tier/{t}/pass_rate": min(1.0, acc + 0.1 * (3 - i)) for i, t in enumerate(TIERS)}}}
    for stage, acc in (("base", 0.0), ("sft", 0.25), ("ppo", 0.5))
}  # fmt: skip
SUMMARY = {"task": "arithmetic", "stages": STAGES}
EVAL_RESULTS = {
    "model": "/a/rather/long/path/to/a/run/directory/of/some/pipeline/ppo/final",
    "tasks": {"arithmetic": STAGES["ppo"]["eval"], "gsm8k": {"exact_match": 0.1, "exact_match_stderr": 0.02}},
}


def _figures() -> dict[str, Figure]:
    figures = {f"ppo {k}": f for k, f in metric_figures(ppo_rows(), "ppo").items()}
    figures["pretrain loss"] = metric_figures(pretrain_rows(), "pretrain")["loss"]
    figures["12 layers moe"] = metric_figures(ppo_rows(6, layers=12), "ppo")["moe"]
    figures["expert_load"] = expert_load_figure(load_rows(), "ppo")
    figures["expert_load 5 layers"] = expert_load_figure(load_rows(layers=5, experts=16), "ppo")
    figures["eval_results"] = eval_results_figure(EVAL_RESULTS)
    figures["dashboard"] = dashboard_figure(
        SUMMARY, ppo_rows(), load_rows()[-1], "arithmetic pipeline: runs/x"
    )
    return figures


FIGURES = _figures()


def _boxes(fig: Figure) -> list[tuple[str, object]]:
    """(name, window extent) of every title, axis label, tick label and legend the figure shows."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    texts = [("suptitle", t) for t in fig.texts]
    for i, ax in enumerate(fig.axes):
        texts += [(f"axes {i} title", ax.title), (f"axes {i} xlabel", ax.xaxis.label)]
        texts += [(f"axes {i} ylabel", ax.yaxis.label)]
        (x0, x1), (y0, y1) = sorted(ax.get_xlim()), sorted(ax.get_ylim())  # ticks outside them are not drawn
        texts += [(f"axes {i} x tick", t) for t in ax.get_xticklabels() if x0 <= t.get_position()[0] <= x1]
        texts += [(f"axes {i} y tick", t) for t in ax.get_yticklabels() if y0 <= t.get_position()[1] <= y1]
        if ax.get_legend() is not None:
            texts.append((f"axes {i} legend", ax.get_legend()))
    shown = [(n, t) for n, t in texts if t.get_visible() and (not hasattr(t, "get_text") or t.get_text())]
    return [
        (f"{n} {getattr(t, 'get_text', lambda: '')()!r}", t.get_window_extent(renderer)) for n, t in shown
    ]


@pytest.mark.parametrize("name", list(FIGURES))
def test_no_two_titles_labels_or_legends_overlap(name):
    fig = FIGURES[name]
    boxes = _boxes(fig)
    assert len(boxes) > 5
    for label, box in boxes:
        assert fig.bbox.x0 - 1 <= box.x0 and box.x1 <= fig.bbox.x1 + 1, f"{label} leaves the figure"
        assert fig.bbox.y0 - 1 <= box.y0 and box.y1 <= fig.bbox.y1 + 1, f"{label} leaves the figure"
    for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2):
        overlap_w = min(box_a.x1, box_b.x1) - max(box_a.x0, box_b.x0)
        overlap_h = min(box_a.y1, box_b.y1) - max(box_a.y0, box_b.y0)
        assert overlap_w <= 0.5 or overlap_h <= 0.5, f"{name}: {a} overlaps {b}"
    legends = [(label, box) for label, box in boxes if " legend " in label]
    for (label, box), ax in itertools.product(legends, fig.axes):  # no legend over any panel's data
        assert not box.overlaps(ax.get_window_extent()), f"{name}: {label} covers {ax.get_title()!r}"


def _panels(fig: Figure) -> dict[str, dict[str, list[float]]]:
    """Panel title → {line label: y values} (a panel with one line labels it by its title)."""
    out = {}
    for ax in fig.axes:
        lines = ax.get_lines()
        out[ax.get_title()] = {
            (ln.get_label() if len(lines) > 1 else ax.get_title()): list(ln.get_ydata()) for ln in lines
        }
    return out


def test_reward_figure_overlays_the_pass_rates_and_draws_only_nonzero_counts():
    panels = _panels(FIGURES["ppo reward"])
    assert list(panels) == ["reward mean and tier pass rates", "tier scores and weights", "counts per step"]
    rates = panels["reward mean and tier pass rates"]
    assert list(rates) == ["mean", *TIERS]
    assert rates["logic"] == [r["reward/tier/logic/pass_rate"] for r in ppo_rows()]
    assert list(panels["counts per step"]) == ["task/errors", "task/programs_run"]  # not the zero ones
    assert "syntax/weight" in panels["tier scores and weights"]


def test_all_zero_counts_leave_one_reward_panel_and_zero_rates_are_still_drawn():
    rows = [{**r, **{k: 0.0 for k in r if k.startswith("reward/")}} for r in ppo_rows(errors=False)]
    panels = _panels(metric_figures(rows)["reward"])
    assert list(panels) == ["reward mean and tier pass rates"]
    assert list(panels["reward mean and tier pass rates"]) == ["mean", *TIERS]


def test_no_flat_zero_line_outside_the_rate_panels():
    panels = {
        t: lines for n, fig in FIGURES.items() if n.startswith("ppo ") for t, lines in _panels(fig).items()
    }
    for title, lines in panels.items():
        for label, ys in lines.items():
            assert title in RATE_PANELS or any(v != 0 for v in ys), (title, label)
    zero = {"policy/clipfrac", "policy/ratio_var", "response/empty", "value/explained_var", "eval/truncated"}
    assert not zero & set(panels) and "kl" in panels  # all 0 (or None) in ppo_rows; kl is not
    assert "moe/dead_experts" not in panels


def test_families_share_a_panel_and_stderr_is_a_band():
    moe = _panels(FIGURES["ppo moe"])
    assert list(moe["moe/load_cv"]) == ["layer 0", "layer 1"]
    assert "moe/aux_loss" in _panels(FIGURES["ppo loss"]) and "moe/aux_loss" not in moe  # drawn once
    held_out = _panels(FIGURES["ppo eval"])
    assert list(held_out) == ["held-out accuracy and tier pass rates"]  # no eval/accuracy_stderr panel
    assert list(held_out["held-out accuracy and tier pass rates"]) == ["accuracy", *TIERS]
    (band,) = FIGURES["ppo eval"].axes[0].collections
    assert band.get_paths()[0].get_extents().height == pytest.approx(0.6 + 2 * 0.05 - 0.2)  # steps 4 … 12
    assert list(_panels(FIGURES["ppo perf"])["seconds per phase since the last row"]) == [
        "generate",
        "update",
    ]
    assert _panels(FIGURES["pretrain loss"])["loss"]["val/loss"] == [0.3]
    assert len(_panels(FIGURES["12 layers moe"])["moe/load_cv"]) == 12


def test_dashboard_panels_bars_and_heatmap_normalised_to_the_layer_mean():
    load = {"step": 9, "tokens_per_expert": [[1, 3, 0, 4], [2, 2, 2, 2]]}
    fig = dashboard_figure(SUMMARY, ppo_rows(), load)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:3] == ["held-out accuracy and tier pass rates", "PPO reward mean and tier pass rates",
                          "PPO expert load at step 9"]  # fmt: skip
    bars = fig.axes[0]
    heights = [p.get_height() for p in bars.patches]  # metric by metric, stage by stage
    keys = ["accuracy", *(f"tier/{t}/pass_rate" for t in TIERS)]
    assert heights == [STAGES[s]["eval"][k] for k in keys for s in ("base", "sft", "ppo")]
    assert [t.get_text() for t in bars.get_xticklabels()] == ["base", "sft", "ppo"]
    (image,) = [c for c in fig.axes[2].get_children() if isinstance(c, AxesImage)]
    assert np.asarray(image.get_array()).tolist() == [[0.5, 1.5, 0.0, 2.0], [1.0, 1.0, 1.0, 1.0]]


def test_dashboard_without_expert_load_or_ppo_metrics_leaves_those_panels_out():
    assert [ax.get_title() for ax in dashboard_figure(SUMMARY, ppo_rows(), None).axes] == [
        "held-out accuracy and tier pass rates",
        "PPO reward mean and tier pass rates",
    ]
    assert len(dashboard_figure(SUMMARY, [], None).axes) == 1


def test_write_dashboard_reads_the_ppo_run_directory(tmp_path):
    run = tmp_path / "ppo"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ppo_rows(4)))
    (run / "expert_load.jsonl").write_text("".join(json.dumps(r) + "\n" for r in load_rows(4)))
    summary = {"task": "arithmetic", "stages": {**STAGES, "ppo": {**STAGES["ppo"], "run_dir": str(run)}}}
    path = write_dashboard(tmp_path, summary)
    assert path == tmp_path / "dashboard.png" and path.stat().st_size > 10_000
    assert not math.isnan(summary["stages"]["ppo"]["eval"]["accuracy"])
