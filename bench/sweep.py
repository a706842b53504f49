"""Trials a sampler needs to come within 1 point of the best point of a grid: TPE, random search and
the grid in a shuffled order, over 5 sampler seeds.

The grid — SFT on the tiny preset, learning rate × steps, held-out accuracy (greedy, ``--eval``
held-out problems) at the end of each run — is evaluated once with ``r1rl sweep`` itself
(``sampler: grid``), and its table is replayed as a lookup: a sampler's proposal is snapped to
the nearest grid point (log scale on both keys, each a doubling: the continuous range reaches half a
cell beyond the grid's edges, so that every point is drawn equally often by random search) and
scored by that point's stored accuracy. A repeated point counts as a trial, as it would in a real
sweep.

    python bench/sweep.py grid --pretrained runs/tiny-stages/pretrain/final --out runs/bench-sweep
    python bench/sweep.py replay --out runs/bench-sweep

``grid`` writes ``<out>/grid.json`` (and the sweep's run directories, study.db, results.md, plots);
``replay`` prints the markdown table of docs/experiments/sweep.md.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[1]
LRS = [5e-4, 1e-3, 2e-3, 4e-3, 8e-3]
STEPS = [25, 50, 100, 200]
SEEDS = range(5)
BUDGET = 40  # trials per replay; a sampler that has not come within a point by then counts as > BUDGET


def grid(a: argparse.Namespace) -> None:
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    sweep = {
        "stage": "sft",
        "config": str(ROOT / "recipes/configs/tiny/sft.yaml"),
        "overrides": [
            f"model_path={Path(a.pretrained).resolve()}", "threads=1", "log.eval_every=1000",
            f"log.eval_examples={a.eval}", "checkpoint.every=1000",
        ],
        "space": {"optim.lr": {"choices": LRS}, "steps": {"choices": STEPS}},
        "objective": {"metric": "eval/accuracy"},
        "sampler": "grid",
        "trials": len(LRS) * len(STEPS),
        "pruner": {"name": "none"},
        "output_dir": str(out / "grid"),
    }  # fmt: skip
    (out / "grid.yaml").write_text(yaml.safe_dump(sweep, sort_keys=False))
    subprocess.run([sys.executable, "-m", "r1rl", "sweep", str(out / "grid.yaml")], check=True)
    import optuna

    study = optuna.load_study(
        study_name="sweep", storage=f"sqlite:///{(out / 'grid' / 'study.db').resolve()}"
    )
    points = [
        {"lr": t.params["optim.lr"], "steps": t.params["steps"], "accuracy": t.value}
        for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    ]
    (out / "grid.json").write_text(json.dumps(points, indent=1))
    print(f"{len(points)} points → {out / 'grid.json'}")


def nearest(values: list[float], x: float) -> float:
    return min(values, key=lambda v: abs(math.log(v) - math.log(x)))


Point = tuple[float, int]  # (lr, steps)


def widened(values: list) -> tuple[float, float]:
    """The range whose log-uniform draws snap to each of ``values`` (doubling steps) equally often:
    half a cell (a factor sqrt 2) beyond the first and the last."""
    return min(values) / math.sqrt(2), max(values) * math.sqrt(2)


def trials_to_reach(order: list[Point], table: dict[Point, float], target: float) -> tuple[int, int, bool]:
    """(trials, SFT steps trained, reached) until the first point within a point of the best; a run
    that never gets there counts all its trials and steps."""
    steps = 0
    for i, point in enumerate(order):
        steps += point[1]
        if table[point] >= target - 1e-9:
            return i + 1, steps, True
    return len(order), steps, False


def replay_optuna(table: dict[Point, float], sampler) -> list[Point]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    order: list[Point] = []

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", *widened(LRS), log=True)
        steps = trial.suggest_float("steps", *widened(STEPS), log=True)
        order.append((nearest(LRS, lr), int(nearest([float(s) for s in STEPS], steps))))
        return table[order[-1]]

    study.optimize(objective, n_trials=BUDGET)
    return order


def replay(a: argparse.Namespace) -> None:
    import optuna

    points = json.loads((Path(a.out) / "grid.json").read_text())
    table = {(p["lr"], p["steps"]): p["accuracy"] for p in points}
    best = max(table.values())
    target = best - 0.01  # within 1 point (accuracy in [0, 1])
    tpe = optuna.samplers.TPESampler
    arms = {
        "TPE (Optuna's default: 10 random startup trials)": lambda s: replay_optuna(table, tpe(seed=s)),
        "TPE, 4 random startup trials": lambda s: replay_optuna(table, tpe(seed=s, n_startup_trials=4)),
        "random search": lambda s: replay_optuna(table, optuna.samplers.RandomSampler(seed=s)),
        "grid, shuffled order": lambda s: random.Random(s).sample(list(table), len(table)),
    }
    grid_steps = sum(steps for _, steps in table)
    print(
        f"grid: {len(table)} points ({grid_steps} SFT steps), best accuracy {best:.3f}; "
        f"target >= {target:.3f}"
    )
    print(f"(a replay gives up after {BUDGET} trials; a mean counts such a run as its {BUDGET} trials)\n")
    print(
        "| sampler | trials, seeds 0–4 | mean | SFT steps, mean (seeds 0–4) | trials, mean over "
        f"{a.many} seeds | SFT steps, mean over {a.many} seeds |\n|---|---|---|---|---|---|"
    )
    for name, run in arms.items():
        hits = [trials_to_reach(run(s), table, target) for s in range(a.many)]
        five = hits[:5]
        shown = ", ".join(str(t) if reached else f">{t}" for t, _, reached in five)
        print(
            f"| {name} | {shown} | {statistics.mean(h[0] for h in five):.1f} | "
            f"{statistics.mean(h[1] for h in five):.0f} | {statistics.mean(h[0] for h in hits):.1f} | "
            f"{statistics.mean(h[1] for h in hits):.0f} |"
        )
    print(
        f"| full grid (to know the best) | {len(table)} | {len(table)} | {grid_steps} | {len(table)} "
        f"| {grid_steps} |"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("grid", help="evaluate the grid once with r1rl sweep (sampler: grid)")
    g.add_argument("--pretrained", required=True, help="a tiny pretrain final/ (the SFT base)")
    g.add_argument("--eval", type=int, default=200, help="held-out problems per evaluation")
    g.add_argument("--out", default="runs/bench-sweep")
    r = sub.add_parser("replay", help="replay TPE, random and shuffled-grid searches on grid.json")
    r.add_argument("--out", default="runs/bench-sweep")
    r.add_argument(
        "--many", type=int, default=100, help="sampler seeds of the second mean (the first is 0-4)"
    )
    a = p.parse_args()
    grid(a) if a.command == "grid" else replay(a)


if __name__ == "__main__":
    main()
