"""Held-out accuracy and size of a trained model exported in full precision, int8 and int4.

Each variant is written by ``r1rl export`` (int8/int4: torchao weight-only, the routed experts'
3-D weights included) and scored by ``r1rl eval`` on the same held-out rows (greedy), loaded by
plain transformers from the exported folder.

    python bench/quantize.py runs/tiny/ppo --eval recipes/configs/tiny/eval.yaml --out runs/quantize
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from r1rl.compress.export import export
from r1rl.config import EvalConfig, load_config
from r1rl.run.stages import STAGES

VARIANTS = (None, "int8", "int4")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("source", help="a run directory or final/ (an adapter is merged)")
    ap.add_argument("--eval", required=True, type=Path, help="the eval recipe whose held-out rows score each")
    ap.add_argument("--out", type=Path, default=Path("runs/quantize"))
    ap.add_argument("overrides", nargs="*", help="eval key=value overrides (e.g. num_examples=200)")
    args = ap.parse_args()
    rows = []
    for kind in VARIANTS:
        name = kind or "fp32"
        done = export(args.source, args.out / name, quantize=kind)
        over = [f"output_dir={args.out / ('eval-' + name)}", f"model_path={done.path}", "threads=1"]
        run = STAGES["eval"](load_config(EvalConfig, args.eval, [*over, *args.overrides]))
        tasks = json.loads((run.path / "eval_results.json").read_text())["tasks"]
        accuracy = next(iter(tasks.values()))["accuracy"]
        size = {"mb": done.bytes / 1e6, "quantized": done.quantized, "total": done.total}
        rows.append({"variant": name, "accuracy": accuracy, **size})
    (args.out / "results.json").write_text(json.dumps(rows, indent=1))
    print("| weights | held-out accuracy | weights file | parameters stored as integers |\n|---|---|---|---|")
    for r in rows:
        share = f"{100 * r['quantized'] / r['total']:.1f}%"
        print(f"| {r['variant']} | {100 * r['accuracy']:.1f}% | {r['mb']:.2f} MB | {share} |")


if __name__ == "__main__":
    main()
