"""Gradient compression under ``accelerate launch``: bytes all-reduced per step and the loss it costs.

Pretrains the tiny preset (every weight trainable) in 2 CPU processes (gloo), once per
``train.grad_compression`` setting, from the same seed and data. Each worker counts the bytes
handed to ``all_reduce`` from Python, which is where DDP's communication hooks send theirs.
Without a hook DDP all-reduces every gradient in fp32 from C++: 4 bytes × trainable
parameters per step (the ``none`` row). r1rl's own per-step collectives (the global label
count, a finiteness flag, logged metrics: a few bytes) are counted in every row.

    python bench/grad_compression.py [--steps 200] [--modes none fp16 powersgd:1 powersgd:4]

Prints a markdown table; ``--json FILE`` also writes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]


def worker(out: str, overrides: list[str]) -> None:
    """Runs in each launched process: count hook traffic, pretrain, report from rank 0."""
    import torch.distributed as dist

    from r1rl.config import PretrainConfig, load_config
    from r1rl.run.stages import STAGES

    sent = {"bytes": 0, "calls": 0}
    real_all_reduce = dist.all_reduce

    def counting_all_reduce(tensor, *args, **kwargs):
        # DDP's hooks (and their follow-up callbacks) call this; plain DDP all-reduces in C++
        sent["bytes"] += tensor.numel() * tensor.element_size()
        sent["calls"] += 1
        return real_all_reduce(tensor, *args, **kwargs)

    dist.all_reduce = counting_all_reduce

    cfg = load_config(PretrainConfig, ROOT / "recipes/configs/tiny/pretrain.yaml", overrides)
    t0 = time.perf_counter()
    rd = STAGES["pretrain"](cfg)
    seconds = time.perf_counter() - t0
    if int(os.environ.get("RANK", "0")) == 0:
        from transformers import AutoModelForCausalLM

        rows = [json.loads(line) for line in (rd.path / "metrics.jsonl").read_text().splitlines()]
        trainable = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(rd.final).parameters())
        losses = [r["loss"] for r in rows if "loss" in r]
        step_s = [r["perf/step_s"] for r in rows if "perf/step_s" in r]
        val = [r["val/loss"] for r in rows if "val/loss" in r]
        Path(out).write_text(
            json.dumps({"python_bytes": sent["bytes"], "python_calls": sent["calls"], "losses": losses,
                        "seconds": seconds, "steps": cfg.train.steps, "trainable": trainable,
                        "step_s": sum(step_s) / len(step_s), "val_loss": val[-1]})
        )  # fmt: skip


def run_mode(mode: str, steps: int, tmp: Path, start_iter: int) -> dict:
    kind, _, rank = mode.partition(":")
    overrides = [
        f"output_dir={tmp / mode.replace(':', '-')}", f"steps={steps}", "log.every=10",
        "checkpoint.every=0", "batch_size=16", "threads=1", "data.num_problems=20000",
        "tokenizer.num_texts=5000", "data.val_fraction=0.05", f"comm.grad_compression={kind}",
    ]  # fmt: skip
    if kind == "powersgd":
        overrides += [f"comm.powersgd_rank={rank or 4}", f"comm.powersgd_start_iter={start_iter}"]
    out = tmp / f"{mode.replace(':', '-')}.json"
    from r1rl.parallel.distributed import cpu_launch

    cmd, env = cpu_launch([__file__, "--worker", str(out), *overrides])
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{res.stderr[-3000:]}")
    return json.loads(out.read_text())


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3:])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--modes", nargs="+", default=["none", "fp16", "powersgd:1", "powersgd:4"])
    ap.add_argument("--start-iter", type=int, default=10, help="PowerSGD: plain all-reduce steps first")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes:
            print(f"[bench] {mode} …", file=sys.stderr)
            results[mode] = run_mode(mode, args.steps, Path(tmp), args.start_iter)
    n = next(iter(results.values()))["trainable"]
    plain = 4 * n
    base = results.get("none")
    print(f"tiny preset, {n / 1e6:.2f}M trainable parameters, 2 CPU processes (gloo), {args.steps} steps\n")
    print(
        "| compression | bytes / step / process | vs fp32 | train loss (last 5 logs) | val loss "
        "| Δ val loss | s / step |"
    )
    print("|---|---|---|---|---|---|---|")
    for mode, r in results.items():
        # without a hook, DDP's fp32 all-reduce (C++) plus r1rl's few bytes of bookkeeping (Python)
        per_step = (plain if mode == "none" else 0) + r["python_bytes"] / r["steps"]
        train = sum(r["losses"][-5:]) / len(r["losses"][-5:])
        delta = f"{r['val_loss'] - base['val_loss']:+.4f}" if base is not None else "—"
        print(
            f"| {mode} | {per_step / 1e6:.2f} MB | {per_step / plain:.3f}× | {train:.4f} "
            f"| {r['val_loss']:.4f} | {delta} | {r['step_s']:.3f} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"trainable": n, "results": results}, indent=2))


if __name__ == "__main__":
    main()
