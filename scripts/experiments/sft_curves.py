"""Held-out accuracy through SFT, one line per run: where SFT stops rising.

    python scripts/experiments/sft_curves.py runs/sftplateau/s0-1600 runs/gcd-curve-s3 \
        --labels "arithmetic, seed 0" "gcd, seed 3" --out docs/experiments/sft_plateau.png

Each run is an SFT run directory with a periodic held-out eval (``log.eval_every``); its pretrained
model's accuracy, when ``--start`` gives it, is drawn at step 0.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from r1rl.rundir import RunDir


def curve(run: Path) -> list[tuple[int, float]]:
    return [(r["step"], 100 * r["eval/accuracy"]) for r in RunDir(run).read_metrics() if "eval/accuracy" in r]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--labels", nargs="+", default=None)
    ap.add_argument("--start", nargs="+", type=float, default=None, help="each run's pretrained accuracy, %%")
    ap.add_argument("--out", type=Path, default=Path("sft_curves.png"))
    a = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for i, run in enumerate(a.runs):
        points = curve(run)
        if a.start:
            points = [(0, a.start[i]), *points]
        label = a.labels[i] if a.labels else str(run)
        ax.plot(*zip(*points), marker="o", label=label)
        print(label, " ".join(f"{s}:{v:.1f}" for s, v in points))
    ax.set(xlabel="SFT step (batch 32, 2,000 rows)", ylabel="held-out accuracy, %", ylim=(0, 100))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(a.out, dpi=120)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
