"""Held-out evaluation of a training task: its own test rows, scored by the reward hierarchy it trains on.

Greedy decoding on the first ``n`` held-out records, with the task's stop sequences, scored by
the same hierarchy PPO optimises (every column of the records reaches the rewards), so the
benchmark and the reward cannot disagree: ``accuracy`` is the top tier's pass rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from r1rl.rewards.hierarchy import RewardHierarchy
from r1rl.rewards.watch import check_eval_failures, failed_samples
from tqdm.auto import tqdm

from r1rl.envs.episodes import EnvSpec, run_episodes
from r1rl.models.encoding import as_completion, encode_prompts
from r1rl.models.generation import Generation, generate
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
    env: EnvSpec | None = None,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Metrics (``accuracy``, ``tier/<tier>/pass_rate``, ``reward/mean``, ``truncated``) and per-row samples.

    A tier's failed samples are counted as ``tier/<tier>/errors`` and ``tier/<tier>/timeouts`` (when
    there are any) and shown on the progress bar; a tier that failed on every sample raises
    :class:`~r1rl.errors.RewardFailedError` (the evaluation is one step of
    :mod:`r1rl.rewards.watch`). A reward that breaks its contract raises on its first call.

    ``accuracy_stderr`` is the standard error of the mean of the ``n`` pass/fail outcomes. With
    ``env``, each row is a multi-turn episode (``max_new_tokens`` per turn) and the episodes'
    ``env/*`` metrics are added.
    """
    records = [dict(r) for r in first(task.records("test"), n)]
    n = len(records)
    prompts = prompts_of(records)
    completions: list[Any] = []
    columns: dict[str, list[Any]] = {}
    env_metrics: dict[str, float] = {}
    truncated = 0
    bar = tqdm(total=math.ceil(n / batch_size), desc="eval", disable=not progress, dynamic_ncols=True)
    for i in range(0, n, batch_size):
        part = _greedy(model, tokenizer, task, records[i : i + batch_size], max_new_tokens, env)
        completions += part.completions
        truncated += part.truncated
        for name, values in part.columns.items():
            columns.setdefault(name, []).extend(values)
        for name, mean in part.metrics.items():  # env/* metrics: means over every episode
            env_metrics[name] = env_metrics.get(name, 0.0) + mean * len(part.completions) / n
        bar.update()
    if all(x is None for x in columns.get("env_reward", [None])):
        columns.pop("env_reward", None)
    try:  # the bar ends its line before any error
        res = hierarchy(prompts, completions, **reward_columns(records), **columns)
        if failed_samples(res):
            bar.set_postfix(reward_errors=failed_samples(res))  # the bar's last line says so
    finally:
        bar.close()
    check_eval_failures(res, hierarchy)  # a tier that failed on every sample stops the eval
    top = hierarchy.tiers[-1].name
    correct = res.passed[top]
    p = sum(correct) / n
    metrics = {"accuracy": p, "accuracy_stderr": math.sqrt(p * (1 - p) / max(n - 1, 1))}
    for tier in hierarchy.tiers:
        metrics[f"tier/{tier.name}/pass_rate"] = sum(res.passed[tier.name]) / n
        for kind, counts in (("errors", res.errors), ("timeouts", res.timeouts)):  # failed samples, if any
            if counts.get(tier.name):
                metrics[f"tier/{tier.name}/{kind}"] = float(counts[tier.name])
    metrics["reward/mean"] = sum(res.rewards) / n
    metrics["truncated"] = truncated / n
    metrics.update(env_metrics)
    samples = [
        {"prompt": text_of_prompt(r["prompt"]), "completion": c if isinstance(c, str) else c[-1]["content"],
         **({"answer": r["answer"]} if "answer" in r else {}), "reward": rw, "correct": ok,
         **({"episode": c} if env is not None else {})}
        for r, c, rw, ok in zip(records, completions, res.rewards, correct)
    ]  # fmt: skip
    return metrics, samples


@dataclass
class _Batch:
    completions: list[Any]  # what the rewards receive: text, an assistant message, or an episode's messages
    truncated: int
    columns: dict[str, list[Any]] = field(default_factory=dict)  # env_reward, in multi-turn episodes
    metrics: dict[str, float] = field(default_factory=dict)  # the episodes' env/* metrics


def _greedy(
    model: Any, tokenizer: Any, task: Task, records: list[dict[str, Any]], max_new_tokens: int,
    env: EnvSpec | None,
) -> _Batch:  # fmt: skip
    """Greedy completions (or, with ``env``, episodes) of one batch of records."""
    system = getattr(task, "system_prompt", None)
    prompts = prompts_of(records)

    def complete(ids: list[list[int]], k: int) -> Generation:
        return generate(model, tokenizer, ids, max_new_tokens=k, do_sample=False, stop=task.stop)

    if env is not None:
        episodes = run_episodes(complete, tokenizer, env, prompts, records, max_new_tokens, system)
        truncated = int(episodes.generation.truncated.sum())
        columns = {"env_reward": list(episodes.env_rewards)}
        return _Batch(list(episodes.conversations), truncated, columns, episodes.metrics)
    g = complete(encode_prompts(tokenizer, prompts, system), max_new_tokens)
    return _Batch([as_completion(p, t) for p, t in zip(prompts, g.texts)], int(g.truncated.sum()))


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
