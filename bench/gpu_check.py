"""The GPU check: r1rl on one CUDA device in one short call (about 4 minutes), nothing downloaded.

Each row is appended to ``--out`` (a Markdown table) the moment it is measured, so a run cut
short still leaves what it measured:

1. the device and library versions;
2. the micro pipeline end to end (``r1rl run recipes/configs/micro/pipeline.yaml device=cuda``):
   wall time, held-out accuracy, peak GPU memory;
3. PPO steps on a randomly initialised ``--preset`` model (``base``: 82M parameters; the micro
   pipeline's tokenizer) with a bf16 base, once per rollout engine: samples/s and step time
   (medians over the steps after the first), peak GPU memory and the engine's log-prob mismatch
   against the training pass (``rollout/logprob_diff``);
4. peak GPU memory of one PPO update, r1rl's shared bf16 base against three full bf16 models
   (``bench/memory.py``).

The stages run as subprocesses in which ``datasets`` and ``trl`` cannot be imported, as on a
machine that has neither. ``--device cpu --preset micro --steps 2`` runs the same script on a CPU
in about a minute (the figures then mean nothing; it checks the script).

    python bench/gpu_check.py --out gpu_check.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]
MICRO = ROOT / "recipes" / "configs" / "micro"
ENGINES = ("generate", "continuous_batching")
BLOCKED = ("datasets", "trl")


class Table:
    """A Markdown table on disk, one row appended (and flushed) at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.write_text("| check | result |\n|---|---|\n")

    def row(self, check: str, result: str) -> None:
        with self.path.open("a") as f:
            f.write(f"| {check} | {result} |\n")
        print(f"{check}: {result}", flush=True)


def _blocked_env(work: Path) -> dict[str, str]:
    """The environment for the stages: ``datasets`` and ``trl`` raise ImportError when imported."""
    shadow = work / "blocked"
    for name in BLOCKED:
        (shadow / name).mkdir(parents=True, exist_ok=True)
        (shadow / name / "__init__.py").write_text(f"raise ImportError('{name} is not installed here')\n")
    path = os.pathsep.join([str(shadow), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def _r1rl(env: dict[str, str], *args: str) -> float:
    """Run ``r1rl ARGS`` and return its wall time; a failure ends the check with its stderr."""
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "r1rl", *args], env=env, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"r1rl {' '.join(args[:2])} failed:\n{res.stderr[-4000:]}")
    return time.perf_counter() - t0


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]


def _peak(rows: list[dict]) -> str:
    peaks = [r["perf/gpu_peak_mem_gb"] for r in rows if "perf/gpu_peak_mem_gb" in r]
    return f"{max(peaks):.2f} GiB" if peaks else "n/a (not on a GPU)"


def environment(table: Table, device: str) -> None:
    import torch
    import transformers

    name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "CPU"
    versions = f"torch {torch.__version__}, transformers {transformers.__version__}"
    table.row("device", f"{name}; {versions}; CUDA {torch.version.cuda}")


def micro_pipeline(table: Table, env: dict[str, str], work: Path, device: str) -> Path:
    out = work / "micro"
    seconds = _r1rl(env, "run", str(MICRO / "pipeline.yaml"), f"output_dir={out}", f"device={device}")
    stages = json.loads((out / "summary.json").read_text())["stages"]
    accuracy = " / ".join(f"{s} {v['eval']['accuracy']:.3f}" for s, v in stages.items() if "eval" in v)
    peak = _peak(_metrics(out / "ppo"))
    table.row("micro pipeline end to end", f"{seconds:.0f} s; held-out accuracy {accuracy}; PPO peak {peak}")
    return out / "pretrain" / "final"


def base_model(pretrained: Path, work: Path, preset: str) -> Path:
    """A randomly initialised ``preset`` model with the micro pipeline's tokenizer, saved as a checkpoint."""
    from r1rl.models.factory import build_config, build_model, load_tokenizer

    tok = load_tokenizer(str(pretrained))
    cfg = build_config(preset, len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    out = work / preset
    build_model(cfg, seed=0).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def engine_rows(table: Table, env: dict[str, str], model: Path, work: Path, a: argparse.Namespace) -> None:
    for engine in ENGINES:
        out = work / f"ppo-{engine}"
        args = [
            f"model_path={model}", f"output_dir={out}", f"steps={a.steps}", f"device={a.device}",
            f"rollout.engine={engine}", "base_dtype=bfloat16", "compute.bf16=true",
            "rollout.prompts_per_step=16", "rollout.samples_per_prompt=4", "rollout.max_new_tokens=64",
            "checkpoint.every=0",
        ]  # fmt: skip
        _r1rl(env, "ppo", str(MICRO / "ppo.yaml"), *args)
        rows = _metrics(out)
        later = rows[1:] or rows  # the first step pays for compilation and warm-up
        sps = statistics.median(r["perf/samples_per_s"] for r in later)
        step = statistics.median(r["perf/step_s"] for r in later)
        diffs = [r["rollout/logprob_diff"] for r in rows if "rollout/logprob_diff" in r]
        mismatch = f"{statistics.mean(diffs):.2e}" if diffs else "not logged"
        table.row(
            f"PPO, {a.preset} preset, bf16 base, engine {engine}",
            f"{sps:.1f} samples/s; {step:.2f} s/step; peak {_peak(rows)}; logprob mismatch {mismatch}",
        )


def memory_row(table: Table, env: dict[str, str], a: argparse.Namespace) -> None:
    cmd = [sys.executable, str(ROOT / "bench" / "memory.py"), "--preset", a.preset, "--device", a.device]
    res = subprocess.run([*cmd, "--dtype", "bfloat16"], env=env, capture_output=True, text=True)
    lines = [x for x in res.stdout.splitlines() if x.startswith(("| shared", "| naive", "naive /"))]
    if res.returncode != 0 or len(lines) != 3:
        sys.exit(f"bench/memory.py failed:\n{res.stderr[-4000:]}")
    table.row(f"one PPO update, {a.preset} preset, bf16", "; ".join(x.strip("| ") for x in lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="gpu_check.md", help="the Markdown table, appended row by row")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--preset", default="base", help="model preset of the PPO and memory rows")
    ap.add_argument("--steps", type=int, default=4, help="PPO steps per rollout engine")
    a = ap.parse_args()
    if a.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            sys.exit("bench/gpu_check.py: torch sees no GPU (use --device cpu to check the script itself)")
    table = Table(Path(a.out))
    with tempfile.TemporaryDirectory(prefix="r1rl-gpu-check-") as tmp:
        work = Path(tmp)
        env = _blocked_env(work)
        environment(table, a.device)
        pretrained = micro_pipeline(table, env, work, a.device)
        engine_rows(table, env, base_model(pretrained, work, a.preset), work, a)
        memory_row(table, env, a)
    print(f"table: {a.out}")


if __name__ == "__main__":
    main()
