"""The eval stage: score a model (full or adapter) on the embedded task and/or harness tasks.

``tasks: [arithmetic]`` (the default) is greedy held-out accuracy and tier pass rates on the
embedded task; any other name is a task of the harness (``r1rl.eval``): log-likelihood tasks
such as ``sst2`` and ``cola``, and generation tasks such as ``gsm8k``, ``humaneval``, ``mbpp``,
``scitldr`` and ``cuad``, scored by the task-tier reward functions. Everything lands in one
``eval_results.json`` (plus ``eval_results.md`` and per-example ``eval_samples.jsonl``, which
``r1rl eval --compare`` pairs up).
"""

from __future__ import annotations

import json
import math
import time

from r1rl.config import EvalConfig
from r1rl.distributed import is_main
from r1rl.eval.embedded import evaluate_arithmetic
from r1rl.eval.harness import evaluate, write_results
from r1rl.model import load_merged, load_tokenizer, resolve_model_path
from r1rl.rewards.hierarchy import RewardHierarchy
from r1rl.rundir import RunDir
from r1rl.tasks.arithmetic import ArithmeticTask
from r1rl.training import setup


def run(cfg: EvalConfig) -> RunDir:
    """Evaluate ``cfg.model_path``; under a multi-process launcher only the main process evaluates."""
    rd = RunDir(cfg.output_dir)
    if not is_main():
        return rd
    model_path = resolve_model_path(cfg.model_path)
    hierarchy = RewardHierarchy.from_config(cfg.rewards)
    harness_tasks = [t for t in cfg.tasks if t != "arithmetic"]
    rd.start(cfg)
    setup(cfg.seed, cfg.threads)
    model, tokenizer = load_merged(model_path), load_tokenizer(model_path)
    results = {"model": model_path, "tasks": {}, "config": {}, "timing": {}, "samples": {}}
    if harness_tasks:
        results = evaluate(
            model, tokenizer, harness_tasks, limit=cfg.limit, num_fewshot=cfg.num_fewshot,
            batch_size=cfg.batch_size, seed=cfg.seed, fewshot_split=cfg.fewshot_split,
            data_dir=cfg.data_dir, progress=True,
        )  # fmt: skip
        results["model"] = model_path
    if "arithmetic" in cfg.tasks:
        t0 = time.perf_counter()
        metrics, samples = evaluate_arithmetic(
            model, tokenizer, ArithmeticTask(**cfg.task.model_dump()), hierarchy,
            n=cfg.num_examples, batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens,
        )  # fmt: skip
        p, n = metrics["accuracy"], cfg.num_examples
        stderr = math.sqrt(p * (1 - p) / max(n - 1, 1))  # of the mean of n Bernoulli outcomes
        results["tasks"]["arithmetic"] = {**metrics, "accuracy_stderr": stderr, "n": n}
        results["timing"]["arithmetic"] = {"seconds": round(time.perf_counter() - t0, 4)}
        results["samples"]["arithmetic"] = [
            {"doc": {"prompt": s["prompt"], "answer": s["answer"]}, "completion": s["completion"],
             "reward": s["reward"], "acc": float(s["correct"])}
            for s in samples
        ]  # fmt: skip
        with (rd.path / "samples.jsonl").open("w") as f:
            for s in samples:
                f.write(json.dumps(s) + "\n")
    results["config"] = {**results.get("config", {}), "tasks": cfg.tasks}
    write_results(rd.path, results)
    from r1rl.plots import plot_eval_results  # matplotlib only when plotting

    plot_eval_results(results, rd.plots / "eval_results.png")
    for task, m in results["tasks"].items():
        shown = {k: v for k, v in m.items() if k != "n" and not k.endswith("_stderr")}
        print(f"[eval] {model_path} {task}: " + ", ".join(f"{k}={v:.3f}" for k, v in shown.items()))
    return rd
