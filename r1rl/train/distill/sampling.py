"""Rejection sampling: the teacher's ``k`` completions per prompt, kept when they pass the reward tiers.

DeepSeek-R1 (DeepSeek-AI 2025, §2.3.3 and §2.4) builds its SFT and distillation data this way:
sample several responses per prompt from the RL checkpoint, keep only the correct ones, and
fine-tune smaller models on them with no RL of their own. Here:

- **sample** — ``k`` completions per prompt with :func:`r1rl.models.generation.generate` (the task's stop
  sequences end one; a chat prompt gets its completion back as an assistant message). Batch ``b``
  of prompts is sampled under its own seed (``seed``, ``b``) inside a forked RNG, so the traces
  do not depend on the number of processes (batch ``b`` goes to rank ``b mod world``) and the
  stage's own random stream is untouched;
- **accept** — the hierarchy scores each completion with every column of its row as keyword
  arguments; a completion is accepted at tier ``k`` when it passes that tier and every tier below
  (:func:`accepted_through`); the stage keeps those accepted at ``accept_tier`` (the top tier: every tier);
- **dedup** — a (prompt, completion) pair seen before is dropped, the first one kept.

With ``env`` tools or an environment, each sample is a multi-turn episode
(:mod:`r1rl.envs.episodes`) and its trace the episode's messages, tool calls and results included: the
student trains on the assistant turns and reads the tool results as context.

The counts (``distill/sampled``, ``distill/accepted/<tier>``, ``distill/accepted``,
``distill/kept`` …) go to ``metrics.jsonl`` at step 0; the kept traces to ``traces.jsonl``, which
a resumed run reads instead of sampling again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from r1rl.config import SamplingConfig
from r1rl.envs.episodes import EnvSpec, as_messages, run_episodes
from r1rl.errors import UserError
from r1rl.models.encoding import as_completion, encode_prompts
from r1rl.models.generation import Generation, generate
from r1rl.parallel.distributed import Parallel
from r1rl.records import Record, Task, columns_of, prompts_of, reward_columns, rows
from r1rl.rewards.hierarchy import RewardHierarchy
from r1rl.rundir import RunDir, atomic_write_text, read_jsonl

TRACES, STATS = "traces.jsonl", "distill_stats.json"


@dataclass
class Traces:
    records: list[Record]  # the kept traces: {"prompt", "completion", "reward", **the row's columns}
    counts: dict[str, float]  # the distill/* counts logged at step 0


def accepted_through(passed: dict[str, list[bool]]) -> dict[str, list[bool]]:
    """Per tier (lowest first), whether each sample passes it and every tier below.

    >>> accepted_through({"syntax": [True, True, False], "task": [True, False, True]})
    {'syntax': [True, True, False], 'task': [True, False, False]}
    """
    out: dict[str, list[bool]] = {}
    below: list[bool] | None = None
    for tier, flags in passed.items():
        below = list(flags) if below is None else [b and f for b, f in zip(below, flags)]
        out[tier] = below
    return out


def dedup(records: Sequence[Record]) -> list[Record]:
    """``records`` without repeated (prompt, completion) pairs, the first of each kept, in order.

    >>> [r["completion"] for r in dedup([{"prompt": "1+1=", "completion": "2"}] * 2 + [
    ...     {"prompt": "1+2=", "completion": "2"}])]
    ['2', '2']
    """
    seen: set[tuple[str, str]] = set()
    out = []
    for r in records:
        key = (json.dumps(r["prompt"], sort_keys=True), json.dumps(r["completion"], sort_keys=True))
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def accept_tier(hierarchy: RewardHierarchy, name: str | None) -> str:
    """The tier that gates acceptance: ``name``, or the top tier; an unknown name lists the tiers."""
    tiers = [t.name for t in hierarchy.tiers]
    if name is None:
        return tiers[-1]
    if name not in tiers:
        raise UserError(
            f"sampling.accept_tier: no tier {name!r}; the hierarchy's tiers are {', '.join(tiers)}"
        )
    return name


@dataclass(frozen=True)
class Teacher:
    """The model that samples the traces, its tokenizer, and the task that prompts it (stops, system)."""

    model: Any
    tokenizer: Any
    task: Task
    env: EnvSpec | None = None  # multi-turn: a trace is a whole episode (its tool calls and results)


def sample_traces(
    teacher: Teacher, records: Sequence[Record], hierarchy: RewardHierarchy, cfg: SamplingConfig, seed: int,
    par: Parallel | None = None,
) -> Traces:  # fmt: skip
    """The kept traces of ``records`` (each sampled ``cfg.samples_per_prompt`` times) and the counts.

    Every process takes part under a launcher (its batches, then one gather); all get the same result.
    """
    par = par or Parallel()
    tier = accept_tier(hierarchy, cfg.accept_tier)
    starts = list(range(0, len(records), cfg.batch_size))
    mine = [b for b in range(len(starts)) if b % par.world == par.rank]
    bar = tqdm(mine, desc="distill: sampling", unit="batch", dynamic_ncols=True, disable=not par.is_main)
    done: dict[int, tuple[list[Record], dict[str, list[bool]]]] = {}
    for b in bar:
        batch = rows(records, range(starts[b], min(starts[b] + cfg.batch_size, len(records))))
        with torch.random.fork_rng():
            torch.manual_seed(seed * 1_000_003 + b)
            done[b] = _sample_batch(teacher, batch, hierarchy, cfg)
        n = sum(len(d[0]) for d in done.values())
        bar.set_postfix(accepted=f"{sum(sum(d[1][tier]) for d in done.values()) / max(n, 1):.3f}")
    merged: dict[int, Any] = {}
    for part in par.gather_objects(done):
        merged.update(part)
    samples = [s for b in sorted(merged) for s in merged[b][0]]
    through = {t.name: [f for b in sorted(merged) for f in merged[b][1][t.name]] for t in hierarchy.tiers}
    return _keep(samples, through, tier, len(records))


def _sample_batch(
    teacher: Teacher, batch: list[Record], hierarchy: RewardHierarchy, cfg: SamplingConfig
) -> tuple[list[Record], dict[str, list[bool]]]:
    """One batch's samples (prompt-major, ``k`` per prompt) and their acceptance per tier."""
    k = cfg.samples_per_prompt
    prompts = prompts_of(batch, k)
    tokenizer, task = teacher.tokenizer, teacher.task
    system = getattr(task, "system_prompt", None)

    def complete(ids: list[list[int]], max_new_tokens: int) -> Generation:
        return generate(
            teacher.model, tokenizer, ids, max_new_tokens=max_new_tokens, do_sample=True,
            temperature=cfg.temperature, top_p=cfg.top_p, stop=task.stop,
        )  # fmt: skip

    row_of = [r for r in batch for _ in range(k)]
    if teacher.env is not None:  # an episode: the trace is its messages, the prompt a conversation
        episodes = run_episodes(complete, tokenizer, teacher.env, prompts, row_of, cfg.max_new_tokens, system)
        completions: list[Any] = list(episodes.conversations)
        prompts, traces = [as_messages(p) for p in prompts], completions
        extra = (
            {"env_reward": episodes.env_rewards} if any(x is not None for x in episodes.env_rewards) else {}
        )
    else:
        g = complete(encode_prompts(tokenizer, prompts, system), cfg.max_new_tokens)
        completions, traces, extra = [as_completion(p, t) for p, t in zip(prompts, g.texts)], g.texts, {}
    res = hierarchy(prompts, completions, **reward_columns(batch, k), **extra)
    columns = columns_of(batch)
    samples = [
        {**{c: row[c] for c in columns}, "prompt": p, "completion": trace, "reward": reward}
        for p, trace, reward, row in zip(prompts, traces, res.rewards, row_of)
    ]
    return samples, accepted_through(res.passed)


def _keep(samples: list[Record], through: dict[str, list[bool]], tier: str, n_prompts: int) -> Traces:
    accepted = [s for s, ok in zip(samples, through[tier]) if ok]
    kept = dedup(accepted)
    counts = {
        "distill/prompts": float(n_prompts),
        "distill/sampled": float(len(samples)),
        **{f"distill/accepted/{t}": float(sum(flags)) for t, flags in through.items()},
        "distill/accepted": float(len(accepted)),
        "distill/acceptance_rate": len(accepted) / max(len(samples), 1),
        "distill/kept": float(len(kept)),
        "distill/prompts_kept": float(len({json.dumps(r["prompt"], sort_keys=True) for r in kept})),
    }
    return Traces(kept, counts)


def cached_traces(run: RunDir, sample: Callable[[], Traces], par: Parallel | None = None) -> Traces:
    """The run's traces: read from ``traces.jsonl`` when an earlier attempt wrote them, else sampled
    (and written, by the main process); the counts are logged at step 0 once."""
    par = par or Parallel()
    stats = run.path / STATS
    if par.all_true(stats.is_file()):  # written last: its presence means the traces are complete
        traces = Traces(read_jsonl(run.path / TRACES), json.loads(stats.read_text()))
    else:
        traces = sample()
        if par.is_main:
            text = "".join(json.dumps(r, default=str) + "\n" for r in traces.records)
            atomic_write_text(run.path / TRACES, text)
            atomic_write_text(stats, json.dumps(traces.counts, indent=2) + "\n")
    if par.is_main and not any(r.get("step") == 0 for r in run.read_metrics()):
        run.log(0, "distill", traces.counts)
    if not traces.records:
        raise UserError(
            f"distill: no trace of the {int(traces.counts['distill/sampled'])} sampled passed the tiers; "
            "sample more (sampling.samples_per_prompt, sampling.num_prompts) "
            "or gate on a lower sampling.accept_tier"
        )
    return traces
