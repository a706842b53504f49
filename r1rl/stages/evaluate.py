"""The eval stage: score a model (full or adapter) on its task's held-out rows and/or harness tasks.

``tasks: null`` (the default) scores the stage's own task: greedy decoding on its held-out split,
scored by its reward hierarchy (accuracy = the top tier's pass rate, with every tier's pass
rate). A name in ``tasks`` equal to the own task's name means the same; any other name is a task
of the harness (``r1rl.eval``): log-likelihood tasks such as ``sst2`` and ``cola``, and
generation tasks such as ``gsm8k``, ``humaneval``, ``mbpp``, ``scitldr`` and ``cuad``, scored by
the task-tier reward functions. Everything lands in one ``eval_results.json`` (plus
``eval_results.md`` and per-example ``eval_samples.jsonl``, which ``r1rl eval --compare`` pairs up).
"""

from __future__ import annotations

import json
import time

from r1rl.config import EvalConfig
from r1rl.distributed import is_main
from r1rl.eval.harness import evaluate, write_results
from r1rl.eval.heldout import evaluate_heldout
from r1rl.eval.registry import get_task
from r1rl.model import load_merged, load_tokenizer, resolve_model_path
from r1rl.rundir import RunDir
from r1rl.stages.common import hierarchy_of, resolved_rewards, task_of, write_task_info
from r1rl.training import setup


def run(cfg: EvalConfig) -> RunDir:
    """Evaluate ``cfg.model_path``; under a multi-process launcher only the main process evaluates."""
    rd = RunDir(cfg.output_dir)
    if not is_main():
        return rd
    model_path = resolve_model_path(cfg.model_path)
    task = task_of(cfg)
    names = cfg.tasks or [task.name]
    own = task.name in names
    harness_tasks = [t for t in names if t != task.name]
    for name in harness_tasks:
        get_task(name)  # an unknown name fails now, with a did-you-mean
    hierarchy = hierarchy_of(cfg.rewards, task, splits=("test",)) if own else None
    rd.start(cfg.model_copy(update={"rewards": resolved_rewards(cfg.rewards, task)}))
    write_task_info(rd.path, task)
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
    if own:
        t0 = time.perf_counter()
        metrics, samples = evaluate_heldout(
            model, tokenizer, task, hierarchy, n=cfg.num_examples, batch_size=cfg.batch_size,  # type: ignore[arg-type]
            max_new_tokens=cfg.max_new_tokens,
        )  # fmt: skip
        results["tasks"][task.name] = {**metrics, "n": len(samples)}
        results["timing"][task.name] = {"seconds": round(time.perf_counter() - t0, 4)}
        results["samples"][task.name] = [
            {"doc": {k: v for k, v in s.items() if k in ("prompt", "answer")}, "completion": s["completion"],
             "reward": s["reward"], "acc": float(s["correct"])}
            for s in samples
        ]  # fmt: skip
        with (rd.path / "samples.jsonl").open("w") as f:
            for s in samples:
                f.write(json.dumps(s, default=str) + "\n")
    results["config"] = {
        **results.get("config", {}),
        "tasks": names,
        "notes": list(task.notes) if own else [],
    }
    write_results(rd.path, results)
    from r1rl.plots import plot_eval_results  # matplotlib only when plotting

    plot_eval_results(results, rd.plots / "eval_results.png")
    for name, m in results["tasks"].items():
        shown = {k: v for k, v in m.items() if k != "n" and not k.endswith("_stderr")}
        print(f"[eval] {model_path} {name}: " + ", ".join(f"{k}={v:.3f}" for k, v in shown.items()))
    return rd
