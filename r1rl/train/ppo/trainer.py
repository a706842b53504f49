"""The PPO loop, phase by phase: generate → reward → log-probs → advantages → update → log → checkpoint.

Notation: ``B`` sequences per step (prompts × samples), ``P`` prompt tokens, ``T`` completion tokens.

Implementation details that matter (each pinned by a test in ``tests/ppo``):

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
:func:`r1rl.train.ppo.update.update`; each is timed and logged as ``perf/<phase>_s``. Checkpoints,
resume and the logging cadence are :mod:`r1rl.train.loop`'s. The rollout engine
(:mod:`r1rl.train.ppo.engines`, ``rollout.engine``) gets the weights before the first rollout and
after every update (``sync_weights``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from r1rl.algorithms import ppo
from r1rl.config import PPOSettings
from r1rl.errors import UserError
from r1rl.models.generation import concat_generations
from r1rl.models.moe import RoutingReplay, routers
from r1rl.parallel.distributed import Parallel
from r1rl.parallel.sharding import SHARDED_EVAL, shard_roles
from r1rl.records import Task, rows
from r1rl.rewards.hierarchy import RewardHierarchy, concat_results
from r1rl.rundir import RunDir
from r1rl.train.common import check_in_sync, cosine_schedule
from r1rl.train.loop import Checkpointer, Preempted, StepLogger, restore_rng, rng_state_of
from r1rl.train.ppo.engines import RolloutEngine, build_engine
from r1rl.train.ppo.roles import ActorCritic, FullActorCritic
from r1rl.train.ppo.rollout import Phase, Rollout, Sampled, finish, sample
from r1rl.train.ppo.selection import PromptSelector, SelectionSettings
from r1rl.train.ppo.update import update

log = logging.getLogger(__name__)

# counts: summed over ranks, not averaged
COUNT_METRICS = ("/errors", "/timeouts", "/not_applicable", "/programs_run", "/truncated_inputs")


class NonFiniteError(UserError):
    """Too many steps in a row were skipped for non-finite rewards, log-probs, losses or gradients."""


class PPOState:
    """Everything of the loop a checkpoint holds besides the weights: optimizers, schedules, β, streams."""

    def __init__(self, ac: Any, cfg: PPOSettings, seed: int, n_rows: int, hierarchy: RewardHierarchy) -> None:
        o, a = cfg.optim, cfg.algorithm
        self.opts = {"policy": torch.optim.AdamW(ac.adapter_parameters("policy"), lr=o.lr, weight_decay=0.0)}
        if ac.has_critic:
            self.opts["critic"] = torch.optim.AdamW(
                ac.adapter_parameters("critic"), lr=o.critic_lr, weight_decay=0.0
            )
        self.scheds = {
            k: cosine_schedule(opt, o.warmup_steps, cfg.steps, 1.0) for k, opt in self.opts.items()
        }
        self.kl_ctl: ppo.FixedKLController = (
            ppo.AdaptiveKLController(a.kl_coef, a.kl_target, a.kl_horizon)
            if a.kl_target is not None
            else ppo.FixedKLController(a.kl_coef)
        )
        self.generator = torch.Generator().manual_seed(seed)  # minibatch order
        sel = cfg.selection
        settings = SelectionSettings(
            curriculum_floor=sel.curriculum_floor if sel.curriculum else None,
            replay_fraction=sel.replay_fraction, replay_threshold=sel.replay_threshold,
            replay_capacity=sel.replay_capacity, replay_max_visits=sel.replay_max_visits,
        )  # fmt: skip
        self.sampler = PromptSelector(n_rows, cfg.rollout.prompts_per_step, seed + 1, settings)  # prompts
        self.hierarchy = hierarchy
        self.skipped_steps, self.in_a_row = 0, 0
        self.generated = 0  # completions generated so far, dynamic sampling's dropped ones included

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer": {k: o.state_dict() for k, o in self.opts.items()},
            "scheduler": {k: s.state_dict() for k, s in self.scheds.items()},
            "kl_ctl": self.kl_ctl.state_dict(),
            "rewards": self.hierarchy.state_dict(),  # running normalisation statistics
            "generator": self.generator.get_state(),
            "sampler": self.sampler.state_dict(),
            "skipped_steps": self.skipped_steps,
            "generated": self.generated,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k in self.opts:
            self.opts[k].load_state_dict(state["optimizer"][k])
            self.scheds[k].load_state_dict(state["scheduler"][k])
        self.kl_ctl.load_state_dict(state["kl_ctl"])
        if "rewards" in state:
            self.hierarchy.load_state_dict(state["rewards"])
        self.generator.set_state(state["generator"])
        self.sampler.load_state_dict(state["sampler"])
        self.skipped_steps = state.get("skipped_steps", 0)
        self.generated = state.get("generated", 0)

    def count_skip(self, skipped: bool, done: int, cfg: PPOSettings, run: RunDir) -> None:
        """Count a skipped step; ``max_consecutive_skips`` in a row halt with :class:`NonFiniteError`."""
        self.skipped_steps += int(skipped)
        self.in_a_row = self.in_a_row + 1 if skipped else 0
        if self.in_a_row >= cfg.optim.max_consecutive_skips:
            raise NonFiniteError(
                f"ppo halted at step {done}: {self.in_a_row} steps in a row had non-finite rewards, "
                "log-probs, losses or gradients; lower optim.lr or check the reward functions "
                f"(last good checkpoint in {run.checkpoints})"
            )


def train_ppo(
    ac: ActorCritic | FullActorCritic,
    tokenizer: Any,
    pool: Any,
    hierarchy: RewardHierarchy,
    cfg: PPOSettings,
    run: RunDir,
    seed: int,
    evaluate: Callable[[], dict[str, float]] | None = None,
    par: Parallel | None = None,
    task: Task | None = None,
    engine: RolloutEngine | None = None,
) -> None:
    """Run ``cfg.steps`` PPO iterations, resuming from the newest checkpoint if one exists.

    ``pool``: the training records (a list, or a ``datasets.Dataset``), sampled by an
    :class:`~r1rl.tasks.base.EpochSampler`; ``task`` supplies stop sequences and system prompt.
    ``evaluate`` (every ``cfg.log.eval_every`` steps and at the end) returns held-out metrics for
    the current policy, logged under ``eval/``.

    A step whose rewards or log-probs are non-finite is skipped (no update) and counted in
    ``skipped_steps``; after ``max_consecutive_skips`` in a row the run halts with
    :class:`NonFiniteError`. Checkpoints are only written when every trainable weight is finite.
    Under a launcher (``par``) each rank rolls out ``prompts_per_step / world`` prompts; the
    main process evaluates, logs and writes checkpoints. ``engine`` samples the rollouts
    (default: the one ``rollout.engine`` names, for the policy's device).
    """
    par = par or Parallel()
    _place(ac, par, periodic_eval=evaluate is not None and cfg.log.eval_every > 0)
    ac.temperature = cfg.rollout.temperature  # the update scores the tempered policy it sampled from
    state = PPOState(ac, cfg, seed, len(pool), hierarchy)
    replay = RoutingReplay(ac.generation_model) if routers(ac.generation_model) else None  # or telemetry

    def template() -> dict[str, Any]:
        return {"model": ac.trainable_state(), **state.state_dict()}

    backend = par.checkpoint_backend(template, list(state.opts.values()))
    ckpt = Checkpointer(run.checkpoints, cfg.checkpoint.every, cfg.checkpoint.keep, backend, par.is_main)
    start, saved = ckpt.resume()
    if saved is not None:
        ac.load_state_dict(saved["model"], strict=False)
        state.load_state_dict(saved)
        restore_rng(par, saved)
    if par.enabled:  # per-tier reward normalisation over every rank's scores
        hierarchy.gather = lambda values: [v for part in par.gather_objects(values) for v in part]
    log = StepLogger(run, "ppo", cfg.steps, start, cfg.log.every, is_main=par.is_main)
    if engine is None:
        engine = build_engine(cfg.rollout, ac.generation_model, tokenizer, par.device, par.sharded)
    engine.sync_weights(ac.generation_model)
    for step in log.steps():
        hierarchy.set_step(step)  # scheduled tier weights (a reward curriculum)
        sampled, selection = collect(ac, tokenizer, pool, hierarchy, cfg, state, par, task, log.phase, engine)
        ro = finish(ac, sampled, cfg, state.kl_ctl.value, replay, par, log.phase, engine.is_training_model)
        ro.metrics.update(selection)
        with log.phase("update"):
            stats = _update(ac, ro, cfg, state, step, replay, par)
            engine.sync_weights(ac.generation_model)
        done = step + 1
        out_of_budget = state.generated >= (cfg.rollout.max_samples or float("inf"))
        state.count_skip(not ro.finite or stats["skipped_updates"] > 0, done, cfg, run)
        last = done == cfg.steps or out_of_budget
        eval_due = (
            evaluate is not None and cfg.log.eval_every > 0 and (done % cfg.log.eval_every == 0 or last)
        )
        if log.due(done, force=eval_due or last):
            metrics = _metrics(ro, stats, state, log.step_seconds, par)
            _log_step(log, done, metrics, ro, evaluate if eval_due else None, par)
        stop = log.stop_requested(par) and not last
        if ckpt.due(done, cfg.steps) or stop:
            path = _checkpoint(ckpt, done, ac, state, par)
            if stop:
                raise Preempted(done, path)
        if out_of_budget:
            break
    if start < cfg.steps:  # a finished run keeps its last state, so a longer run can continue it exactly
        _checkpoint(ckpt, done, ac, state, par)
    check_in_sync(par, ac.trainable_state().values(), "trained adapters")


def _log_step(
    log: StepLogger, done: int, metrics: dict[str, Any], ro: Rollout,
    evaluate: Callable[[], dict[str, float]] | None, par: Parallel,
) -> None:  # fmt: skip
    """One metrics row (with the held-out eval when ``evaluate`` is given), its samples and expert load."""
    if evaluate is not None and par.is_main:
        with log.phase("eval"):
            metrics.update({f"eval/{k}": v for k, v in evaluate().items()})
    load = metrics.pop("moe/expert_load", None)
    side: dict[str, Any] = {"rollouts": {"samples": ro.samples}}
    if load is not None:
        side["expert_load"] = {"tokens_per_expert": load}
    log.log(done, metrics, side)
    log.postfix(reward=metrics["reward/mean"], kl=metrics["kl"])


def collect(
    ac: Any, tokenizer: Any, pool: Any, hierarchy: RewardHierarchy, cfg: PPOSettings, state: PPOState,
    par: Parallel, task: Task | None, phase: Phase, engine: RolloutEngine,
) -> tuple[Sampled, dict[str, float]]:  # fmt: skip
    """This step's scored groups (this rank's share) and the selection's metrics.

    Prompts come from the selector (curriculum, replay), which sees every group's top-tier pass
    rate. With ``rollout.dynamic_sampling``, groups whose rewards all agree are dropped and up to
    ``sampling_rounds`` rounds are generated until every rank has its share of varying groups; a
    rank short of them after the last round trains on fewer, padded under a launcher to the
    largest rank's count with its agreeing groups (zero GRPO advantage) so every rank steps
    alike; a rank with no varying group at all keeps its last round's groups. Reward metrics
    describe every completion generated, dropped ones included.
    """
    r = cfg.rollout
    top = hierarchy.tiers[-1].name
    quota = r.prompts_per_step // par.world
    rounds = r.sampling_rounds if r.dynamic_sampling else 1
    kept: list[Sampled] = []
    spare: list[Sampled] = []  # agreeing groups, to pad a short rank under a launcher
    results, generated, zero_variance, n_groups, n_kept = [], 0, 0, 0, 0
    for _ in range(rounds):
        indices = state.sampler.next()  # every rank draws the same global batch
        sampled = sample(ac, tokenizer, par.shard_list(rows(pool, indices)), hierarchy, cfg, par, task,
                         phase, engine)  # fmt: skip
        results.append(sampled.result)
        if state.sampler.active:  # a collective under a launcher: only when the selector reads it
            rates = [x for part in par.gather_objects(sampled.group_pass_rates(top)) for x in part]
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
        if par.all_true(n_kept >= quota):
            break
    if n_kept == 0:  # no group varied in any round: the last round's groups, as they are
        kept, n_kept = [sampled], len(sampled.batch)
    if r.dynamic_sampling and par.enabled:
        most = int(max(par.gather_objects(n_kept)))
        fill = most - n_kept
        if fill > 0:
            pad = [s.groups(range(min(fill, len(s.batch)))) for s in spare]
            kept += [p for p in pad if p.batch][:fill]
            n_kept = most
    batch = _concat(kept, tokenizer)
    state.generated += int(par.all_sum(torch.tensor(generated)))
    metrics = {
        **concat_results(results).metrics(),
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
    return Sampled(
        [b for p in parts for b in p.batch], [q for p in parts for q in p.prompts],
        concat_generations([p.generation for p in parts], pad_id), concat_results([p.result for p in parts]),
    )  # fmt: skip


def _place(ac: Any, par: Parallel, periodic_eval: bool) -> None:
    """The roles on this process's device with the main process's weights; sharded under FSDP2."""
    if par.sharded and periodic_eval:
        raise UserError(SHARDED_EVAL)
    ac.to(par.device)
    par.broadcast_(ac.trainable_state().values())  # every rank starts from the main process's weights
    if par.sharded:
        shard_roles(ac, par)  # before the optimizers: FSDP2 replaces the parameters by their shards


def _update(
    ac: Any,
    ro: Rollout,
    cfg: PPOSettings,
    state: PPOState,
    step: int,
    replay: RoutingReplay | None,
    par: Parallel,
) -> dict[str, Any]:
    """The update (skipped when the rollout holds non-finite rewards or log-probs), the schedules, β."""
    # the size of the step, ‖θ_after − θ_before‖₂; not under FSDP2, where a rank holds only shards
    before = None if par.sharded else [p.detach().clone() for p in ac.adapter_parameters("policy")]
    if ro.finite:
        update_policy = step >= cfg.optim.critic_warmup_steps
        stats = update(
            ac, ro, cfg, state.opts, state.generator, state.kl_ctl.value, update_policy, replay, par
        )
        ro.metrics = _reduce_rollout_metrics(ro.metrics, par)
        state.kl_ctl.update(ro.metrics["kl"], ro.mask.shape[0] * par.world)
    else:
        log.warning("step %d: non-finite rewards or log-probs; update skipped", step + 1)
        stats = {"skipped_updates": float(cfg.optim.ppo_epochs)}
        ro.metrics = _reduce_rollout_metrics(ro.metrics, par)
    for s in state.scheds.values():
        s.step()
    if before is not None:
        after = ac.adapter_parameters("policy")
        stats["policy/update_norm"] = float(
            torch.sqrt(sum(((a.detach() - b) ** 2).sum() for a, b in zip(after, before)))
        )
    return stats


def _metrics(
    ro: Rollout, stats: dict[str, Any], state: PPOState, seconds: float, par: Parallel
) -> dict[str, Any]:
    return {
        **ro.metrics,
        **stats,
        "skipped_steps": float(state.skipped_steps),
        "kl_coef": state.kl_ctl.value,
        "lr": state.scheds["policy"].get_last_lr()[0],
        "perf/step_s": seconds,
        "perf/tokens_per_s": float(par.all_sum(ro.attention_mask.sum())) / seconds,
        "perf/samples_per_s": ro.mask.shape[0] * par.world / seconds,
    }


def _checkpoint(ckpt: Checkpointer, done: int, ac: Any, state: PPOState, par: Parallel) -> Path | None:
    """Write a checkpoint, unless a trainable weight is non-finite (the previous one stays the newest)."""
    trainable = ac.trainable_state()
    if not all(torch.isfinite(p).all() for p in trainable.values() if p.is_floating_point()):
        log.warning("step %d: non-finite weights; checkpoint not written", done)
        return None
    rng = rng_state_of(par)  # a collective: every rank takes part
    return ckpt.save(done, {"model": trainable, **state.state_dict(), **rng, "step": done})


def _reduce_rollout_metrics(metrics: dict[str, float], par: Parallel) -> dict[str, float]:
    """Rollout metrics over every rank: counts summed, everything else averaged."""
    counts = {k: v for k, v in metrics.items() if k.endswith(COUNT_METRICS)}
    rest = {k: v for k, v in metrics.items() if k not in counts}
    return {**par.all_mean(rest), **par.all_sum_dict(counts)}
