"""Expert pruning on the tiny preset: held-out accuracy and parameters against the share of experts dropped.

Per seed, one pretrained and SFT-trained tiny model (8 experts per layer, 2 per token, the tiny
recipes), then for each fraction (12.5, 25, 37.5, 50 % of each layer's experts: 1 to 4 of 8) and each
ranking (``usage``: the least-used experts in a calibration pass over 256 training rows; ``random``:
a draw seeded with the seed) a pruned checkpoint (``r1rl prune``), scored by ``r1rl eval`` on the same
held-out rows as the unpruned model — as it is, and healed by a short LoRA SFT run on the pruned model
(``r1rl sft`` with ``--heal-steps`` steps of the tiny SFT recipe).

    python bench/prune.py --seeds 0 1 2 --out runs/prune-bench --plot docs/experiments/pruning.png

Each command runs as its own ``r1rl`` process with one thread; run directories go to
``--out/s{seed}/...``; what a rerun finds there (a trained model, a pruned folder, a healed model,
an eval) is read, not recomputed. Prints
the table (mean and spread over seeds), writes ``--out/results.json`` and the plot.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

RECIPES = Path(__file__).parents[1] / "recipes" / "configs" / "tiny"
FRACTIONS = (0.125, 0.25, 0.375, 0.5)
RANKINGS = ("usage", "random")


def r1rl(args: list[str], log: Path) -> None:
    cmd = [sys.executable, "-m", "r1rl", *[str(a) for a in args]]
    with log.open("a") as f:
        f.write(" ".join(cmd) + "\n")
        f.flush()
        res = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed; see {log}")


def evaluate(model: Path, out: Path, common: list[str], a: argparse.Namespace, log: Path) -> float:
    if not (out / "eval_results.json").exists():  # a rerun reads what is there, without a process
        r1rl(["eval", RECIPES / "eval.yaml", f"model_path={model}", f"output_dir={out}", *common,
              f"num_examples={a.eval_examples}"], log)  # fmt: skip
    return float(json.loads((out / "eval_results.json").read_text())["tasks"]["arithmetic"]["accuracy"])


def healed_accuracy(model: Path, name: str, root: Path, common: list[str], a: argparse.Namespace) -> float:
    """Held-out accuracy of ``model`` after ``--heal-steps`` more steps of the tiny SFT recipe on it."""
    healed = root / "healed" / name
    if not (healed / "final").exists():
        heal = [f"model_path={model}", f"output_dir={healed}", f"steps={a.heal_steps}"]
        r1rl(["sft", RECIPES / "sft.yaml", *heal, *common], root / "log.txt")
    return evaluate(healed / "final", root / "eval" / f"{name}-healed", common, a, root / "log.txt")


def run_seed(seed: int, a: argparse.Namespace) -> list[dict]:
    """Every arm of one seed: the unpruned SFT model (and, as the control of healing, that model trained
    as long as the healed ones), then each ranking × fraction, unhealed and healed."""
    root = a.out / f"s{seed}"
    root.mkdir(parents=True, exist_ok=True)
    log, common = root / "log.txt", [f"seed={seed}", "threads=1"]
    if not (root / "sft" / "final").exists():
        r1rl(["pretrain", RECIPES / "pretrain.yaml", f"output_dir={root / 'pretrain'}", *common], log)
        r1rl(["sft", RECIPES / "sft.yaml", f"output_dir={root / 'sft'}", f"model_path={root}/pretrain/final",
              *common], log)  # fmt: skip
    full = {"seed": seed, "ranking": "none", "fraction": 0.0, "parameters": None, "experts": None}
    accuracy = evaluate(root / "sft" / "final", root / "eval" / "full", common, a, log)
    rows = [{**full, "healed": False, "accuracy": accuracy}]
    if a.heal_steps:
        rows.append(
            {
                **full,
                "healed": True,
                "accuracy": healed_accuracy(root / "sft" / "final", "full", root, common, a),
            }
        )
    for ranking in RANKINGS:
        for fraction in FRACTIONS:
            name = f"{ranking}-{fraction * 100:g}"
            pruned = root / "pruned" / name
            if not pruned.exists():
                r1rl(["prune", root / "sft", pruned, "--fraction", fraction, "--ranking", ranking,
                      "--seed", seed, "--threads", 1], log)  # fmt: skip
            report = json.loads((pruned / "pruning.json").read_text())
            for row in rows[: 1 + bool(a.heal_steps)]:
                row.update(parameters=report["parameters"]["before"], experts=report["experts"]["before"])
            after = {"parameters": report["parameters"]["after"], "experts": report["experts"]["after"]}
            base = {"seed": seed, "ranking": ranking, "fraction": fraction, **after}
            rows.append(
                {**base, "healed": False, "accuracy": evaluate(pruned, root / "eval" / name, common, a, log)}
            )
            if a.heal_steps:
                rows.append(
                    {**base, "healed": True, "accuracy": healed_accuracy(pruned, name, root, common, a)}
                )
            print(f"[s{seed}] {name}: " + ", ".join(f"{r['accuracy']:.3f}" for r in rows[-2:]), flush=True)
    return rows


def table(rows: list[dict]) -> str:
    """Accuracy per arm: each seed's, and their mean; with the experts and parameters left."""
    seeds = sorted({r["seed"] for r in rows})
    lines = ["| experts pruned | experts left | parameters | ranking | healed | "
             + " | ".join(f"seed {s}" for s in seeds) + " | mean |",
             "|---|---|---|---|---|" + "---|" * (len(seeds) + 1)]  # fmt: skip
    arms: dict[tuple, dict[int, dict]] = {}
    for r in rows:
        arms.setdefault((r["fraction"], r["ranking"] != "none", r["ranking"], r["healed"]), {})[r["seed"]] = r
    for (fraction, _, ranking, healed), by_seed in sorted(arms.items()):
        first = next(iter(by_seed.values()))
        accs = [f"{by_seed[s]['accuracy']:.3f}" if s in by_seed else "–" for s in seeds]
        mean = statistics.mean(r["accuracy"] for r in by_seed.values())
        lines.append(
            f"| {fraction * 100:g}% | {first['experts']} | {first['parameters']:,} | {ranking} | "
            f"{'yes' if healed else 'no'} | {' | '.join(accs)} | {mean:.3f} |"
        )
    return "\n".join(lines)


STYLES = {("usage", False): ("C0", "-"), ("usage", True): ("C0", ":"),
          ("random", False): ("C3", "-"), ("random", True): ("C3", ":")}  # fmt: skip


def plot(rows: list[dict], path: Path) -> None:
    """One panel per seed (their unpruned models differ a lot): accuracy against the share of experts
    pruned, one line per ranking × healing; the unpruned model's accuracy as a dashed line (dotted: trained
    as long as the healed ones); the parameters left under the x axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seeds = sorted({r["seed"] for r in rows})
    fig, axes = plt.subplots(1, len(seeds), figsize=(5.2 * len(seeds), 4.2), sharey=True, squeeze=False)
    params = {r["fraction"] * 100: r["parameters"] for r in rows if r["ranking"] == "usage"}
    for ax, seed in zip(axes[0], seeds):
        mine = [r for r in rows if r["seed"] == seed]
        for healed, ls in ((False, "--"), (True, ":")):
            for r in mine:
                if r["ranking"] == "none" and r["healed"] == healed:
                    label = (
                        "unpruned, trained as long as the healed" if healed else "unpruned (the SFT model)"
                    )
                    ax.axhline(r["accuracy"], color="gray", ls=ls, label=label)
        for (ranking, healed), (color, ls) in STYLES.items():
            chosen = [r for r in mine if (r["ranking"], r["healed"]) == (ranking, healed)]
            arm = sorted((r["fraction"] * 100, r["accuracy"]) for r in chosen)
            label = f"{ranking}-ranked, {'healed' if healed else 'not healed'}"
            ax.plot([x for x, _ in arm], [y for _, y in arm], color=color, ls=ls, marker="o", label=label)
        ax.set_xticks([0, *params])
        ax.set_xticklabels(["0"] + [f"{x:g}\n{p / 1e6:.2f}M" for x, p in sorted(params.items())])
        ax.set_xlabel("experts pruned per layer (%), parameters left")
        ax.set_title(f"seed {seed}")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("held-out accuracy (500 rows)")
    axes[0][0].set_ylim(bottom=0)
    axes[0][-1].legend(fontsize=7, loc="lower left")
    fig.suptitle("Expert pruning of the tiny preset (8 experts per layer, top-2)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", type=Path, default=Path("runs/prune-bench"))
    p.add_argument("--eval-examples", type=int, default=500, help="held-out rows scored (the first N)")
    p.add_argument("--heal-steps", type=int, default=50, help="SFT steps that heal a pruned model (0: none)")
    p.add_argument("--plot", type=Path, default=None)
    a = p.parse_args()
    rows = [row for seed in a.seeds for row in run_seed(seed, a)]
    (a.out / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(table(rows))
    if a.plot:
        plot(rows, a.plot)
        print(f"wrote {a.plot}")


if __name__ == "__main__":
    main()
