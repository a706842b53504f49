"""What a sweep leaves beside its trials: ``results.md`` (one row per trial) and Optuna's plots.

``plots/optimization_history.png`` (every trial's objective and the best so far) always;
``plots/param_importances.png`` (each searched key's importance, by Optuna's default evaluator) with
two or more keys and two or more finished trials; ``plots/slice.png`` (objective against each key's value).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from r1rl.rundir import atomic_write_text
from r1rl.tune.space import SweepConfig

if TYPE_CHECKING:
    import optuna


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "—" if value is None else str(value)


def results_table(study: optuna.Study, cfg: SweepConfig) -> str:
    """A markdown table: trial, its run directory, the searched values, the objective, the state.
    A pruned trial shows its last reported eval in brackets."""
    keys = list(cfg.space)
    metric = cfg.objective.metric
    head = ["trial", *(f"`{k}`" for k in keys), metric, "state"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t in study.get_trials(deepcopy=False):
        value = _shown(t.value)
        if t.value is None and t.intermediate_values:
            step = max(t.intermediate_values)
            value = f"({_shown(t.intermediate_values[step])} at step {step})"
        state = t.state.name.lower()
        if "failed_trial" in t.system_attrs:  # Optuna's mark on a retry of a trial whose process died
            state += f" (retry of {t.system_attrs['failed_trial']:03d})"
        cells = [f"{t.number:03d}", *(_shown(t.params.get(k)) for k in keys), value, state]
        lines.append("| " + " | ".join(cells) + " |")
    best = _best(study)
    footer = ""
    if best is not None:
        values = ", ".join(f"{k}={_shown(v)}" for k, v in best.params.items())
        footer = f"\nbest: trial {best.number:03d} ({metric} = {_shown(best.value)}): {values}\n"
    return "\n".join(lines) + "\n" + footer


def _best(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:  # no finished trial yet
        return None


def write_report(study: optuna.Study, cfg: SweepConfig) -> Path:
    """``results.md`` and ``plots/*.png`` under the sweep's output_dir; returns the table's path."""
    out = Path(cfg.output_dir)
    table = out / "results.md"
    atomic_write_text(
        table, f"# sweep {cfg.study_name}: {cfg.stage} {cfg.config}\n\n" + results_table(study, cfg)
    )
    write_plots(study, cfg, out / "plots")
    return table


def write_plots(study: optuna.Study, cfg: SweepConfig, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as vis

    folder.mkdir(parents=True, exist_ok=True)
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    plots: dict[str, Any] = {"optimization_history": vis.plot_optimization_history}
    if done:
        plots["slice"] = vis.plot_slice
    if len(cfg.space) >= 2 and len(done) >= 2:
        plots["param_importances"] = vis.plot_param_importances
    written = []
    for name, plot in plots.items():
        try:
            with warnings.catch_warnings():  # matplotlib's and Optuna's notes on degenerate axes
                warnings.simplefilter("ignore", UserWarning)
                ax = plot(study)
        except (ValueError, RuntimeError) as e:  # e.g. importances of keys that never varied
            print(f"[sweep] plot {name} skipped: {e}")
            continue
        fig = ax.flat[0].figure if hasattr(ax, "flat") else ax.figure
        fig.savefig(folder / f"{name}.png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        written.append(folder / f"{name}.png")
    return written
