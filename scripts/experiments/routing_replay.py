"""Token-level GRPO, GRPO with routing replay and GSPO on a MoE whose routing moves during the update.

Pretrains the tiny preset with more, smaller experts (``--experts 32 --expert-size 64``: top-2 of
32), SFTs it with the tiny recipe, then runs the tiny PPO recipe (``recipes/configs/tiny/ppo.yaml``)
from that SFT model for every arm and seed with more optimizer steps per rollout than the recipe
(``--epochs 4`` passes over ``--minibatch 8``-sequence minibatches at ``--lr 1e-3``: 32 optimizer
steps per rollout, so the update's routing drifts away from the rollout's). Every arm uses GRPO advantages
and ``seq-mean-token-mean``; they differ only in the ratio and the routing:

- ``grpo``:        token ratios π/π_old clipped at 0.2 (GRPO, Shao et al. 2024);
- ``grpo_replay``: the same, with the rollout pass's experts forced in the update
  (``moe.routing_replay``);
- ``gspo``:        GSPO's length-normalised sequence ratio clipped at 3e-4 / 4e-4 (Zheng et al. 2025).

``moe/routing_agreement`` — the fraction of (token, layer) top-k sets in the update's passes equal
to the old-log-prob pass's, measured before any replay — is logged in every arm. The report
gives, per arm (mean over seeds, min–max in brackets): routing agreement, the variance of the token
ratios (and of the sequence ratio for GSPO), the clip fraction (of tokens; of sequences for GSPO),
KL spikes (steps whose ``policy/approx_kl`` exceeds ``--spike`` × the run's median), the largest
``approx_kl``, skipped steps and held-out accuracy after the last step; it is printed, written to
``RUNS/table.md``, and plotted to ``--plot``.

    python scripts/experiments/routing_replay.py threads=1            # ~30 min on 2 CPU cores
    python scripts/experiments/routing_replay.py --report-only         # table/plot from finished runs

Finished runs are not re-run (each stage's own re-run check), so an interrupted sweep resumes.
A seconds-long smoke run (the numbers mean nothing)::

    python scripts/experiments/routing_replay.py --preset micro --experts 8 --expert-size 16 \\
        --pretrain-steps 20 --sft-steps 10 --steps 2 --seeds 1 --eval-examples 8 \\
        --runs /tmp/rr --plot /tmp/rr/plot.png
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

CONFIGS = Path(__file__).parents[2] / "recipes" / "configs" / "tiny"
COMMON = [
    "task.answer_only_fraction=0.7",  # the tiny recipe's SFT data when the write-up was measured
    "optim.warmup_steps=0",
    "algorithm.advantage_estimator=grpo",
    "algorithm.loss_agg_mode=seq-mean-token-mean",
    "checkpoint.every=0",
]
ARMS: dict[str, list[str]] = {
    "grpo": [],
    "grpo_replay": ["moe.routing_replay=true"],
    "gspo": ["algorithm.importance_sampling_level=sequence"],
}
Rows = list[dict[str, Any]]


def series(rows: Rows, key: str) -> list[float]:
    return [r[key] for r in rows if isinstance(r.get(key), (int, float))]


def token_ratio_var(rows: Rows) -> list[float]:
    """The token ratios' variance: GSPO logs it beside its sequence ratio's; token levels clip it."""
    return series(rows, "policy/token_ratio_var") or series(rows, "policy/ratio_var")


def spikes(values: list[float], factor: float) -> int:
    med = statistics.median(values) if values else 0.0
    return sum(v > factor * med for v in values) if med > 0 else 0


def run_summary(rows: Rows, spike: float) -> dict[str, float]:
    """One PPO run's figures (means over its steps unless named otherwise)."""
    kl = series(rows, "policy/approx_kl")
    seq_var = series(rows, "policy/ratio_var") if series(rows, "policy/token_ratio_var") else []
    return {
        "agreement": statistics.fmean(series(rows, "moe/routing_agreement")),
        "agreement_min": min(series(rows, "moe/routing_agreement")),
        "token_ratio_var": statistics.fmean(token_ratio_var(rows)),
        "seq_ratio_var": statistics.fmean(seq_var) if seq_var else float("nan"),
        "clipfrac": statistics.fmean(series(rows, "policy/clipfrac")),
        "approx_kl_max": max(kl),
        "kl_spikes": float(spikes(kl, spike)),
        "skipped_steps": series(rows, "skipped_steps")[-1],
        "accuracy": series(rows, "eval/accuracy")[-1],
        "wall_s": sum(series(rows, "perf/step_s")),
    }


def base_models(a: argparse.Namespace) -> str:
    """Pretrain and SFT the many-expert model once; the SFT model's final/ directory."""
    from r1rl.config import PretrainConfig, SFTConfig, load_config
    from r1rl.run.stages import STAGES

    runs = Path(a.runs)
    shape = f"{{num_experts: {a.experts}, moe_intermediate_size: {a.expert_size}}}"
    pre = [f"output_dir={runs / 'pretrain'}", f"steps={a.pretrain_steps}", f"model.preset={a.preset}"]
    pre += [f"model.overrides={shape}", "checkpoint.every=0", *a.overrides]
    STAGES["pretrain"](load_config(PretrainConfig, CONFIGS / "pretrain.yaml", pre))
    sft = [f"output_dir={runs / 'sft'}", f"model_path={runs / 'pretrain' / 'final'}"]
    sft += [f"steps={a.sft_steps}", "task.answer_only_fraction=0.7", *a.overrides]
    STAGES["sft"](load_config(SFTConfig, CONFIGS / "sft.yaml", sft))
    return str(runs / "sft" / "final")


def ppo_config(arm: str, seed: int, sft: str, a: argparse.Namespace) -> Any:
    from r1rl.config import PPOConfig, load_config

    over = [
        f"output_dir={Path(a.runs) / arm / f'seed{seed}'}", f"model_path={sft}", f"seed={seed}",
        f"steps={a.steps}", f"optim.ppo_epochs={a.epochs}", f"optim.minibatch_size={a.minibatch}",
        f"log.eval_every={a.steps}", f"log.eval_examples={a.eval_examples}", f"optim.lr={a.lr}",
    ]  # fmt: skip
    return load_config(PPOConfig, CONFIGS / "ppo.yaml", over + COMMON + ARMS[arm] + list(a.overrides))


def collect(a: argparse.Namespace, sft: str) -> dict[str, list[Rows]]:
    from r1rl.run.stages import STAGES

    results: dict[str, list[Rows]] = {arm: [] for arm in ARMS}
    for seed in range(a.seeds):  # seeds outermost: a cut-short sweep still compares every arm
        for arm in ARMS:
            cfg = ppo_config(arm, seed, sft, a)
            metrics = Path(cfg.output_dir) / "metrics.jsonl"
            if a.report_only:
                if not metrics.is_file():
                    print(f"skip {arm} seed {seed}: no {metrics}")
                    continue
            else:
                print(f"== {arm} seed {seed} -> {cfg.output_dir}", flush=True)
                STAGES["ppo"](cfg)
            results[arm].append([json.loads(line) for line in metrics.read_text().splitlines() if line])
    return results


def cell(values: list[float], fmt: str) -> str:
    values = [v for v in values if v == v]  # drop NaN
    if not values:
        return "–"
    mean = format(statistics.fmean(values), fmt)
    return mean if len(values) == 1 else f"{mean} ({format(min(values), fmt)}–{format(max(values), fmt)})"


COLUMNS = [
    ("routing agreement", "agreement", ".4f"),
    ("lowest step agreement", "agreement_min", ".4f"),
    ("token ratio var", "token_ratio_var", ".2e"),
    ("sequence ratio var", "seq_ratio_var", ".2e"),
    ("clip fraction", "clipfrac", ".4f"),
    ("KL spikes", "kl_spikes", ".1f"),
    ("max approx_kl", "approx_kl_max", ".2e"),
    ("skipped steps", "skipped_steps", ".0f"),
    ("held-out accuracy", "accuracy", ".3f"),
    ("PPO time (s)", "wall_s", ".0f"),
]


def markdown(results: dict[str, list[Rows]], a: argparse.Namespace) -> str:
    seeds = max(len(v) for v in results.values())
    summaries = {arm: [run_summary(r, a.spike) for r in runs] for arm, runs in results.items() if runs}
    lines = [
        f"{a.preset} preset with {a.experts} experts of width {a.expert_size} (top-2); PPO {a.steps} steps, "
        f"{a.epochs} epochs × minibatches of {a.minibatch}; {seeds} seeds (mean, min–max); held-out "
        f"accuracy on {a.eval_examples} test problems after the last step; KL spike = a step with "
        f"approx_kl > {a.spike:g} × the run's median",
        "",
        "| metric | " + " | ".join(summaries) + " |",
        "|---|" + "---|" * len(summaries),
    ]
    for title, key, fmt in COLUMNS:
        cells = [cell([s[key] for s in v], fmt) for v in summaries.values()]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


PANELS = [
    ("moe/routing_agreement", "routing agreement", False),
    ("token_ratio_var", "token ratio variance", True),
    ("policy/clipfrac", "clip fraction", False),
    ("policy/approx_kl", "approx KL(π_old ‖ π)", True),
    ("reward/mean", "reward mean", False),
]


def plot(results: dict[str, list[Rows]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5), layout="constrained")
    for (key, title, log), ax in zip(PANELS, axes.flat):
        for i, (arm, runs) in enumerate(results.items()):
            for k, rows in enumerate(runs):
                ys = token_ratio_var(rows) if key == "token_ratio_var" else series(rows, key)
                label = arm if k == 0 else None
                ax.plot(range(1, len(ys) + 1), ys, color=f"C{i}", lw=1, alpha=0.7, label=label)
        ax.set(title=title, xlabel="PPO step", yscale="log" if log else "linear")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    ax = axes.flat[-1]
    for i, runs in enumerate(results.values()):
        accs = [series(r, "eval/accuracy")[-1] for r in runs]
        ax.bar(i, statistics.fmean(accs) if accs else 0, color=f"C{i}", alpha=0.5)
        ax.plot([i] * len(accs), accs, "ko", ms=4)
    ax.set(title="held-out accuracy (bar: mean; dots: seeds)", xticks=range(len(results)))
    ax.set_xticklabels(list(results))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny", help="model size preset of the pretrained base")
    ap.add_argument("--experts", type=int, default=32, help="experts per MoE layer (top-2 routed)")
    ap.add_argument("--expert-size", type=int, default=64, help="moe_intermediate_size of each expert")
    ap.add_argument("--pretrain-steps", type=int, default=800)
    ap.add_argument("--sft-steps", type=int, default=150)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=12, help="PPO steps per run")
    ap.add_argument("--epochs", type=int, default=4, help="optim.ppo_epochs")
    ap.add_argument("--minibatch", type=int, default=8, help="optim.minibatch_size")
    ap.add_argument("--lr", type=float, default=1e-3, help="optim.lr of the PPO arms")
    ap.add_argument("--eval-examples", type=int, default=300)
    ap.add_argument("--spike", type=float, default=4.0, help="KL spike: approx_kl above this × the median")
    ap.add_argument("--runs", default="runs/experiments/routing_replay")
    ap.add_argument("--plot", default="docs/experiments/routing_replay.png")
    ap.add_argument("--report-only", action="store_true", help="summarise the runs already in --runs")
    ap.add_argument("overrides", nargs="*", help="extra key=value overrides for every stage (e.g. threads=1)")
    a = ap.parse_args()
    sft = str(Path(a.runs) / "sft" / "final") if a.report_only else base_models(a)
    results = collect(a, sft)
    if not any(results.values()):
        ap.error(f"no finished runs under {a.runs}")
    table = markdown(results, a)
    print(table)
    (Path(a.runs) / "table.md").write_text(table)
    plot(results, Path(a.plot))
    print(f"table: {Path(a.runs) / 'table.md'}  plot: {a.plot}")


if __name__ == "__main__":
    main()
