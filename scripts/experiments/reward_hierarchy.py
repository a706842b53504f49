"""Gated vs weighted reward hierarchy vs a flat task-only reward: PPO steps to a held-out accuracy.

Runs the tiny recipe's PPO stage (``recipes/configs/tiny/ppo.yaml``) from one SFT model for
every arm and seed, with a greedy held-out eval every ``--eval-every`` steps (``log.eval_every``,
logged as ``eval/accuracy`` in ``metrics.jsonl``: the task tier's pass rate on the fixed test
split, the same scorer in every arm). For each arm it reports the first step at which the
held-out accuracy reaches ``--target``: median over seeds, min–max spread, and how many seeds
got there at all. Writes a markdown table and a plot of the accuracy curves.

Arms (``rewards.*`` overrides; every arm ends with the same task tier):

- ``gated``:     syntax → logic → task, a tier counts once those below it pass (the default);
- ``weighted``:  the same three tiers, equally weighted;
- ``task_only``: the task tier alone (a flat outcome reward);
- ``scheduled``: the three tiers, weights moving from format (1, 1, 0.2) to answer (0.2, 0.5, 1)
  over the run (not run unless asked for with ``--arms``).

    python scripts/experiments/reward_hierarchy.py --sft runs/tiny/sft/final --seeds 5 \\
        [--steps 60] [--eval-every 5] [--target 0.5] [--arms gated,weighted,task_only] [threads=2 ...]
    python scripts/experiments/reward_hierarchy.py --sft ... --dry-run     # check configs, print plan
    python scripts/experiments/reward_hierarchy.py --sft ... --report-only  # table/plot from finished runs

A seconds-long smoke run (micro model; the numbers mean nothing)::

    r1rl run recipes/configs/micro/pipeline.yaml output_dir=/tmp/micro   # pretrain → SFT → PPO → eval
    python scripts/experiments/reward_hierarchy.py --sft /tmp/micro/sft/final --seeds 2 --steps 4 \
        --eval-every 2 --eval-examples 8 --recipe recipes/configs/micro/ppo.yaml \
        --runs /tmp/rh --out /tmp/rh/report

Runs are written to ``--runs/<arm>/seed<k>`` and a finished run is not re-run, so an
interrupted sweep resumes where it stopped. ``--sft`` may contain ``{seed}`` to start each seed
from its own SFT model (by default every seed shares one SFT model and only PPO's seed varies).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path
from typing import Any

RECIPE = Path(__file__).parents[2] / "recipes" / "configs" / "tiny" / "ppo.yaml"
ARMS: dict[str, list[str]] = {
    "gated": ["rewards.mode=gated"],
    "weighted": ["rewards.mode=weighted"],
    "task_only": ["rewards.mode=weighted", "rewards.tiers=[{name: task, reward: arithmetic_task}]"],
    "scheduled": [
        "rewards.mode=scheduled",
        "rewards.schedule_end={steps}",
        "rewards.tiers=[{name: syntax, reward: arithmetic_syntax, weight: 1.0, weight_end: 0.2},"
        " {name: logic, reward: arithmetic_logic, weight: 1.0, weight_end: 0.5},"
        " {name: task, reward: arithmetic_task, weight: 0.2, weight_end: 1.0}]",
    ],
}
DEFAULT_ARMS = "gated,weighted,task_only"
# The recipe's values when the write-up was measured (terse SFT data; 2 epochs of 2 minibatches at
# lr 3e-4): the tiny recipe has since moved to fully worked SFT and one step per rollout.
MEASURED_WITH = ["task.answer_only_fraction=0.7", "optim.ppo_epochs=2", "optim.minibatch_size=32",
                 "optim.lr=3e-4", "optim.warmup_steps=0"]  # fmt: skip


def overrides(arm: str, seed: int, a: argparse.Namespace) -> list[str]:
    sft = a.sft.format(seed=seed)
    out = [
        f"output_dir={Path(a.runs) / arm / f'seed{seed}'}", f"model_path={sft}", f"seed={seed}",
        f"steps={a.steps}", f"log.eval_every={a.eval_every}", f"log.eval_examples={a.eval_examples}",
        "checkpoint.every=0", *MEASURED_WITH,
    ]  # fmt: skip
    return out + [o.replace("{steps}", str(a.steps)) for o in ARMS[arm]] + list(a.overrides)


def check_plan(a: argparse.Namespace, arms: list[str]) -> list[tuple[str, int, Any]]:
    """Every run's validated config, with its reward hierarchy resolved (no training)."""
    from r1rl.rewards.hierarchy import RewardHierarchy

    from r1rl.config import PPOConfig, load_config

    plan = []
    for arm in arms:
        for seed in range(a.seeds):
            cfg = load_config(PPOConfig, a.recipe, overrides(arm, seed, a))
            RewardHierarchy.from_config(cfg.rewards)
            plan.append((arm, seed, cfg))
    return plan


def run(cfg: Any) -> list[dict[str, Any]]:
    from r1rl.run.stages import STAGES

    rd = STAGES["ppo"](cfg)
    return rd.read_metrics()


def eval_curve(rows: list[dict[str, Any]]) -> list[tuple[int, float]]:
    """(step, held-out accuracy) for every row with an ``eval/accuracy``."""
    return [(r["step"], r["eval/accuracy"]) for r in rows if isinstance(r.get("eval/accuracy"), (int, float))]


def steps_to_target(curve: list[tuple[int, float]], target: float) -> float:
    """First eval step with accuracy >= target; ``inf`` if never (within the run)."""
    return next((float(step) for step, acc in curve if acc >= target), math.inf)


def summarize(results: dict[str, list[list[tuple[int, float]]]], target: float) -> list[dict[str, Any]]:
    """Per arm: median and min–max of steps-to-target over seeds (``inf`` = never reached)."""
    rows = []
    for arm, curves in results.items():
        hits = [steps_to_target(c, target) for c in curves]
        finals = [c[-1][1] for c in curves if c]
        rows.append(
            {
                "arm": arm,
                "seeds": len(curves),
                "reached": sum(math.isfinite(h) for h in hits),
                "median": statistics.median(hits)
                if hits
                else math.nan,  # inf when most seeds never get there
                "min": min(hits, default=math.nan),
                "max": max(hits, default=math.nan),
                "final_acc": statistics.median(finals) if finals else math.nan,
            }
        )
    return rows


def markdown(rows: list[dict[str, Any]], target: float, a: argparse.Namespace) -> str:
    def fmt(x: float) -> str:
        return "never" if x == math.inf else "–" if math.isnan(x) else f"{x:.0f}"

    recipe = f"{Path(a.recipe).parent.name}/{Path(a.recipe).name}"
    lines = [
        f"PPO steps until held-out accuracy ≥ {target:g} ({recipe}, {a.steps} steps, eval every "
        f"{a.eval_every} steps on {a.eval_examples} held-out problems; median and min–max over seeds)",
        "",
        "| reward | seeds reaching target | median steps | min–max | median final accuracy |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        spread = f"{fmt(r['min'])}–{fmt(r['max'])}"
        acc = f"{r['final_acc']:.3f}" if math.isfinite(r["final_acc"]) else "–"
        lines.append(f"| {r['arm']} | {r['reached']}/{r['seeds']} | {fmt(r['median'])} | {spread} | {acc} |")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, list[list[tuple[int, float]]]], target: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, (arm, curves) in enumerate(results.items()):
        color = f"C{i}"
        for c in curves:  # one thin line per seed
            ax.plot([s for s, _ in c], [v for _, v in c], color=color, alpha=0.3, lw=0.8)
        steps = sorted({s for c in curves for s, _ in c})
        med = [statistics.median([dict(c)[s] for c in curves if s in dict(c)]) for s in steps]
        ax.plot(steps, med, color=color, lw=2, label=f"{arm} (median)")
    ax.axhline(target, color="k", ls="--", lw=0.8, label=f"target {target:g}")
    ax.set_xlabel("PPO step")
    ax.set_ylabel("held-out accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sft", required=True, help="an SFT stage's final/ (may contain {seed})")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--eval-every", type=int, default=5)
    ap.add_argument("--eval-examples", type=int, default=100)
    ap.add_argument("--target", type=float, default=0.5, help="held-out accuracy to reach")
    ap.add_argument("--arms", default=DEFAULT_ARMS, help=f"comma-separated, from {', '.join(ARMS)}")
    ap.add_argument("--recipe", default=str(RECIPE), help="the PPO stage recipe every run starts from")
    ap.add_argument("--runs", default="runs/experiments/reward_hierarchy")
    ap.add_argument("--out", default="docs/experiments/reward_hierarchy", help="writes OUT.md and OUT.png")
    ap.add_argument("--dry-run", action="store_true", help="validate every run's config and print the plan")
    ap.add_argument("--report-only", action="store_true", help="summarise the runs already in --runs")
    ap.add_argument("overrides", nargs="*", help="extra key=value overrides for every run (e.g. threads=2)")
    a = ap.parse_args()
    arms = [x.strip() for x in a.arms.split(",") if x.strip()]
    unknown = [x for x in arms if x not in ARMS]
    if unknown:
        ap.error(f"unknown arm(s) {unknown}; choose from {list(ARMS)}")
    if a.eval_every < 1:
        ap.error("--eval-every must be >= 1: steps-to-target needs periodic evals")
    plan = check_plan(a, arms)
    if a.dry_run:
        for arm, seed, cfg in plan:
            tiers = ", ".join(f"{t.name}:{t.reward}" for t in cfg.rewards.tiers)
            print(f"{arm:10s} seed {seed}: {cfg.output_dir}  mode={cfg.rewards.mode} tiers=[{tiers}]")
        missing = sorted({cfg.model_path for _, _, cfg in plan if not Path(cfg.model_path).exists()})
        for m in missing:
            print(f"warning: no SFT model at {m}")
        print(f"{len(plan)} runs; configs and rewards check out (nothing trained)")
        return
    results: dict[str, list[list[tuple[int, float]]]] = {arm: [] for arm in arms}
    for arm, seed, cfg in plan:
        if a.report_only:
            path = Path(cfg.output_dir) / "metrics.jsonl"
            if not path.is_file():
                print(f"skip {arm} seed {seed}: no {path}")
                continue
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        else:
            print(f"== {arm} seed {seed} -> {cfg.output_dir}", flush=True)
            rows = run(cfg)
        results[arm].append(eval_curve(rows))
    table = markdown(summarize(results, a.target), a.target, a)
    print(table)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(table)
    plot(results, a.target, out.with_suffix(".png"))
    print(f"table: {out.with_suffix('.md')}  plot: {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
