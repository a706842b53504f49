"""The eval stage: score a model (full or adapter) on the held-out embedded task."""

from __future__ import annotations

import json
import time

from r1rl.config import EvalConfig
from r1rl.eval.embedded import evaluate_arithmetic
from r1rl.model import load_merged, load_tokenizer, resolve_model_path
from r1rl.rewards.hierarchy import RewardHierarchy
from r1rl.rundir import RunDir, atomic_write_text
from r1rl.tasks.arithmetic import ArithmeticTask
from r1rl.training import setup


def run(cfg: EvalConfig) -> RunDir:
    rd = RunDir(cfg.output_dir)
    model_path = resolve_model_path(cfg.model_path)
    hierarchy = RewardHierarchy.from_config(cfg.rewards)
    rd.start(cfg)
    setup(cfg.seed, cfg.threads)
    model, tokenizer = load_merged(model_path), load_tokenizer(model_path)
    t0 = time.perf_counter()
    metrics, samples = evaluate_arithmetic(
        model,
        tokenizer,
        ArithmeticTask(**cfg.task.model_dump()),
        hierarchy,
        n=cfg.num_examples,
        batch_size=cfg.batch_size,
        max_new_tokens=cfg.max_new_tokens,
    )
    results = {
        "model": model_path,
        "tasks": {"arithmetic": {**metrics, "n": cfg.num_examples}},
        "time_s": round(time.perf_counter() - t0, 2),
    }
    atomic_write_text(rd.eval_results, json.dumps(results, indent=2))
    with (rd.path / "samples.jsonl").open("w") as f:
        for s in samples:
            f.write(json.dumps(s) + "\n")
    print(f"[eval] {model_path}: " + ", ".join(f"{k}={v:.3f}" for k, v in metrics.items()))
    return rd
