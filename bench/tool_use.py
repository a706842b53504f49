"""A model that learns to use a tool: arithmetic too large to do in its head, with a calculator.

Four arms per seed, on the tiny preset, all from one pretrained model per seed (chat-rendered
arithmetic, no tool traces): SFT without tools; SFT with tools (``tool_fraction`` of its rows, at
most 0.3, are calculator traces; the rest worked solutions); RL without tools (PPO from the first);
RL with tools (PPO from the second, with ``env.tools: [calculator]``). Every arm is scored by
``r1rl eval`` on the same held-out problems — greedy, with the tools where the arm has them.

    python bench/tool_use.py --seeds 0 1 2 --jobs 2

``--base RUN`` starts every seed from one pretrained run instead of pretraining one per seed (the
seeds then vary SFT's and RL's data order and sampling, not the pretrained model). Each stage runs
as its own ``r1rl`` process with one thread, ``--jobs`` seeds at a time; run
directories go to ``--out/s{seed}/...`` and finished stages are skipped on a rerun (r1rl's own
rerun rules). Prints the 4-arm table, writes ``--out/results.json`` and the plot of the tool-call
and well-formed rates through RL (``--plot``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

RECIPES = Path(__file__).parents[1] / "recipes" / "configs" / "tools"
TOOLS = ["env.tools=[calculator]"]
ARMS = ("sft", "sft_tools", "rl", "rl_tools")


def r1rl(stage: str, recipe: str, args: list[str], log: Path) -> None:
    cmd = [sys.executable, "-m", "r1rl", stage, str(RECIPES / recipe), *args]
    with log.open("a") as f:
        f.write(" ".join(cmd) + "\n")
        f.flush()
        res = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed; see {log}")


def run_seed(seed: int, out: Path, a: argparse.Namespace) -> dict:
    root = out / f"s{seed}"
    root.mkdir(parents=True, exist_ok=True)
    log, common = root / "log.txt", [f"seed={seed}", "threads=1"]
    base = a.base or root / "pretrain"
    if a.base is None:
        r1rl("pretrain", "pretrain.yaml", [f"output_dir={base}", *common], log)
    tools_sft = [f"task.tool_fraction={a.tool_fraction}", *TOOLS]
    stages = {
        "sft": ("sft", "sft.yaml", [f"model_path={base / 'final'}"]),
        "sft_tools": ("sft", "sft.yaml", [f"model_path={base / 'final'}", *tools_sft]),
        "rl": ("ppo", "ppo.yaml", [f"model_path={root}/sft/final"]),
        "rl_tools": ("ppo", "ppo.yaml", [f"model_path={root}/sft_tools/final", *TOOLS]),
    }
    results: dict[str, dict] = {}
    for arm, (stage, recipe, args) in stages.items():
        r1rl(stage, recipe, [f"output_dir={root / arm}", *common, *args, *a.extra], log)
        evaluated = root / "eval" / arm
        env = TOOLS if arm.endswith("tools") else []
        r1rl(
            "eval",
            "eval.yaml",
            [f"output_dir={evaluated}", f"model_path={root / arm}/final", *common, *env],
            log,
        )
        task = json.loads((evaluated / "eval_results.json").read_text())["tasks"]
        results[arm] = next(iter(task.values()))
    return results


def curves(out: Path, seeds: list[int]) -> dict[int, dict[str, list[float]]]:
    """Per seed: the tool-call and well-formed rates at every PPO step of the tools arm."""
    out_curves = {}
    for seed in seeds:
        rows = [
            json.loads(x) for x in (out / f"s{seed}" / "rl_tools" / "metrics.jsonl").read_text().splitlines()
        ]
        rows = [r for r in rows if "env/tool_call_rate" in r]
        out_curves[seed] = {
            "step": [r["step"] for r in rows],
            "tool_call_rate": [r["env/tool_call_rate"] for r in rows],
            "well_formed": [r["env/well_formed"] for r in rows],
            "reward": [r["reward/mean"] for r in rows],
        }
    return out_curves


def plot(results: dict, rates: dict, path: Path) -> None:
    """Lines: the rates in each PPO step's sampled episodes; markers: greedy held-out rates of the SFT
    model (step 0) and of the RL model (the last step)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key, title in (
        (axes[0], "tool_call_rate", "tool-call rate"),
        (axes[1], "well_formed", "well-formed calls"),
    ):
        for i, (seed, c) in enumerate(sorted(rates.items())):
            color = f"C{i}"
            ax.plot(c["step"], c[key], color=color, label=f"seed {seed}: rollouts (sampled)")
            r = results[seed]
            before, after = r["sft_tools"].get(f"env/{key}"), r["rl_tools"].get(f"env/{key}")
            ax.plot([0, c["step"][-1]], [before, after], "o", color=color, mfc="white", ms=7)
        ax.plot([], [], "o", color="gray", mfc="white", label="held-out, greedy (SFT, then RL)")
        ax.set_title(f"{title} through RL")
        ax.set_xlabel("PPO step")
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--jobs", type=int, default=2, help="seeds at a time, one thread each")
    p.add_argument("--out", type=Path, default=Path("runs/tool_use"))
    p.add_argument(
        "--tool-fraction", type=float, default=0.3, help="SFT rows with tools that are tool traces"
    )
    p.add_argument("--base", type=Path, help="a pretrain run every seed starts from (default: one per seed)")
    p.add_argument("--plot", type=Path, default=Path("docs/experiments/tool_use.png"))
    p.add_argument("extra", nargs="*", help="overrides for every SFT and PPO stage (key=value)")
    p.add_argument("--replot", action="store_true", help="only redraw the plot from --out/results.json")
    a = p.parse_args()
    if a.replot:
        saved = json.loads((a.out / "results.json").read_text())
        plot(saved["results"], saved["curves"], a.plot)
        return
    if a.tool_fraction > 0.3:
        p.error("--tool-fraction: at most 0.3 of the SFT rows may be tool traces")
    with ThreadPoolExecutor(a.jobs) as pool:
        done = dict(zip(a.seeds, pool.map(lambda s: run_seed(s, a.out, a), a.seeds)))
    rates = curves(a.out, a.seeds)
    (a.out / "results.json").write_text(json.dumps({"results": done, "curves": rates}, indent=1))
    print("| arm | " + " | ".join(f"seed {s}" for s in a.seeds) + " | mean |")
    print("|---|" + "---|" * (len(a.seeds) + 1))
    for arm in ARMS:
        accs = [100 * done[s][arm]["accuracy"] for s in a.seeds]
        print(f"| {arm} | " + " | ".join(f"{x:.1f}%" for x in accs) + f" | {sum(accs) / len(accs):.1f}% |")
    for arm in ("sft_tools", "rl_tools"):
        rate = [done[s][arm].get("env/tool_call_rate", 0.0) for s in a.seeds]
        print(f"{arm} tool-call rate: " + ", ".join(f"{x:.2f}" for x in rate))
    margins = {
        "rl_tools - rl": [
            100 * (done[s]["rl_tools"]["accuracy"] - done[s]["rl"]["accuracy"]) for s in a.seeds
        ],
        "rl_tools - sft_tools": [
            100 * (done[s]["rl_tools"]["accuracy"] - done[s]["sft_tools"]["accuracy"]) for s in a.seeds
        ],
    }
    for name, m in margins.items():
        print(f"{name}: " + ", ".join(f"{x:+.1f}" for x in m) + " points")
    plot(done, rates, a.plot)
    print(f"plot: {a.plot}")


if __name__ == "__main__":
    main()
