"""The PPO update: ``ppo_epochs`` passes over shuffled minibatches; a policy step and a critic step each.

Each minibatch is one optimizer step per role, accumulated over micro-batches of
``micro_batch_size`` sequences; micro-batch losses are weighted so their sum equals the
minibatch's aggregated loss. The policy step and the critic step iterate the *same* minibatch
(one permutation per epoch). A non-finite loss or gradient skips that optimizer step.

Under a launcher each rank holds ``1/world`` of the rollout and of every minibatch; micro-batch
weights are shares of the *global* minibatch, and gradients are summed over ranks before
clipping, so the step equals a lone process's on the whole minibatch.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

from r1rl.algorithms import ppo
from r1rl.algorithms.router import (
    expert_load,
    load_metrics,
    router_entropy,
    router_z_loss,
    sequence_balance_loss,
    switch_loss,
    variance_balance_loss,
)
from r1rl.config import MoEConfig, PPOSettings
from r1rl.models.moe import RoutingReplay, router_scoring, routing_shape
from r1rl.parallel.distributed import Parallel
from r1rl.train.common import grad_norm_finite
from r1rl.train.ppo.context import PPOContext
from r1rl.train.ppo.objectives import POLICY_LOSSES
from r1rl.train.ppo.roles import ActorCritic, CausalLMOutput, FullActorCritic
from r1rl.train.ppo.rollout import Rollout, logprob_diff_metrics

# the update's averaged metrics, and ``moe/expert_load``: (L, E) tokens per expert, for expert_load.jsonl
UpdateStats = dict[str, float | list[list[float]]]


class Behaviour:
    """π_old of a rollout, recorded before the update — or, on-policy, the update's own pass.

    On-policy (:func:`r1rl.train.ppo.rollout.on_policy`) no separate pass ran: π_old is the update's
    first forward pass, detached (so every ratio is exactly 1 and the gradient is the
    advantage's), the KL to the reference and the engine's log-prob mismatch are measured on
    that pass, and there is no earlier routing to replay. With ``tis_cap``, each token's policy
    term is weighted by min(π_old/π_engine, tis_cap) (:func:`r1rl.algorithms.ppo.truncated_is_weights`).
    """

    def __init__(self, batch: Rollout, estimator: str, tis_cap: float | None = None) -> None:
        self.recorded = batch.old_logprobs
        self.estimator = estimator
        self.engine, self.tis_cap = batch.engine_logprobs, tis_cap
        self.kl_seq = (
            torch.zeros(batch.mask.shape[0], device=batch.mask.device) if self.recorded is None else None
        )  # (B,)
        self.diff: list[tuple[torch.Tensor, ...]] = []  # on-policy: (engine, update's, mask) log-prob parts

    @property
    def on_policy(self) -> bool:
        return self.recorded is None

    def old(self, idx: torch.Tensor, logprobs: torch.Tensor) -> torch.Tensor:
        """π_old of the rows ``idx``, given the update's log-probs of them. (b, T)."""
        if self.recorded is not None:
            return self.recorded[idx]
        return logprobs.detach()

    def is_weights(self, idx: torch.Tensor, old: torch.Tensor) -> torch.Tensor | None:
        """TIS weights of the rows ``idx`` given their π_old, (b, T); None without ``tis_cap``."""
        if self.tis_cap is None or self.engine is None:
            return None
        return ppo.truncated_is_weights(old, self.engine[idx], self.tis_cap)

    def observe(
        self, idx: torch.Tensor, logprobs: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor
    ) -> None:
        """On-policy: the per-sequence KL to the reference and the engine's mismatch, from this pass."""
        if self.kl_seq is not None:
            with torch.no_grad():
                self.kl_seq[idx] = (ppo.kl_penalty(logprobs.detach(), ref, self.estimator) * mask).sum(1)
                if self.engine is not None:  # on-policy: one epoch, one minibatch, so each row once
                    self.diff.append((self.engine[idx], logprobs.detach(), mask))

    def mismatch(self, parallel: Parallel) -> dict[str, float]:
        """On-policy: ``rollout/logprob_diff`` and its max over the update's passes (every rank)."""
        if not self.diff:
            return {}
        engine, logprobs, mask = (torch.cat(parts) for parts in zip(*self.diff))
        return logprob_diff_metrics(engine, logprobs, mask, parallel)


@dataclass
class Minibatch:
    """One optimizer step's rows of the rollout, as micro-batches, and each one's share of its loss."""

    parts: list[torch.Tensor]  # row indices of each micro-batch
    weights: list[float]  # each micro-batch's share of the (global) minibatch loss


@dataclass
class PolicyTerms:
    """What every policy step of one update shares besides the rollout."""

    kl_coef: float  # β of the KL loss term (``kl_in: loss``)
    behaviour: Behaviour
    replay: RoutingReplay | None  # the rollout's routing (None on-policy: no earlier pass)
    update_policy: bool = True  # False during the critic warm-up: the policy takes no step


def update(
    ctx: PPOContext,
    batch: Rollout,
    opts: Mapping[str, torch.optim.Optimizer],
    generator: torch.Generator,
    kl_coef: float,
    update_policy: bool = True,
) -> UpdateStats:
    """``ppo_epochs`` passes over shuffled minibatches (see the module docstring); averaged metrics.

    ``opts``: the policy's (and the critic's) optimizer; ``generator`` orders the minibatches.
    With ``update_policy=False`` (critic warm-up) the policy takes no step.
    """
    cfg, parallel, roles = ctx.settings, ctx.parallel, ctx.roles
    B = batch.mask.shape[0]
    mb = parallel.check_divisible(cfg.optim.minibatch_size, "optim.minibatch_size")  # this rank's share
    behaviour = Behaviour(batch, cfg.algorithm.kl_estimator, cfg.rollout.tis_cap)
    replay = None if behaviour.on_policy else ctx.replay  # on-policy: no earlier pass to replay or compare
    terms = PolicyTerms(kl_coef, behaviour, replay, update_policy)
    stats: dict[str, list[float]] = {}
    load = None  # (L, E) tokens per expert, summed over the step's forward passes
    micro = min(cfg.optim.micro_batch_size or mb, mb)
    for _ in range(cfg.optim.ppo_epochs):
        perm = torch.randperm(B, generator=generator)
        for start in range(0, B, mb):
            idx = perm[start : start + mb]
            parts = [idx[i : i + micro] for i in range(0, len(idx), micro)]
            minibatch = Minibatch(
                parts, _micro_weights(batch.mask, parts, cfg.algorithm.loss_agg_mode, parallel)
            )
            row, part_load = policy_step(ctx, batch, minibatch, opts["policy"], terms)
            if part_load is not None:
                load = part_load if load is None else load + part_load
            if roles.has_critic:
                critic = critic_step(ctx, batch, minibatch, opts["critic"])
                row["skipped_updates"] = float(row["skipped_updates"] or critic.pop("skipped"))
                row.update(critic)
            for k, v in row.items():
                stats.setdefault(k, []).append(v)
    result: UpdateStats = {k: sum(v) / len(v) for k, v in stats.items()}
    result["skipped_updates"] = sum(stats["skipped_updates"])
    if behaviour.kl_seq is not None:
        per_token = float(behaviour.kl_seq.sum() / batch.mask.sum().clamp_min(1))
        batch.metrics.update(
            parallel.all_mean({"kl": float(behaviour.kl_seq.mean()), "kl/per_token": per_token})
        )
        batch.metrics.update(behaviour.mismatch(parallel))
    if load is not None:
        result["moe/expert_load"] = parallel.all_sum(load).tolist()  # to expert_load.jsonl, not metrics.jsonl
    if roles.has_critic:
        ev = ppo.explained_variance(batch.values, batch.returns, batch.mask)
        result["value/explained_var"] = parallel.all_mean({"ev": ev})["ev"]
    return result


def policy_step(
    ctx: PPOContext, batch: Rollout, minibatch: Minibatch, opt: torch.optim.Optimizer, terms: PolicyTerms
) -> tuple[dict[str, float], torch.Tensor | None]:
    """One policy optimizer step on a minibatch (its micro-batches); metrics and expert load."""
    roles, parallel = ctx.roles, ctx.parallel
    rows, finite, load = [], True, None
    top_k = (routing_shape(roles.config) or (0, 1))[1]
    for part, w in zip(minibatch.parts, minibatch.weights):
        row, ok, part_load = _policy_micro_step(ctx, batch, part, w, terms, top_k)
        rows.append(row)
        finite = finite and ok
        if part_load is not None:
            load = part_load if load is None else load + part_load
    params = roles.adapter_parameters("policy")
    parallel.sync_grads(params)
    norm, ok = grad_norm_finite(params, ctx.settings.optim.max_grad_norm)
    ok = ok and parallel.all_true(finite)
    if ok and terms.update_policy:
        opt.step()
    opt.zero_grad(set_to_none=True)
    out = parallel.all_sum_dict({k: sum(r[k] * w for r, w in zip(rows, minibatch.weights)) for k in rows[0]})
    out.update(grad_norm=norm, skipped_updates=float(not ok))
    return out, load


def critic_step(
    ctx: PPOContext, batch: Rollout, minibatch: Minibatch, opt: torch.optim.Optimizer
) -> dict[str, float]:
    """One critic optimizer step on the same minibatch; ``skipped`` is 1.0 when it took none."""
    roles, parallel = ctx.roles, ctx.parallel
    rows, finite = [], True
    for part, w in zip(minibatch.parts, minibatch.weights):
        row, ok = _critic_micro_step(roles, batch, part, w, ctx.settings)
        rows.append(row)
        finite = finite and ok
    params = roles.adapter_parameters("critic")
    parallel.sync_grads(params)
    norm, ok = grad_norm_finite(params, ctx.settings.optim.max_grad_norm)
    finite = parallel.all_true(finite)
    if ok and finite:
        opt.step()
    opt.zero_grad(set_to_none=True)
    roles.use("policy")
    out = parallel.all_sum_dict({k: sum(r[k] * w for r, w in zip(rows, minibatch.weights)) for k in rows[0]})
    out.update({"value/grad_norm": norm, "skipped": float(not (ok and finite))})
    return out


def _micro_weights(
    mask: torch.Tensor, parts: list[torch.Tensor], agg_mode: str, parallel: Parallel | None = None
) -> list[float]:
    """Each micro-batch's share of the (global) minibatch loss: by tokens (token-mean) or by sequences."""
    if agg_mode == "token-mean":
        sizes = [float(mask[p].sum()) for p in parts]
    else:
        sizes = [float((mask[p].sum(1) > 0).sum()) for p in parts]
    total = sum(sizes)
    if parallel is not None and parallel.enabled:
        total = float(parallel.all_sum(torch.tensor(total, dtype=torch.float64)))
    return [s / total if total > 0 else 0.0 for s in sizes]


def _policy_micro_step(
    ctx: PPOContext, batch: Rollout, idx: torch.Tensor, weight: float, terms: PolicyTerms, top_k: int
) -> tuple[dict[str, float], bool, torch.Tensor | None]:
    """Forward and backward of the policy loss on ``idx``, scaled by ``weight``.

    Returns (metrics, finite, (L, E) expert load or None)."""
    algorithm, moe, replay = ctx.settings.algorithm, ctx.settings.moe, terms.replay
    ids, am, m = batch.input_ids[idx], batch.attention_mask[idx], batch.mask[idx]

    def routing() -> AbstractContextManager[
        None
    ]:  # the recorded routing of these rows (replayed, or only compared)
        return replay.replay(idx, am, force=moe.routing_replay) if replay is not None else nullcontext()

    with routing():
        logprobs, entropy, out = ctx.roles.policy_logprobs(
            ids, am, batch.n_completion, with_entropy=True, output_router_logits=True
        )
    objective = POLICY_LOSSES.get(algorithm.importance_sampling_level, "algorithm.importance_sampling_level")
    old = terms.behaviour.old(idx, logprobs)
    is_weights = terms.behaviour.is_weights(idx, old)  # (b, T) or None
    pg_loss, row = objective(logprobs, old, batch.advantages[idx], m, algorithm, is_weights=is_weights)
    tis_cap = ctx.settings.rollout.tis_cap
    if is_weights is not None and tis_cap is not None:  # weights are only given with a cap
        row.update(ppo.tis_metrics(is_weights, tis_cap, m))
    terms.behaviour.observe(idx, logprobs, batch.ref_logprobs[idx], m)
    loss = pg_loss
    if algorithm.kl_in == "loss" and terms.kl_coef > 0:
        kl_loss = ppo.agg_loss(
            ppo.kl_penalty(logprobs, batch.ref_logprobs[idx], algorithm.kl_estimator),
            m,
            algorithm.loss_agg_mode,
        )
        loss = loss + terms.kl_coef * kl_loss
        row["kl_loss"] = kl_loss.item()
    loss = _with_router_terms(loss, out, am, moe, row, top_k, router_scoring(ctx.roles.config))
    if replay is not None and replay.agreement:
        row["moe/routing_agreement"] = sum(replay.agreement) / len(replay.agreement)
    finite = bool(torch.isfinite(loss))
    if finite and weight > 0:
        with routing():  # a checkpointed backward recomputes each layer's routing (RoutingReplay)
            (loss * weight).backward()
    assert entropy is not None  # asked for (with_entropy)
    row.update(loss=pg_loss.item(), entropy=float(ppo.masked_mean(entropy.detach(), m)))
    if out.aux_loss is not None and "moe/aux_loss" not in row:
        row["moe/aux_loss"] = out.aux_loss.item()
    load = None
    if out.router_logits is not None:
        load = expert_load(out.router_logits, top_k, am)
        row.update(load_metrics(load, router_entropy(out.router_logits, am)))
    return row, finite, load


def _with_router_terms(
    loss: torch.Tensor,
    out: CausalLMOutput,
    attention_mask: torch.Tensor,
    cfg: MoEConfig,
    row: dict[str, float],
    top_k: int,
    scoring: str,
) -> torch.Tensor:
    """``loss`` plus the MoE terms of the objective, from the router logits: load balance (Switch,
    sequence-wise or variance; ``auto`` picks by the router's scoring), router z-loss. Each is logged."""
    logits = out.router_logits
    if cfg.router_aux_loss_coef > 0 and logits is not None:
        kind = cfg.router_loss
        if kind == "auto":
            kind = "sequence" if scoring == "sigmoid" else "switch"
        if kind == "switch":  # the model's own where it returns it (the same loss), else from the logits
            aux = out.aux_loss if out.aux_loss is not None else switch_loss(logits, top_k, attention_mask)
            row["moe/aux_loss"] = aux.item()
        elif kind == "sequence":
            aux = sequence_balance_loss(logits, top_k, attention_mask)
            row["moe/aux_loss"] = aux.item()
        else:
            aux = variance_balance_loss(logits, attention_mask, alpha=1.0)
            row["moe/variance_loss"] = aux.item()
        loss = loss + cfg.router_aux_loss_coef * aux
    if cfg.router_z_loss_coef > 0 and logits is not None:
        z = router_z_loss(logits, attention_mask)
        loss = loss + cfg.router_z_loss_coef * z
        row["moe/z_loss"] = z.item()
    return loss


def _critic_micro_step(
    roles: ActorCritic | FullActorCritic, batch: Rollout, idx: torch.Tensor, weight: float, cfg: PPOSettings
) -> tuple[dict[str, float], bool]:
    """Forward and backward of the clipped value loss on ``idx``, scaled by ``weight``."""
    algorithm = cfg.algorithm
    values = roles.values(batch.input_ids[idx], batch.attention_mask[idx], batch.n_completion)
    v_loss, row = ppo.value_loss(
        values, batch.values[idx], batch.returns[idx], batch.mask[idx], algorithm.value_clip_eps,
        algorithm.loss_agg_mode,
    )  # fmt: skip
    finite = bool(torch.isfinite(v_loss))
    if finite and weight > 0:
        (algorithm.vf_coef * v_loss * weight).backward()
    row["value/loss"] = v_loss.item()
    return row, finite
