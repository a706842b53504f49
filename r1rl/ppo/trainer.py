"""The PPO loop: rollout → score → reference log-probs and values → GAE → PPO epochs → log → checkpoint.

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
   still receives the score. A completion that ends on one of the task's stop sequences is
   scored without it (as the benchmark scores it) and its mask ends with the stop sequence.
8. Prompts are the task's training rows, drawn without replacement and reshuffled every epoch
   by a seeded sampler saved in the checkpoint; every other column of a row reaches every reward.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from r1rl.config import PPOSettings
from r1rl.distributed import Parallel
from r1rl.errors import UserError
from r1rl.generation import generate
from r1rl.moe import (
    RoutingReplay,
    expert_load,
    load_metrics,
    router_entropy,
    router_z_loss,
    routers,
    variance_balance_loss,
)
from r1rl.ppo import core
from r1rl.ppo.roles import ActorCritic, FullActorCritic
from r1rl.rewards.hierarchy import RewardHierarchy
from r1rl.rundir import RunDir
from r1rl.tasks.base import EpochSampler, Record, Task, prompts_of, reward_columns, rows, text_of_prompt
from r1rl.tasks.encoding import as_completion, encode_prompts
from r1rl.training import (
    cosine_schedule,
    grad_norm_finite,
    load_latest_checkpoint,
    save_checkpoint,
)

log = logging.getLogger(__name__)


class NonFiniteError(UserError):
    """Too many steps in a row were skipped for non-finite rewards, log-probs, losses or gradients."""


@dataclass
class Rollout:
    input_ids: torch.Tensor  # (B, P + T)
    attention_mask: torch.Tensor  # (B, P + T)
    mask: torch.Tensor  # (B, T) completion tokens through EOS
    scores: torch.Tensor  # (B,) combined reward, after optional clipping/normalisation
    old_logprobs: torch.Tensor | None  # (B, T); None when on-policy (see ``rollout``)
    ref_logprobs: torch.Tensor  # (B, T)
    values: torch.Tensor  # (B, T) zeros without a critic
    advantages: torch.Tensor  # (B, T)
    returns: torch.Tensor  # (B, T)
    metrics: dict[str, float]
    samples: list[dict[str, Any]]
    finite: bool = True  # every reward and log-prob is finite

    @property
    def n_completion(self) -> int:
        return self.mask.shape[1]


def rollout(
    ac: ActorCritic | FullActorCritic,
    tokenizer: Any,
    batch: list[Record],
    hierarchy: RewardHierarchy,
    cfg: PPOSettings,
    kl_coef: float,
    replay: RoutingReplay | None = None,
    par: Parallel | None = None,
    task: Task | None = None,
) -> Rollout:
    """Generate, score, and compute everything the update needs (no gradients).

    ``batch``: this step's records (each sampled ``samples_per_prompt`` times); ``task`` gives
    the stop sequences and system prompt. With ``replay``, the routing of the old-log-prob
    pass (the behaviour policy's weights) is recorded for the update to replay or compare
    against. Under a launcher (``par``), ``batch`` is this rank's share and batch statistics
    span every rank.
    """
    par = par or Parallel()
    prompts = prompts_of(batch, cfg.samples_per_prompt)
    prompt_ids = encode_prompts(tokenizer, prompts, getattr(task, "system_prompt", None))
    ac.use("policy")
    with ac.autocast():
        g = generate(
            ac.generation_model, tokenizer, prompt_ids, max_new_tokens=cfg.max_new_tokens, do_sample=True,
            temperature=cfg.temperature, top_p=cfg.top_p, stop=getattr(task, "stop", ()),
        )  # fmt: skip
    completions = [as_completion(p, t) for p, t in zip(prompts, g.texts)]
    res = hierarchy(prompts, completions, **reward_columns(batch, cfg.samples_per_prompt))
    raw = torch.tensor(res.rewards, dtype=torch.float32)  # (B,)
    input_ids = torch.cat([g.prompt_ids, g.completion_ids], 1)  # (B, P + T)
    attention_mask = torch.cat([g.prompt_mask, g.completion_mask], 1)
    mask = g.completion_mask.float()  # (B, T)
    T = mask.shape[1]
    # One optimizer step on the whole batch with the KL outside the reward: the update's own
    # forward pass *is* the behaviour policy's, so the separate old-log-prob pass is skipped
    # (its log-probs are the update's, detached) and the KL metric comes from the update.
    on_policy = (
        cfg.ppo_epochs == 1
        and cfg.minibatch_size >= len(prompts) * par.world
        and (cfg.kl_in == "loss" or kl_coef == 0)
    )
    old_logprobs: torch.Tensor | None = None
    with torch.no_grad():
        if not on_policy:
            with replay.record(tuple(input_ids.shape)) if replay is not None else nullcontext():
                old_logprobs, _, _ = ac.policy_logprobs(input_ids, attention_mask, T)
        ref_logprobs, _, _ = ac.policy_logprobs(input_ids, attention_mask, T, reference=True)
        values = ac.values(input_ids, attention_mask, T) * mask if ac.has_critic else torch.zeros_like(mask)
        ac.use("policy")
    behaviour = old_logprobs if old_logprobs is not None else ref_logprobs
    finite = bool(torch.isfinite(raw).all() and torch.isfinite(behaviour * mask).all())
    finite = par.all_true(finite and bool(torch.isfinite(ref_logprobs * mask).all()))
    scores = raw.clone()
    if cfg.reward_clip is not None:
        scores = scores.clamp(-cfg.reward_clip, cfg.reward_clip)
    if cfg.normalize_rewards and scores.numel() * par.world > 1:
        if par.enabled:
            scores = par.normalize(scores)
        else:
            scores = (scores - scores.mean()) / (scores.std() + 1e-8)
    kl = core.kl_penalty(behaviour, ref_logprobs, cfg.kl_estimator) * mask  # (B, T); 0 when on-policy
    beta = kl_coef if cfg.kl_in == "reward" else 0.0
    if not finite:  # the step will be skipped; keep the tensors finite for logging
        scores, kl = torch.nan_to_num(scores), torch.nan_to_num(kl)
    advantages, returns = _advantages(scores, kl, values, mask, beta, cfg, par)
    metrics = {
        **res.metrics(),
        "kl": float(kl.sum(1).mean()),
        "response/length": float(mask.sum(1).mean()),
        "response/truncated": float(g.truncated.float().mean()),
        "response/empty": float((mask.sum(1) <= 1).float().mean()),  # EOS only, or nothing
    }
    samples = [
        {"prompt": text_of_prompt(p), "completion": c, "reward": r}
        for p, c, r in zip(prompts[:4], g.texts[:4], res.rewards[:4])
    ]
    return Rollout(
        input_ids, attention_mask, mask, scores, old_logprobs, ref_logprobs, values, advantages,
        returns, metrics, samples, finite,
    )  # fmt: skip


def _advantages(
    scores: torch.Tensor,
    kl: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    beta: float,
    cfg: PPOSettings,
    par: Parallel | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,) scores, (B, T) KL/values/mask -> advantages and returns, both (B, T).

    Whitening spans every rank's tokens under a launcher; GRPO/RLOO groups never straddle ranks.
    """
    par = par or Parallel()
    est = cfg.advantage_estimator
    if est == "gae":
        rewards = core.token_rewards(scores, kl, mask, beta)  # (B, T)
        advantages, returns = core.gae(rewards, values, mask, cfg.gamma, cfg.gae_lambda)
        if cfg.whiten_advantages:
            whiten = par.masked_whiten if par.enabled else core.masked_whiten
            advantages = whiten(advantages, mask)
        return advantages, returns
    if est == "reinforce_pp":
        if par.enabled:
            token = core.token_rewards(scores, kl, mask, beta)
            advantages = par.masked_whiten(core.discounted_returns(token, mask, cfg.gamma), mask)
        else:
            advantages = core.reinforce_pp_advantages(scores, kl, mask, beta, cfg.gamma)
        return advantages, advantages
    # grpo / rloo: one advantage per sequence, on every token of it
    seq = core.group_advantages(
        scores - beta * kl.sum(1), cfg.samples_per_prompt, est, scale_by_std=cfg.grpo_scale_by_std
    )  # (B,)
    advantages = seq[:, None] * mask
    return advantages, advantages


def update(
    ac: ActorCritic | FullActorCritic,
    ro: Rollout,
    cfg: PPOSettings,
    opts: dict[str, torch.optim.Optimizer],
    generator: torch.Generator,
    kl_coef: float,
    update_policy: bool = True,
    replay: RoutingReplay | None = None,
    par: Parallel | None = None,
) -> dict[str, float]:
    """``ppo_epochs`` passes over shuffled minibatches; policy and critic step separately.

    Each minibatch is one optimizer step, accumulated over micro-batches of
    ``micro_batch_size`` sequences; micro-batch losses are weighted so the sum equals the
    minibatch's aggregated loss. A non-finite loss or gradient skips that optimizer step.
    With ``update_policy=False`` (critic warm-up) the policy takes no step.

    Under a launcher each rank holds ``1/world`` of the rollout and of every minibatch; micro-
    batch weights are shares of the *global* minibatch, and gradients are summed over ranks
    before clipping, so the step equals a lone process's on the whole minibatch.
    """
    par = par or Parallel()
    B, T = ro.mask.shape
    mb = par.check_divisible(cfg.minibatch_size, "ppo.minibatch_size")  # this rank's share
    stats: dict[str, list[float]] = {}
    load = None  # (L, E) tokens per expert, summed over the step's forward passes
    if ro.old_logprobs is None:
        replay = None  # on-policy: no earlier pass to replay or compare against
        kl_seq = torch.zeros(B)  # per-sequence KL to the reference, filled by the update's pass
    top_k = getattr(ac.config, "num_experts_per_tok", 1)
    micro = min(cfg.micro_batch_size or mb, mb)
    for _ in range(cfg.ppo_epochs):
        perm = torch.randperm(B, generator=generator)
        for start in range(0, B, mb):
            idx = perm[start : start + mb]
            parts = [idx[i : i + micro] for i in range(0, len(idx), micro)]
            weights = _micro_weights(ro.mask, parts, cfg.loss_agg_mode, par)
            rows: list[dict[str, float]] = []
            p_finite = True
            for part, w in zip(parts, weights):
                row, ok, part_load = _policy_micro_step(ac, ro, part, w, cfg, kl_coef, top_k, replay)
                if ro.old_logprobs is None:
                    kl_seq[part] = torch.tensor(row.pop("_kl_seq"))
                rows.append(row)
                if part_load is not None:
                    load = part_load if load is None else load + part_load
                p_finite = p_finite and ok
            par.sync_grads(ac.adapter_parameters("policy"))
            p_norm, p_ok = grad_norm_finite(ac.adapter_parameters("policy"), cfg.max_grad_norm)
            p_ok = p_ok and par.all_true(p_finite)
            if p_ok and update_policy:
                opts["policy"].step()
            opts["policy"].zero_grad(set_to_none=True)
            row = par.all_sum_dict({k: sum(r[k] * w for r, w in zip(rows, weights)) for k in rows[0]})
            row.update(grad_norm=p_norm, skipped_updates=float(not p_ok))
            if ac.has_critic:
                v_rows, v_finite = [], True
                for part, w in zip(parts, weights):
                    v_row, ok = _critic_micro_step(ac, ro, part, w, cfg)
                    v_rows.append(v_row)
                    v_finite = v_finite and ok
                par.sync_grads(ac.adapter_parameters("critic"))
                v_norm, v_ok = grad_norm_finite(ac.adapter_parameters("critic"), cfg.max_grad_norm)
                v_finite = par.all_true(v_finite)
                if v_ok and v_finite:
                    opts["critic"].step()
                opts["critic"].zero_grad(set_to_none=True)
                ac.use("policy")
                v_row = {k: sum(r[k] * w for r, w in zip(v_rows, weights)) for k in v_rows[0]}
                row.update(par.all_sum_dict(v_row))
                row["value/grad_norm"] = v_norm
                row["skipped_updates"] = float(not (p_ok and v_ok and v_finite))
            for k, v in row.items():
                stats.setdefault(k, []).append(v)
    result = {k: sum(v) / len(v) for k, v in stats.items()}
    result["skipped_updates"] = sum(stats["skipped_updates"])
    if ro.old_logprobs is None:
        ro.metrics["kl"] = par.all_mean({"kl": float(kl_seq.mean())})["kl"]
    if load is not None:
        result["moe/expert_load"] = par.all_sum(load).tolist()  # to expert_load.jsonl, not metrics.jsonl
    if ac.has_critic:
        ev = core.explained_variance(ro.values, ro.returns, ro.mask)
        result["value/explained_var"] = par.all_mean({"ev": ev})["ev"]
    return result


COUNT_METRICS = ("/errors", "/timeouts", "/not_applicable", "/programs_run")  # counts: summed over ranks


def _reduce_rollout_metrics(metrics: dict[str, float], par: Parallel) -> dict[str, float]:
    """Rollout metrics over every rank: counts summed, everything else averaged."""
    counts = {k: v for k, v in metrics.items() if k.endswith(COUNT_METRICS)}
    rest = {k: v for k, v in metrics.items() if k not in counts}
    return {**par.all_mean(rest), **par.all_sum_dict(counts)}


def _micro_weights(
    mask: torch.Tensor, parts: list[torch.Tensor], agg_mode: str, par: Parallel | None = None
) -> list[float]:
    """Each micro-batch's share of the (global) minibatch loss: by tokens (token-mean) or by sequences."""
    if agg_mode == "token-mean":
        sizes = [float(mask[p].sum()) for p in parts]
    else:
        sizes = [float((mask[p].sum(1) > 0).sum()) for p in parts]
    total = sum(sizes)
    if par is not None and par.enabled:
        total = float(par.all_sum(torch.tensor(total, dtype=torch.float64)))
    return [s / total if total > 0 else 0.0 for s in sizes]


def _policy_micro_step(
    ac: ActorCritic | FullActorCritic,
    ro: Rollout,
    idx: torch.Tensor,
    weight: float,
    cfg: PPOSettings,
    kl_coef: float,
    top_k: int,
    replay: RoutingReplay | None,
) -> tuple[dict[str, float], bool, torch.Tensor | None]:
    """Forward and backward of the policy loss on ``idx``, scaled by ``weight``.

    Returns (metrics, finite, (L, E) expert load or None)."""
    T = ro.n_completion
    ids, am, m = ro.input_ids[idx], ro.attention_mask[idx], ro.mask[idx]
    ctx = replay.replay(idx, am, force=cfg.routing_replay) if replay is not None else nullcontext()
    with ctx:
        logprobs, entropy, out = ac.policy_logprobs(ids, am, T, with_entropy=True, output_router_logits=True)
    old = ro.old_logprobs[idx] if ro.old_logprobs is not None else logprobs.detach()
    pg_loss, row = core.policy_loss(
        logprobs, old, ro.advantages[idx], m, clip_eps_low=cfg.clip_eps,
        clip_eps_high=cfg.clip_eps_high, dual_clip=cfg.dual_clip, agg_mode=cfg.loss_agg_mode,
    )  # fmt: skip
    loss = pg_loss
    if ro.old_logprobs is None:
        with torch.no_grad():
            kl_now = core.kl_penalty(logprobs.detach(), ro.ref_logprobs[idx], cfg.kl_estimator) * m
        row["_kl_seq"] = kl_now.sum(1).tolist()
    if cfg.kl_in == "loss" and kl_coef > 0:
        kl_loss = core.agg_loss(
            core.kl_penalty(logprobs, ro.ref_logprobs[idx], cfg.kl_estimator), m, cfg.loss_agg_mode
        )
        loss = loss + kl_coef * kl_loss
        row["kl_loss"] = kl_loss.item()
    router_logits = out.router_logits
    if cfg.router_aux_loss_coef > 0 and router_logits is not None:
        if cfg.router_loss == "switch" and out.aux_loss is not None:
            loss = loss + cfg.router_aux_loss_coef * out.aux_loss
        elif cfg.router_loss == "variance":
            var_loss = variance_balance_loss(router_logits, am, alpha=1.0)
            loss = loss + cfg.router_aux_loss_coef * var_loss
            row["moe/variance_loss"] = var_loss.item()
    if cfg.router_z_loss_coef > 0 and router_logits is not None:
        z = router_z_loss(router_logits, am)
        loss = loss + cfg.router_z_loss_coef * z
        row["moe/z_loss"] = z.item()
    if replay is not None and replay.agreement:
        row["moe/routing_agreement"] = sum(replay.agreement) / len(replay.agreement)
    finite = bool(torch.isfinite(loss))
    if finite and weight > 0:
        (loss * weight).backward()
    row.update(loss=pg_loss.item(), entropy=float(core.masked_mean(entropy.detach(), m)))
    if out.aux_loss is not None:
        row["moe/aux_loss"] = out.aux_loss.item()
    load = None
    if router_logits is not None:
        load = expert_load(router_logits, top_k, am)
        row.update(load_metrics(load, router_entropy(router_logits, am)))
    return row, finite, load


def _critic_micro_step(
    ac: ActorCritic | FullActorCritic, ro: Rollout, idx: torch.Tensor, weight: float, cfg: PPOSettings
) -> tuple[dict[str, float], bool]:
    """Forward and backward of the clipped value loss on ``idx``, scaled by ``weight``."""
    T = ro.n_completion
    values = ac.values(ro.input_ids[idx], ro.attention_mask[idx], T)
    v_loss, row = core.value_loss(
        values, ro.values[idx], ro.returns[idx], ro.mask[idx], cfg.value_clip_eps, cfg.loss_agg_mode
    )
    finite = bool(torch.isfinite(v_loss))
    if finite and weight > 0:
        (cfg.vf_coef * v_loss * weight).backward()
    row["value/loss"] = v_loss.item()
    return row, finite


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
) -> None:
    """Run ``cfg.steps`` PPO iterations, resuming from the newest checkpoint if one exists.

    ``pool``: the training records (a list, or a ``datasets.Dataset``), sampled by an
    :class:`~r1rl.tasks.base.EpochSampler`; ``task`` supplies stop sequences and system prompt.

    ``evaluate`` (called every ``cfg.eval_every`` steps and at the end) returns held-out
    metrics for the current policy, logged under ``eval/``.

    A step whose rewards or log-probs are non-finite is skipped (no update) and counted in
    ``skipped_steps``; after ``max_consecutive_skips`` in a row the run halts with
    :class:`NonFiniteError`. Checkpoints are only written when every trainable weight is finite.

    Under a launcher (``par``) each rank rolls out ``prompts_per_step / world`` prompts; the
    main process evaluates, logs and writes checkpoints.
    """
    par = par or Parallel()
    opts = {"policy": torch.optim.AdamW(ac.adapter_parameters("policy"), lr=cfg.lr, weight_decay=0.0)}
    if ac.has_critic:
        critic_params = ac.adapter_parameters("critic")
        opts["critic"] = torch.optim.AdamW(critic_params, lr=cfg.critic_lr, weight_decay=0.0)
    scheds = {k: cosine_schedule(o, cfg.warmup_steps, cfg.steps, 1.0) for k, o in opts.items()}
    kl_ctl: core.FixedKLController = (
        core.AdaptiveKLController(cfg.kl_coef, cfg.kl_target, cfg.kl_horizon)
        if cfg.kl_target is not None
        else core.FixedKLController(cfg.kl_coef)
    )
    generator = torch.Generator().manual_seed(seed)
    sampler = EpochSampler(len(pool), cfg.prompts_per_step, seed=seed + 1)
    policy = ac.generation_model
    replay = RoutingReplay(policy) if routers(policy) else None  # drift telemetry, or replay
    start, skipped_steps, in_a_row = 0, 0, 0
    state = load_latest_checkpoint(run.checkpoints)
    if state is not None:
        ac.load_state_dict(state["model"], strict=False)
        for k in opts:
            opts[k].load_state_dict(state["optimizer"][k])
            scheds[k].load_state_dict(state["scheduler"][k])
        kl_ctl.load_state_dict(state["kl_ctl"])
        if "rewards" in state:
            hierarchy.load_state_dict(state["rewards"])  # running normalisation statistics
        generator.set_state(state["generator"])
        sampler.load_state_dict(state["sampler"])
        par.restore_rng(state)
        start = state["step"]
        skipped_steps = state.get("skipped_steps", 0)
        run.truncate_metrics(start)
    par.broadcast_(ac.trainable_state().values())  # every rank starts from the main process's weights
    if par.enabled:  # per-tier reward normalisation over every rank's scores
        hierarchy.gather = lambda values: [v for part in par.gather_objects(values) for v in part]
    bar = tqdm(
        range(start, cfg.steps), desc="ppo", initial=start, total=cfg.steps, dynamic_ncols=True,
        disable=not par.is_main,
    )  # fmt: skip
    for step in bar:
        t0 = time.perf_counter()
        # 1. rollout + score + advantages
        hierarchy.set_step(step)  # scheduled tier weights (a reward curriculum)
        batch = par.shard_list(rows(pool, sampler.next()))  # every rank draws the same global batch
        ro = rollout(ac, tokenizer, batch, hierarchy, cfg, kl_ctl.value, replay, par, task)
        t_roll = time.perf_counter() - t0
        # 2. update (skipped when the rollout holds non-finite rewards or log-probs)
        if ro.finite:
            update_policy = step >= cfg.critic_warmup_steps
            stats = update(ac, ro, cfg, opts, generator, kl_ctl.value, update_policy, replay, par)
            ro.metrics = _reduce_rollout_metrics(ro.metrics, par)
            kl_ctl.update(ro.metrics["kl"], ro.mask.shape[0] * par.world)
        else:
            log.warning("step %d: non-finite rewards or log-probs; update skipped", step + 1)
            stats = {"skipped_updates": float(cfg.ppo_epochs)}
            ro.metrics = _reduce_rollout_metrics(ro.metrics, par)
        for s in scheds.values():
            s.step()
        step_skipped = not ro.finite or stats["skipped_updates"] > 0
        skipped_steps += int(step_skipped)
        in_a_row = in_a_row + 1 if step_skipped else 0
        if in_a_row >= cfg.max_consecutive_skips:
            raise NonFiniteError(
                f"ppo halted at step {step + 1}: {in_a_row} steps in a row had non-finite rewards, "
                "log-probs, losses or gradients; lower ppo.lr or check the reward functions "
                f"(last good checkpoint in {run.checkpoints})"
            )
        # 3. log
        done = step + 1
        load = stats.pop("moe/expert_load", None)
        dt = time.perf_counter() - t0
        metrics = {
            **ro.metrics,
            **stats,
            "skipped_steps": float(skipped_steps),
            "kl_coef": kl_ctl.value,
            "lr": scheds["policy"].get_last_lr()[0],
            "perf/step_s": dt,
            "perf/rollout_s": t_roll,
            "perf/tokens_per_s": float(par.all_sum(ro.attention_mask.sum())) / dt,
            "perf/samples_per_s": ro.mask.shape[0] * par.world / dt,
        }
        every = cfg.eval_every
        eval_due = evaluate is not None and every > 0 and (done % every == 0 or done == cfg.steps)
        if eval_due and par.is_main:
            metrics.update({f"eval/{k}": v for k, v in evaluate().items()})
        log_due = done % cfg.log_every == 0 or done == cfg.steps or eval_due
        if log_due and par.is_main:
            run.log(done, "ppo", metrics)
            with (run.path / "rollouts.jsonl").open("a") as f:
                f.write(json.dumps({"step": done, "samples": ro.samples}) + "\n")
            if load is not None:
                with (run.path / "expert_load.jsonl").open("a") as f:
                    f.write(json.dumps({"step": done, "tokens_per_expert": load}) + "\n")
        bar.set_postfix(reward=f"{metrics['reward/mean']:.3f}", kl=f"{metrics['kl']:.3f}")
        # 4. checkpoint
        if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < cfg.steps:
            trainable = ac.trainable_state()
            if not all(torch.isfinite(p).all() for p in trainable.values() if p.is_floating_point()):
                log.warning("step %d: non-finite weights; checkpoint not written", done)
                continue
            rng = par.rng_states()  # a collective: every rank takes part
            if not par.is_main:
                continue
            save_checkpoint(
                run.checkpoints,
                done,
                {
                    "model": trainable,
                    "optimizer": {k: o.state_dict() for k, o in opts.items()},
                    "scheduler": {k: s.state_dict() for k, s in scheds.items()},
                    "kl_ctl": kl_ctl.state_dict(),
                    "rewards": hierarchy.state_dict(),
                    "generator": generator.get_state(),
                    "sampler": sampler.state_dict(),
                    **rng,
                    "step": done,
                    "skipped_steps": skipped_steps,
                },
                cfg.keep_checkpoints,
            )
    bar.close()
    par.check_in_sync(ac.trainable_state().values(), "trained adapters")
