"""Routing replay on and off: importance-ratio variance, clip fraction and KL during PPO.

Runs the tiny PPO recipe twice from the same SFT model and seed — once with
``ppo.routing_replay=true`` — and reports the mean of each policy metric over the run, plus
``moe/routing_agreement`` (the fraction of tokens whose top-k experts in the update pass match
those of the old-log-prob pass, measured before replay is applied). Writes a plot.

    python bench/routing_replay.py --sft runs/tiny/sft/final [--steps 30] [--plot FILE.png]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

RECIPE = Path(__file__).parents[1] / "recipes" / "configs" / "tiny" / "ppo.yaml"
METRICS = [
    "policy/ratio_var",
    "policy/clipfrac",
    "policy/approx_kl",
    "kl",
    "moe/routing_agreement",
    "reward/mean",
]


def run(sft: str, steps: int, replay: bool, out: Path, extra: list[str]) -> list[dict]:
    from r1rl.config import PPOConfig, load_config
    from r1rl.stages import STAGES

    over = [f"output_dir={out}", f"model_path={sft}", f"steps={steps}", f"moe.routing_replay={replay}"]
    over += ["checkpoint.every=0", *extra]
    STAGES["ppo"](load_config(PPOConfig, RECIPE, over))
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sft", required=True, help="an SFT stage's final/ (e.g. runs/tiny/sft/final)")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--plot", default="docs/experiments/routing_replay.png")
    ap.add_argument("overrides", nargs="*", help="extra key=value overrides for both runs")
    a = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for replay in (False, True):
            name = "replay" if replay else "no replay"
            results[name] = run(a.sft, a.steps, replay, Path(tmp) / name.replace(" ", "_"), a.overrides)
    print(f"means over {a.steps} PPO steps (tiny recipe, same seed)")
    print("| metric | no replay | replay |")
    print("|---|---|---|")
    for m in METRICS:
        vals = [statistics.fmean(r[m] for r in results[k] if r.get(m) is not None) for k in results]
        print(f"| {m} | {vals[0]:.4g} | {vals[1]:.4g} |")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.2))
    for ax, m in zip(axes, METRICS[:3] + ["moe/routing_agreement"]):
        for k, rows in results.items():
            ax.plot([r["step"] for r in rows], [r.get(m) for r in rows], label=k, lw=1.2)
        ax.set_title(m, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    Path(a.plot).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.plot, dpi=90)
    print(f"plot: {a.plot}")


if __name__ == "__main__":
    main()
