"""Recipe: evaluation — a model's held-out accuracy on its task, and benchmarks of the harness.

``tasks: null`` (the default) scores the stage's own task: greedy decoding on its held-out rows,
scored by its reward hierarchy (accuracy = the top tier's pass rate, with every tier's pass
rate). A name in ``tasks`` equal to the own task's means the same; any other name is a task of
the harness (``r1rl.eval``): log-likelihood tasks such as ``sst2`` and ``cola``, and generation
tasks such as ``gsm8k``, ``humaneval``, ``mbpp``, ``scitldr`` and ``cuad``. Everything lands in
one ``eval_results.json`` (plus ``eval_results.md`` and ``eval_samples.jsonl``, which
``r1rl eval --compare`` pairs up). Under a launcher only the main process evaluates.

The CLI's ``r1rl eval CONFIG.yaml`` runs :func:`run`; ``r1rl cp eval my_eval.py`` copies it to edit.
"""

from __future__ import annotations

import json
import time

from r1rl.eval.harness import evaluate, print_results, write_results
from r1rl.eval.heldout import add_heldout, evaluate_heldout
from r1rl.eval.registry import get_task

from r1rl.config import EvalConfig
from r1rl.envs.episodes import EnvSpec
from r1rl.models.factory import load_merged, load_tokenizer, resolve_model_path
from r1rl.parallel.distributed import is_main, resolve_device
from r1rl.report.plots import plot_eval_results
from r1rl.rundir import RunDir
from r1rl.train.common import setup
from r1rl.train.prepare import hierarchy_of, task_of
from r1rl.train.stage import write_start


def run(cfg: EvalConfig) -> RunDir:
    rd = RunDir(cfg.output_dir)
    if not is_main():
        return rd
    model_path = resolve_model_path(cfg.model_path)
    task = task_of(cfg)
    names = cfg.tasks or [task.name]
    own, harness = task.name in names, [t for t in names if t != task.name]
    for name in harness:
        get_task(name)  # an unknown name fails now, with a did-you-mean
    device = resolve_device(cfg.device)
    hierarchy = hierarchy_of(cfg.rewards, task, splits=("test",), device=str(device)) if own else None
    env = EnvSpec.from_config(cfg.env) if cfg.env.enabled else None  # multi-turn episodes, if any
    write_start(rd, cfg, task)  # config.yaml and task.json
    setup(cfg.seed, cfg.threads)
    model, tokenizer = load_merged(model_path).to(device), load_tokenizer(model_path)
    results = evaluate(
        model, tokenizer, harness, limit=cfg.limit, num_fewshot=cfg.num_fewshot, batch_size=cfg.batch_size,
        seed=cfg.seed, fewshot_split=cfg.fewshot_split, data_dir=cfg.data_dir, progress=True,
    )  # fmt: skip
    results["model"] = model_path
    if own:
        t0 = time.perf_counter()
        metrics, samples = evaluate_heldout(
            model, tokenizer, task, hierarchy, n=cfg.num_examples, batch_size=cfg.batch_size,  # type: ignore[arg-type]
            max_new_tokens=cfg.max_new_tokens, env=env,
        )  # fmt: skip
        add_heldout(results, task, metrics, samples, time.perf_counter() - t0)
        with (rd.path / "samples.jsonl").open("w") as f:
            f.writelines(json.dumps(s, default=str) + "\n" for s in samples)
    results["config"] = {**results["config"], "tasks": names, "notes": list(task.notes) if own else []}
    write_results(rd.path, results)
    plot_eval_results(results, rd.plots / "eval_results.png")
    print_results(results, f"[eval] {model_path}")
    return rd


if __name__ == "__main__":
    from r1rl.run.cli import recipe_main

    raise SystemExit(recipe_main(run, EvalConfig))
