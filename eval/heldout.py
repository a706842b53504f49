"""Held-out evaluation of a training task: its own test rows, scored by the reward hierarchy it trains on.

Greedy decoding on the first ``n`` held-out records, with the task's stop sequences, scored by
the same hierarchy PPO optimises (every column of the records reaches the rewards), so the
benchmark and the reward cannot disagree: ``accuracy`` is the top tier's pass rate.
"""

from __future__ import annotations

import math
from typing import Any

from r1rl.rewards.hierarchy import RewardHierarchy
from tqdm.auto import tqdm

from r1rl.models.encoding import as_completion, encode_prompts
from r1rl.models.generation import generate
from r1rl.records import Task, first, prompts_of, reward_columns, text_of_prompt


def evaluate_heldout(
    model: Any,
    tokenizer: Any,
    task: Task,
    hierarchy: RewardHierarchy,
    *,
    n: int = 500,
    batch_size: int = 128,
    max_new_tokens: int = 48,
    progress: bool = True,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Metrics (``accuracy``, ``tier/<tier>/pass_rate``, ``reward/mean``, ``truncated``) and per-row samples.

    ``accuracy_stderr`` is the standard error of the mean of the ``n`` pass/fail outcomes.
    """
    records = [dict(r) for r in first(task.records("test"), n)]
    n = len(records)
    system = getattr(task, "system_prompt", None)
    prompts = prompts_of(records)
    ids = encode_prompts(tokenizer, prompts, system)
    completions: list[Any] = []
    truncated = 0
    batches = range(0, n, batch_size)
    for i in tqdm(batches, desc="eval", disable=not progress, dynamic_ncols=True):
        g = generate(
            model, tokenizer, ids[i : i + batch_size], max_new_tokens=max_new_tokens, do_sample=False,
            stop=task.stop,
        )  # fmt: skip
        completions += [as_completion(p, t) for p, t in zip(prompts[i : i + batch_size], g.texts)]
        truncated += int(g.truncated.sum())
    res = hierarchy(prompts, completions, **reward_columns(records))
    top = hierarchy.tiers[-1].name
    correct = res.passed[top]
    p = sum(correct) / n
    metrics = {"accuracy": p, "accuracy_stderr": math.sqrt(p * (1 - p) / max(n - 1, 1))}
    for tier in hierarchy.tiers:
        metrics[f"tier/{tier.name}/pass_rate"] = sum(res.passed[tier.name]) / n
    metrics["reward/mean"] = sum(res.rewards) / n
    metrics["truncated"] = truncated / n
    samples = [
        {"prompt": text_of_prompt(r["prompt"]), "completion": c if isinstance(c, str) else c[-1]["content"],
         **({"answer": r["answer"]} if "answer" in r else {}), "reward": rw, "correct": ok}
        for r, c, rw, ok in zip(records, completions, res.rewards, correct)
    ]  # fmt: skip
    return metrics, samples


def add_heldout(
    results: dict[str, Any],
    task: Task,
    metrics: dict[str, float],
    samples: list[dict[str, Any]],
    seconds: float,
) -> None:
    """Put the own task's held-out metrics and per-row samples into harness-shaped ``results``."""
    results["tasks"][task.name] = {**metrics, "n": len(samples)}
    results["timing"][task.name] = {"seconds": round(seconds, 4)}
    results["samples"][task.name] = [
        {"doc": {k: v for k, v in s.items() if k in ("prompt", "answer")}, "completion": s["completion"],
         "reward": s["reward"], "acc": float(s["correct"])}
        for s in samples
    ]  # fmt: skip
