"""The PPO loop, phase by phase: generate → reward → log-probs → advantages → update → log → checkpoint.

Notation: ``B`` sequences per step (prompts × samples), ``P`` prompt tokens, ``T`` completion tokens.

Implementation details that matter (each pinned by a test in ``tests/train/ppo``):

1. The reward is a sequence score from the reward hierarchy, placed on the last real
   completion token; every token also pays −β·KL(π‖π_ref) (Ziegler et al. 2019).
2. GAE with γ, λ over completion tokens only; the value after the last real token is 0.
3. Advantages are whitened over the batch's real tokens (optional).
4. ``old_logprobs`` and ``values`` are computed once per rollout, before any update (skipped
   for the policy when one on-policy step makes them equal to the update's own), with the
   same left-padded layout and position ids that generation used.
5. The policy loss is the clipped surrogate; the critic loss is the clipped value loss; both
   are reduced by one aggregator (``loss_agg_mode``).
6. Policy and critic are two LoRA adapters on one frozen base with separate optimizers; the
   reference is the base with adapters disabled.
7. A completion that never emits EOS (truncated) is scored as written; its last token
   still receives the sppo. A completion that ends on one of the task's stop sequences is
   scored without it (as the benchmark scores it) and its mask ends with the stop sequence.
8. Prompts are the task's training rows, drawn without replacement and reshuffled every epoch
   by a seeded sampler saved in the checkpoint; every other column of a row reaches every reward.

The phases are :func:`r1rl.train.ppo.rollout.rollout` (generate, reward, logprobs, advantages) and
:func:`r1rl.train.ppo.update.update`; each reads one :class:`~r1rl.train.ppo.context.PPOContext`
and is timed and logged as ``perf/<phase>_s``. Checkpoints, resume and the end of every step (eval,
log, checkpoint, SIGTERM) are :mod:`r1rl.train.loop`'s. The rollout engine
(:mod:`r1rl.train.ppo.engines`, ``rollout.engine``) gets the weights before the first rollout and
after every update (``sync_weights``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import torch

from r1rl.config import PPOSettings
from r1rl.errors import UserError
from r1rl.models.generation import concat_generations
from r1rl.models.moe import RoutingReplay, routers
from r1rl.parallel.distributed import Parallel
from r1rl.parallel.sharding import SHARDED_EVAL, shard_roles
from r1rl.records import Task, rows
from r1rl.rewards.hierarchy import concat_results
from r1rl.rewards.watch import failures_in
from r1rl.train.common import check_in_sync
from r1rl.train.loop import Cadence, Checkpointer, StepLogger, restore_rng, rng_state_of
from r1rl.train.ppo.context import NonFiniteError, PPOContext, PPOState
from r1rl.train.ppo.engines import build_engine
from r1rl.train.ppo.rollout import Rollout, Sampled, finish, sample
from r1rl.train.ppo.update import update
from r1rl.train.prepare import Tools, drop_long_prompts

__all__ = [
    "COUNT_METRICS",
    "NonFiniteError",
    "PPOContext",
    "PPOState",
    "collect",
    "prompt_pool",
    "train_ppo",
    "update",
]

log = logging.getLogger(__name__)

# counts: summed over ranks, not averaged
COUNT_METRICS = ("/errors", "/timeouts", "/not_applicable", "/programs_run", "/truncated_inputs")


def train_ppo(
    ctx: PPOContext, pool: Any, seed: int, evaluate: Callable[[], dict[str, float]] | None = None
) -> None:
    """Run ``cfg.steps`` PPO iterations into ``ctx.run``, resuming from the newest checkpoint if one exists.

    ``pool``: the training records (a list, or a ``datasets.Dataset``), sampled by a seeded
    :class:`~r1rl.train.ppo.selection.PromptSelector`; ``ctx.task`` supplies stop sequences and
    system prompt. ``evaluate`` (every ``cfg.log.eval_every`` steps and at the end) returns held-out
    metrics for the current policy, logged under ``eval/``.

    A step whose rewards or log-probs are non-finite is skipped (no update) and counted in
    ``skipped_steps``; after ``max_consecutive_skips`` in a row the run halts with
    :class:`NonFiniteError`. Checkpoints are only written when every trainable weight is finite.
    Under a launcher (``ctx.parallel``) each rank rolls out ``prompts_per_step / world`` prompts;
    the main process evaluates, logs and writes checkpoints. ``ctx.engine`` samples the rollouts
    (default: the one ``rollout.engine`` names, for the policy's device).
    """
    cfg, parallel, roles, run = ctx.settings, ctx.parallel, ctx.roles, ctx.run
    if run is None:
        raise ValueError("train_ppo needs a run directory (PPOContext.run)")
    _place(ctx, periodic_eval=evaluate is not None and cfg.log.eval_every > 0)
    roles.temperature = cfg.rollout.temperature  # the update scores the tempered policy it sampled from
    state = PPOState(roles, cfg, seed, len(pool), ctx.hierarchy)
    # the rollout's routing, replayed in the update (or, with moe.routing_replay off, only compared)
    replay = RoutingReplay(roles.generation_model) if routers(roles.generation_model) else None

    def template() -> dict[str, Any]:
        return {"model": roles.trainable_state(), **state.state_dict()}

    backend = parallel.checkpoint_backend(template, list(state.opts.values()))
    ckpt = Checkpointer(run.checkpoints, cfg.checkpoint.every, cfg.checkpoint.keep, backend, parallel.is_main)
    start, saved = ckpt.resume()
    if saved is not None:
        roles.load_state_dict(saved["model"], strict=False)
        state.load_state_dict(saved)
        restore_rng(parallel, saved)
    if parallel.enabled:  # per-tier reward normalisation over every rank's scores
        ctx.hierarchy.gather_with(parallel.gather_values)
    log = StepLogger(run, "ppo", cfg.steps, start, cfg.log.every, is_main=parallel.is_main)
    engine = ctx.engine
    if engine is None:
        engine = build_engine(
            cfg.rollout, roles.generation_model, ctx.tokenizer, parallel.device, parallel.sharded
        )
    ctx = replace(ctx, engine=engine, replay=replay, state=state, phase=log.phase)
    engine.sync_weights(roles.generation_model)
    postfix: dict[str, Any] = {"reward": "reward/mean", "kl": "kl", "reward_errors": failures_in}  # the bar
    cadence = Cadence(log, ckpt, parallel, evaluate, cfg.log.eval_every, postfix)
    for step in log.steps():
        ctx.hierarchy.set_step(step)  # scheduled tier weights (a reward curriculum)
        sampled, selection = collect(ctx, pool)
        batch = finish(ctx, sampled, state.kl_ctl.value)
        batch.metrics.update(selection)
        with log.phase("update"):
            stats = _update(ctx, batch, step)
            engine.sync_weights(roles.generation_model)
        done = step + 1
        out_of_budget = state.generated >= (cfg.rollout.max_samples or float("inf"))
        state.count_skip(not batch.finite or stats["skipped_updates"] > 0, done, cfg, run)
        row, save = partial(_row, ctx, batch, stats), partial(_checkpoint, ctx, ckpt)
        cadence.end_step(done, row, save, last=out_of_budget)
        if out_of_budget:
            break
    if start < cfg.steps:  # a finished run keeps its last state, so a longer run can continue it exactly
        _checkpoint(ctx, ckpt, done)
    check_in_sync(parallel, roles.trainable_state().values(), "trained adapters")


def prompt_pool(task: Task, tokenizer: Any, cfg: PPOSettings, parallel: Parallel, tools: Tools = None) -> Any:
    """The task's training rows whose prompts fit, checked to fill a step — before anything is written.
    ``tools``: the schemas a multi-turn run's prompts list."""
    pool = drop_long_prompts(task.records("train"), tokenizer, task, "ppo", parallel, tools)
    if len(pool) < cfg.rollout.prompts_per_step:
        n = cfg.rollout.prompts_per_step
        raise UserError(f"rollout.prompts_per_step={n} but {task.name!r} has {len(pool)} training rows")
    return pool


def _row(
    ctx: PPOContext, batch: Rollout, stats: dict[str, Any], seconds: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One metrics row, and the side logs of the step: its samples and the expert load."""
    assert ctx.state is not None
    state, parallel = ctx.state, ctx.parallel
    metrics = {
        **batch.metrics,
        **stats,
        "skipped_steps": float(state.skipped_steps),
        "kl_coef": state.kl_ctl.value,
        "lr": state.scheds["policy"].get_last_lr()[0],
        "perf/step_s": seconds,
        "perf/tokens_per_s": float(parallel.all_sum(batch.attention_mask.sum())) / seconds,
        "perf/samples_per_s": batch.mask.shape[0] * parallel.world / seconds,
    }
    load = metrics.pop("moe/expert_load", None)
    side: dict[str, Any] = {"rollouts": {"samples": batch.samples}}
    if load is not None:
        side["expert_load"] = {"tokens_per_expert": load}
    return metrics, side


def collect(ctx: PPOContext, pool: Any) -> tuple[Sampled, dict[str, float]]:
    """This step's scored groups (this rank's share) and the selection's metrics.

    Prompts come from the selector (``ctx.state.sampler``: curriculum, replay), which sees every
    group's top-tier pass rate. With ``rollout.dynamic_sampling``, groups whose rewards all agree
    are dropped and up to ``sampling_rounds`` rounds are generated until every rank has its share
    of varying groups; a rank short of them after the last round trains on fewer, padded under a
    launcher to the largest rank's count with its agreeing groups (zero GRPO advantage) so every
    rank steps alike; a rank with no varying group at all keeps its last round's groups. Reward
    metrics describe every completion generated, dropped ones included.
    """
    assert ctx.state is not None
    r, state, parallel = ctx.settings.rollout, ctx.state, ctx.parallel
    top = ctx.hierarchy.tiers[-1].name
    quota = r.prompts_per_step // parallel.world
    rounds = r.sampling_rounds if r.dynamic_sampling else 1
    kept: list[Sampled] = []
    spare: list[Sampled] = []  # agreeing groups, to pad a short rank under a launcher
    results, generated, zero_variance, n_groups, n_kept = [], 0, 0, 0, 0
    for _ in range(rounds):
        indices = state.sampler.next()  # every rank draws the same global batch
        sampled = sample(ctx, parallel.shard_list(rows(pool, indices)))
        results.append(sampled.result)
        if state.sampler.active:  # a collective under a launcher: only when the selector reads it
            rates = [x for part in parallel.gather_objects(sampled.group_pass_rates(top)) for x in part]
            state.sampler.observe(indices, rates)
        varies = sampled.group_varies()
        generated += len(sampled.prompts)
        zero_variance += len(varies) - sum(varies)
        n_groups += len(varies)
        if not r.dynamic_sampling:
            kept, n_kept = [sampled], len(varies)
            break
        take = [i for i, v in enumerate(varies) if v][: quota - n_kept]
        kept.append(sampled.groups(take))
        spare.append(sampled.groups([i for i, v in enumerate(varies) if not v]))
        n_kept += len(take)
        if parallel.all_true(n_kept >= quota):
            break
    if n_kept == 0:  # no group varied in any round: the last round's groups, as they are
        kept, n_kept = [sampled], len(sampled.batch)
    if r.dynamic_sampling and parallel.enabled:
        most = int(max(parallel.gather_objects(n_kept)))
        fill = most - n_kept
        if fill > 0:
            pad = [s.groups(range(min(fill, len(s.batch)))) for s in spare]
            kept += [p for p in pad if p.batch][:fill]
            n_kept = most
    batch = _concat(kept, ctx.tokenizer)
    state.generated += int(parallel.all_sum(torch.tensor(generated)))
    result = concat_results(results)
    state.watch.observe(result, parallel.all_sum_dict)  # a broken reward stops the run (a collective)
    metrics = {
        **result.metrics(),
        "rollout/zero_variance": zero_variance / max(n_groups, 1),
        "rollout/groups_kept": float(len(batch.batch)),
        "rollout/rounds": float(len(results)),
        "rollout/generated": float(state.generated),
        **state.sampler.metrics(),
    }
    return batch, metrics


def _concat(parts: list[Sampled], tokenizer: Any) -> Sampled:
    parts = [p for p in parts if p.batch] or parts[:1]
    if len(parts) == 1:
        return parts[0]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    baseline = [x for p in parts for x in p.baseline or []] if all(p.baseline for p in parts) else None
    episodes = [e for p in parts for e in p.episodes or []] if all(p.episodes for p in parts) else None
    return Sampled(
        [b for p in parts for b in p.batch], [q for p in parts for q in p.prompts],
        concat_generations([p.generation for p in parts], pad_id), concat_results([p.result for p in parts]),
        baseline, parts[0].metrics, episodes,
    )  # fmt: skip


def _place(ctx: PPOContext, periodic_eval: bool) -> None:
    """The roles on this process's device with the main process's weights; sharded under FSDP2."""
    roles, parallel = ctx.roles, ctx.parallel
    if parallel.sharded and periodic_eval:
        raise UserError(SHARDED_EVAL)
    roles.to(parallel.device)
    parallel.broadcast_(roles.trainable_state().values())  # every rank starts from the main process's weights
    if parallel.sharded:
        shard_roles(roles, parallel)  # before the optimizers: FSDP2 replaces the parameters by their shards


def _update(ctx: PPOContext, batch: Rollout, step: int) -> dict[str, Any]:
    """The update (skipped when the rollout holds non-finite rewards or log-probs), the schedules, β."""
    assert ctx.state is not None
    cfg, state, parallel, roles = ctx.settings, ctx.state, ctx.parallel, ctx.roles
    # the size of the step, ‖θ_after − θ_before‖₂; not under FSDP2, where a rank holds only shards
    before = None if parallel.sharded else [p.detach().clone() for p in roles.adapter_parameters("policy")]
    if batch.finite:
        update_policy = step >= cfg.optim.critic_warmup_steps
        stats = update(ctx, batch, state.opts, state.generator, state.kl_ctl.value, update_policy)
        batch.metrics = _reduce_rollout_metrics(batch.metrics, parallel)
        state.kl_ctl.update(batch.metrics["kl"], batch.mask.shape[0] * parallel.world)
    else:
        log.warning("step %d: non-finite rewards or log-probs; update skipped", step + 1)
        stats = {"skipped_updates": float(cfg.optim.ppo_epochs)}
        batch.metrics = _reduce_rollout_metrics(batch.metrics, parallel)
    for s in state.scheds.values():
        s.step()
    if before is not None:
        after = roles.adapter_parameters("policy")
        squares = [((a.detach() - b) ** 2).sum() for a, b in zip(after, before)]
        stats["policy/update_norm"] = float(torch.sqrt(sum(squares[1:], squares[0])))  # Σ left to right
    return stats


def _checkpoint(ctx: PPOContext, ckpt: Checkpointer, done: int) -> Path | None:
    """Write a checkpoint, unless a trainable weight is non-finite (the previous one stays the newest)."""
    assert ctx.state is not None
    trainable = ctx.roles.trainable_state()
    if not all(torch.isfinite(p).all() for p in trainable.values() if p.is_floating_point()):
        log.warning("step %d: non-finite weights; checkpoint not written", done)
        return None
    rng = rng_state_of(ctx.parallel)  # a collective: every rank takes part
    return ckpt.save(done, {"model": trainable, **ctx.state.state_dict(), **rng, "step": done})


def _reduce_rollout_metrics(metrics: dict[str, float], parallel: Parallel) -> dict[str, float]:
    """Rollout metrics over every rank: counts summed, everything else averaged."""
    counts = {k: v for k, v in metrics.items() if k.endswith(COUNT_METRICS)}
    rest = {k: v for k, v in metrics.items() if k not in counts}
    return {**parallel.all_mean(rest), **parallel.all_sum_dict(counts)}
