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

from contextlib import nullcontext
from typing import Any

import torch

from r1rl.algorithms import ppo
from r1rl.algorithms.router import (
    expert_load,
    load_metrics,
    router_entropy,
    router_z_loss,
    variance_balance_loss,
)
from r1rl.config import PPOSettings
from r1rl.models.moe import RoutingReplay
from r1rl.parallel.distributed import Parallel
from r1rl.train.common import grad_norm_finite
from r1rl.train.ppo.objectives import POLICY_LOSSES
from r1rl.train.ppo.roles import ActorCritic, FullActorCritic
from r1rl.train.ppo.rollout import Rollout, logprob_diff_metrics


class Behaviour:
    """π_old of a rollout, recorded before the update — or, on-policy, the update's own pass.

    On-policy (:func:`r1rl.train.ppo.rollout.on_policy`) no separate pass ran: π_old is the update's
    first forward pass, detached (so every ratio is exactly 1 and the gradient is the
    advantage's), the KL to the reference and the engine's log-prob mismatch are measured on
    that pass, and there is no earlier routing to replay. With ``tis_cap``, each token's policy
    term is weighted by min(π_old/π_engine, tis_cap) (:func:`r1rl.algorithms.ppo.truncated_is_weights`).
    """

    def __init__(self, ro: Rollout, estimator: str, tis_cap: float | None = None) -> None:
        self.recorded = ro.old_logprobs
        self.estimator = estimator
        self.engine, self.tis_cap = ro.engine_logprobs, tis_cap
        self.kl_seq = (
            torch.zeros(ro.mask.shape[0], device=ro.mask.device) if self.recorded is None else None
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

    def mismatch(self, par: Parallel) -> dict[str, float]:
        """On-policy: ``rollout/logprob_diff`` and its max over the update's passes (every rank)."""
        if not self.diff:
            return {}
        engine, logprobs, mask = (torch.cat(parts) for parts in zip(*self.diff))
        return logprob_diff_metrics(engine, logprobs, mask, par)


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
    """``ppo_epochs`` passes over shuffled minibatches (see the module docstring); averaged metrics.

    With ``update_policy=False`` (critic warm-up) the policy takes no step.
    """
    par = par or Parallel()
    B = ro.mask.shape[0]
    mb = par.check_divisible(cfg.optim.minibatch_size, "optim.minibatch_size")  # this rank's share
    behaviour = Behaviour(ro, cfg.algorithm.kl_estimator, cfg.rollout.tis_cap)
    replay = None if behaviour.on_policy else replay  # on-policy: no earlier pass to replay or compare
    stats: dict[str, list[float]] = {}
    load = None  # (L, E) tokens per expert, summed over the step's forward passes
    micro = min(cfg.optim.micro_batch_size or mb, mb)
    for _ in range(cfg.optim.ppo_epochs):
        perm = torch.randperm(B, generator=generator)
        for start in range(0, B, mb):
            idx = perm[start : start + mb]
            parts = [idx[i : i + micro] for i in range(0, len(idx), micro)]
            weights = _micro_weights(ro.mask, parts, cfg.algorithm.loss_agg_mode, par)
            row, part_load = policy_step(ac, ro, parts, weights, cfg, opts["policy"], kl_coef,
                                         behaviour, replay, par, update_policy)  # fmt: skip
            if part_load is not None:
                load = part_load if load is None else load + part_load
            if ac.has_critic:
                critic = critic_step(ac, ro, parts, weights, cfg, opts["critic"], par)
                row["skipped_updates"] = float(row["skipped_updates"] or critic.pop("skipped"))
                row.update(critic)
            for k, v in row.items():
                stats.setdefault(k, []).append(v)
    result = {k: sum(v) / len(v) for k, v in stats.items()}
    result["skipped_updates"] = sum(stats["skipped_updates"])
    if behaviour.kl_seq is not None:
        per_token = float(behaviour.kl_seq.sum() / ro.mask.sum().clamp_min(1))
        ro.metrics.update(par.all_mean({"kl": float(behaviour.kl_seq.mean()), "kl/per_token": per_token}))
        ro.metrics.update(behaviour.mismatch(par))
    if load is not None:
        result["moe/expert_load"] = par.all_sum(load).tolist()  # to expert_load.jsonl, not metrics.jsonl
    if ac.has_critic:
        ev = ppo.explained_variance(ro.values, ro.returns, ro.mask)
        result["value/explained_var"] = par.all_mean({"ev": ev})["ev"]
    return result


def policy_step(
    ac: ActorCritic | FullActorCritic, ro: Rollout, parts: list[torch.Tensor], weights: list[float],
    cfg: PPOSettings, opt: torch.optim.Optimizer, kl_coef: float, behaviour: Behaviour,
    replay: RoutingReplay | None, par: Parallel, update_policy: bool = True,
) -> tuple[dict[str, float], torch.Tensor | None]:  # fmt: skip
    """One policy optimizer step on a minibatch (its micro-batch ``parts``); metrics and expert load."""
    rows, finite, load = [], True, None
    top_k = getattr(ac.config, "num_experts_per_tok", 1)
    for part, w in zip(parts, weights):
        row, ok, part_load = _policy_micro_step(ac, ro, part, w, cfg, kl_coef, top_k, behaviour, replay)
        rows.append(row)
        finite = finite and ok
        if part_load is not None:
            load = part_load if load is None else load + part_load
    params = ac.adapter_parameters("policy")
    par.sync_grads(params)
    norm, ok = grad_norm_finite(params, cfg.optim.max_grad_norm)
    ok = ok and par.all_true(finite)
    if ok and update_policy:
        opt.step()
    opt.zero_grad(set_to_none=True)
    out = par.all_sum_dict({k: sum(r[k] * w for r, w in zip(rows, weights)) for k in rows[0]})
    out.update(grad_norm=norm, skipped_updates=float(not ok))
    return out, load


def critic_step(
    ac: ActorCritic | FullActorCritic, ro: Rollout, parts: list[torch.Tensor], weights: list[float],
    cfg: PPOSettings, opt: torch.optim.Optimizer, par: Parallel,
) -> dict[str, float]:  # fmt: skip
    """One critic optimizer step on the same minibatch; ``skipped`` is 1.0 when it took none."""
    rows, finite = [], True
    for part, w in zip(parts, weights):
        row, ok = _critic_micro_step(ac, ro, part, w, cfg)
        rows.append(row)
        finite = finite and ok
    params = ac.adapter_parameters("critic")
    par.sync_grads(params)
    norm, ok = grad_norm_finite(params, cfg.optim.max_grad_norm)
    finite = par.all_true(finite)
    if ok and finite:
        opt.step()
    opt.zero_grad(set_to_none=True)
    ac.use("policy")
    out = par.all_sum_dict({k: sum(r[k] * w for r, w in zip(rows, weights)) for k in rows[0]})
    out.update({"value/grad_norm": norm, "skipped": float(not (ok and finite))})
    return out


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
    ac: Any, ro: Rollout, idx: torch.Tensor, weight: float, cfg: PPOSettings, kl_coef: float, top_k: int,
    behaviour: Behaviour, replay: RoutingReplay | None,
) -> tuple[dict[str, float], bool, torch.Tensor | None]:  # fmt: skip
    """Forward and backward of the policy loss on ``idx``, scaled by ``weight``.

    Returns (metrics, finite, (L, E) expert load or None)."""
    a, m_cfg = cfg.algorithm, cfg.moe
    ids, am, m = ro.input_ids[idx], ro.attention_mask[idx], ro.mask[idx]

    def routing():  # the recorded routing of these rows (replayed, or only compared)
        return replay.replay(idx, am, force=m_cfg.routing_replay) if replay is not None else nullcontext()

    with routing():
        logprobs, entropy, out = ac.policy_logprobs(
            ids, am, ro.n_completion, with_entropy=True, output_router_logits=True
        )
    objective = POLICY_LOSSES.get(a.importance_sampling_level, "algorithm.importance_sampling_level")
    old = behaviour.old(idx, logprobs)
    is_weights = behaviour.is_weights(idx, old)  # (b, T) or None
    pg_loss, row = objective(logprobs, old, ro.advantages[idx], m, a, is_weights=is_weights)
    if is_weights is not None:
        row.update(ppo.tis_metrics(is_weights, cfg.rollout.tis_cap, m))
    behaviour.observe(idx, logprobs, ro.ref_logprobs[idx], m)
    loss = pg_loss
    if a.kl_in == "loss" and kl_coef > 0:
        kl_loss = ppo.agg_loss(
            ppo.kl_penalty(logprobs, ro.ref_logprobs[idx], a.kl_estimator), m, a.loss_agg_mode
        )
        loss = loss + kl_coef * kl_loss
        row["kl_loss"] = kl_loss.item()
    loss = _with_router_terms(loss, out, am, m_cfg, row)
    if replay is not None and replay.agreement:
        row["moe/routing_agreement"] = sum(replay.agreement) / len(replay.agreement)
    finite = bool(torch.isfinite(loss))
    if finite and weight > 0:
        with routing():  # a checkpointed backward recomputes each layer's routing (RoutingReplay)
            (loss * weight).backward()
    row.update(loss=pg_loss.item(), entropy=float(ppo.masked_mean(entropy.detach(), m)))
    if out.aux_loss is not None:
        row["moe/aux_loss"] = out.aux_loss.item()
    load = None
    if out.router_logits is not None:
        load = expert_load(out.router_logits, top_k, am)
        row.update(load_metrics(load, router_entropy(out.router_logits, am)))
    return row, finite, load


def _with_router_terms(
    loss: torch.Tensor, out: Any, attention_mask: torch.Tensor, cfg: Any, row: dict[str, float]
) -> torch.Tensor:
    """``loss`` plus the MoE terms of the objective: load balance (Switch or variance), router z-loss."""
    logits = out.router_logits
    if cfg.router_aux_loss_coef > 0 and logits is not None:
        if cfg.router_loss == "switch" and out.aux_loss is not None:
            loss = loss + cfg.router_aux_loss_coef * out.aux_loss
        elif cfg.router_loss == "variance":
            var_loss = variance_balance_loss(logits, attention_mask, alpha=1.0)
            loss = loss + cfg.router_aux_loss_coef * var_loss
            row["moe/variance_loss"] = var_loss.item()
    if cfg.router_z_loss_coef > 0 and logits is not None:
        z = router_z_loss(logits, attention_mask)
        loss = loss + cfg.router_z_loss_coef * z
        row["moe/z_loss"] = z.item()
    return loss


def _critic_micro_step(
    ac: ActorCritic | FullActorCritic, ro: Rollout, idx: torch.Tensor, weight: float, cfg: PPOSettings
) -> tuple[dict[str, float], bool]:
    """Forward and backward of the clipped value loss on ``idx``, scaled by ``weight``."""
    a = cfg.algorithm
    values = ac.values(ro.input_ids[idx], ro.attention_mask[idx], ro.n_completion)
    v_loss, row = ppo.value_loss(
        values, ro.values[idx], ro.returns[idx], ro.mask[idx], a.value_clip_eps, a.loss_agg_mode
    )
    finite = bool(torch.isfinite(v_loss))
    if finite and weight > 0:
        (a.vf_coef * v_loss * weight).backward()
    row["value/loss"] = v_loss.item()
    return row, finite
