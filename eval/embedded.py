"""Held-out evaluation on the embedded arithmetic task.

Greedy decoding on the test split, scored by the same reward hierarchy PPO optimises, so the
benchmark and the reward cannot disagree: ``accuracy`` is the task tier's pass rate.
"""

from __future__ import annotations

from typing import Any

from r1rl.rewards.hierarchy import RewardHierarchy
from tqdm.auto import tqdm

from r1rl.generation import generate
from r1rl.tasks.arithmetic import ArithmeticTask

HELDOUT_SEED = 0  # one fixed held-out set, whatever seed trained the model


def evaluate_arithmetic(
    model: Any,
    tokenizer: Any,
    task: ArithmeticTask,
    hierarchy: RewardHierarchy,
    *,
    n: int = 500,
    batch_size: int = 128,
    max_new_tokens: int = 48,
    progress: bool = True,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Metrics (``accuracy``, ``tier/<tier>/pass_rate``, ``reward/mean``, ``truncated``) and samples."""
    problems = task.problems("test", n, seed=HELDOUT_SEED)
    prompts = [p.prompt for p in problems]
    answers = [p.answer for p in problems]
    completions: list[str] = []
    truncated = 0
    batches = range(0, n, batch_size)
    for i in tqdm(batches, desc="eval", disable=not progress, dynamic_ncols=True):
        g = generate(
            model, tokenizer, prompts[i : i + batch_size], max_new_tokens=max_new_tokens, do_sample=False
        )
        completions += g.texts
        truncated += int(g.truncated.sum())
    res = hierarchy(prompts, completions, answer=answers)
    metrics = {"accuracy": sum(res.passed[hierarchy.tiers[-1].name]) / n}
    for tier in hierarchy.tiers:
        metrics[f"tier/{tier.name}/pass_rate"] = sum(res.passed[tier.name]) / n
    metrics["reward/mean"] = sum(res.rewards) / n
    metrics["truncated"] = truncated / n
    correct = res.passed[hierarchy.tiers[-1].name]
    samples = [
        {"prompt": p, "completion": c, "answer": a, "reward": r, "correct": ok}
        for p, c, a, r, ok in zip(prompts, completions, answers, res.rewards, correct)
    ]
    return metrics, samples
