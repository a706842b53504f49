"""The PPO loop: rollout → score → reference log-probs and values → GAE → PPO epochs → log → checkpoint.

Notation: ``B`` sequences per step (prompts × samples), ``P`` prompt tokens, ``T`` completion tokens.

Implementation details that matter (each pinned by a test in ``tests/ppo``):

1. The reward is a sequence score from the reward hierarchy, placed on the last real
   completion token; every token also pays −β·KL(π‖π_ref) (Ziegler et al. 2019).
2. GAE with γ, λ over completion tokens only; the value after the last real token is 0.
3. Advantages are whitened over the batch's real tokens (optional).
4. ``old_logprobs`` and ``values`` are computed once per rollout, before any update, with the
   same left-padded layout and position ids that generation used.
5. The policy loss is the clipped surrogate; the critic loss is the clipped value loss; both
   are reduced by one aggregator (``loss_agg_mode``).
6. Policy and critic are two LoRA adapters on one frozen base with separate optimizers; the
   reference is the base with adapters disabled.
7. A completion that never emits EOS (truncated) is scored as written; its last token
   still receives the score.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from r1rl.config import PPOSettings
from r1rl.generation import generate
from r1rl.moe import expert_load, load_metrics
from r1rl.ppo import core
from r1rl.ppo.roles import ActorCritic
from r1rl.rewards.hierarchy import RewardHierarchy
from r1rl.rundir import RunDir
from r1rl.tasks.arithmetic import ArithmeticProblem
from r1rl.training import (
    cosine_schedule,
    grad_norm_finite,
    load_latest_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)

log = logging.getLogger(__name__)


@dataclass
class Rollout:
    input_ids: torch.Tensor  # (B, P + T)
    attention_mask: torch.Tensor  # (B, P + T)
    mask: torch.Tensor  # (B, T) completion tokens through EOS
    scores: torch.Tensor  # (B,) combined reward
    old_logprobs: torch.Tensor  # (B, T)
    ref_logprobs: torch.Tensor  # (B, T)
    values: torch.Tensor  # (B, T)
    advantages: torch.Tensor  # (B, T)
    returns: torch.Tensor  # (B, T)
    metrics: dict[str, float]
    samples: list[dict[str, Any]]

    @property
    def n_completion(self) -> int:
        return self.mask.shape[1]


def rollout(
    ac: ActorCritic,
    tokenizer: Any,
    problems: list[ArithmeticProblem],
    hierarchy: RewardHierarchy,
    cfg: PPOSettings,
    kl_coef: float,
) -> Rollout:
    """Generate, score, and compute everything the update needs (no gradients)."""
    prompts = [p.prompt for p in problems for _ in range(cfg.samples_per_prompt)]
    answers = [p.answer for p in problems for _ in range(cfg.samples_per_prompt)]
    ac.use("policy")
    g = generate(
        ac.peft, tokenizer, prompts, max_new_tokens=cfg.max_new_tokens, do_sample=True,
        temperature=cfg.temperature, top_p=cfg.top_p,
    )  # fmt: skip
    res = hierarchy(prompts, g.texts, answer=answers)
    scores = torch.tensor(res.rewards, dtype=torch.float32)  # (B,)
    input_ids = torch.cat([g.prompt_ids, g.completion_ids], 1)  # (B, P + T)
    attention_mask = torch.cat([g.prompt_mask, g.completion_mask], 1)
    mask = g.completion_mask.float()  # (B, T)
    T = mask.shape[1]
    with torch.no_grad():
        old_logprobs, _, _ = ac.policy_logprobs(input_ids, attention_mask, T)
        ref_logprobs, _, _ = ac.policy_logprobs(input_ids, attention_mask, T, reference=True)
        values = ac.values(input_ids, attention_mask, T)
        ac.use("policy")
    kl = core.kl_penalty(old_logprobs, ref_logprobs, cfg.kl_estimator) * mask  # (B, T)
    rewards = core.token_rewards(scores, kl, mask, kl_coef)  # (B, T)
    advantages, returns = core.gae(rewards, values * mask, mask, cfg.gamma, cfg.gae_lambda)
    if cfg.whiten_advantages:
        advantages = core.masked_whiten(advantages, mask)
    metrics = {
        **res.metrics(),
        "kl": float(kl.sum(1).mean()),
        "response/length": float(mask.sum(1).mean()),
        "response/truncated": float(g.truncated.float().mean()),
    }
    samples = [
        {"prompt": p, "completion": c, "reward": r}
        for p, c, r in zip(prompts[:4], g.texts[:4], res.rewards[:4])
    ]
    return Rollout(
        input_ids, attention_mask, mask, scores, old_logprobs, ref_logprobs, values * mask,
        advantages, returns, metrics, samples,
    )  # fmt: skip


def update(
    ac: ActorCritic,
    ro: Rollout,
    cfg: PPOSettings,
    opts: dict[str, torch.optim.Optimizer],
    generator: torch.Generator,
    update_policy: bool = True,
) -> dict[str, float]:
    """``ppo_epochs`` passes over shuffled minibatches; policy and critic step separately.

    With ``update_policy=False`` (critic warm-up) the policy's loss is computed and logged but
    no policy step is taken.
    """
    B, T = ro.mask.shape
    stats: dict[str, list[float]] = {}
    top_k = getattr(ac.config, "num_experts_per_tok", 1)
    for _ in range(cfg.ppo_epochs):
        perm = torch.randperm(B, generator=generator)
        for start in range(0, B, cfg.minibatch_size):
            idx = perm[start : start + cfg.minibatch_size]
            ids, am, m = ro.input_ids[idx], ro.attention_mask[idx], ro.mask[idx]
            want_router = cfg.router_aux_loss_coef > 0
            logprobs, entropy, out = ac.policy_logprobs(
                ids, am, T, with_entropy=True, output_router_logits=True
            )
            pg_loss, pg_stats = core.policy_loss(
                logprobs, ro.old_logprobs[idx], ro.advantages[idx], m, clip_eps_low=cfg.clip_eps,
                agg_mode=cfg.loss_agg_mode,
            )  # fmt: skip
            loss = pg_loss
            if want_router and out.aux_loss is not None:
                loss = loss + cfg.router_aux_loss_coef * out.aux_loss
            loss.backward()
            p_norm, p_ok = grad_norm_finite(ac.adapter_parameters("policy"), cfg.max_grad_norm)
            if p_ok and update_policy:
                opts["policy"].step()
            opts["policy"].zero_grad(set_to_none=True)

            values = ac.values(ids, am, T)
            v_loss, v_stats = core.value_loss(
                values, ro.values[idx], ro.returns[idx], m, cfg.value_clip_eps, cfg.loss_agg_mode
            )
            (cfg.vf_coef * v_loss).backward()
            v_norm, v_ok = grad_norm_finite(ac.adapter_parameters("critic"), cfg.max_grad_norm)
            if v_ok:
                opts["critic"].step()
            opts["critic"].zero_grad(set_to_none=True)
            ac.use("policy")

            row = {
                "loss": pg_loss.item(),
                "value/loss": v_loss.item(),
                "entropy": float(core.masked_mean(entropy.detach(), m)),
                "grad_norm": p_norm,
                "value/grad_norm": v_norm,
                "skipped_updates": float(not (p_ok and v_ok)),
                **pg_stats,
                **v_stats,
            }
            if out.aux_loss is not None:
                row["moe/aux_loss"] = out.aux_loss.item()
            if out.router_logits is not None:
                row.update(load_metrics(expert_load(out.router_logits, top_k, am)))
            for k, v in row.items():
                stats.setdefault(k, []).append(v)
    result = {k: sum(v) / len(v) for k, v in stats.items()}
    result["skipped_updates"] = sum(stats["skipped_updates"])
    result["value/explained_var"] = core.explained_variance(ro.values, ro.returns, ro.mask)
    return result


def train_ppo(
    ac: ActorCritic,
    tokenizer: Any,
    pool: list[ArithmeticProblem],
    hierarchy: RewardHierarchy,
    cfg: PPOSettings,
    run: RunDir,
    seed: int,
) -> None:
    """Run ``cfg.steps`` PPO iterations, resuming from the newest checkpoint if one exists."""
    opts = {
        "policy": torch.optim.AdamW(ac.adapter_parameters("policy"), lr=cfg.lr, weight_decay=0.0),
        "critic": torch.optim.AdamW(ac.adapter_parameters("critic"), lr=cfg.critic_lr, weight_decay=0.0),
    }
    scheds = {k: cosine_schedule(o, cfg.warmup_steps, cfg.steps, 1.0) for k, o in opts.items()}
    kl_ctl = core.FixedKLController(cfg.kl_coef)
    generator = torch.Generator().manual_seed(seed)
    start = 0
    state = load_latest_checkpoint(run.checkpoints)
    if state is not None:
        ac.load_state_dict(state["model"], strict=False)
        for k in opts:
            opts[k].load_state_dict(state["optimizer"][k])
            scheds[k].load_state_dict(state["scheduler"][k])
        kl_ctl.load_state_dict(state["kl_ctl"])
        generator.set_state(state["generator"])
        set_rng_state(state["rng"])
        start = state["step"]
        run.truncate_metrics(start)
    n_prompts = cfg.prompts_per_step
    bar = tqdm(range(start, cfg.steps), desc="ppo", initial=start, total=cfg.steps, dynamic_ncols=True)
    for step in bar:
        t0 = time.perf_counter()
        # 1. rollout + score + advantages
        offset = (step * n_prompts) % max(1, len(pool) - n_prompts + 1)
        ro = rollout(ac, tokenizer, pool[offset : offset + n_prompts], hierarchy, cfg, kl_ctl.value)
        t_roll = time.perf_counter() - t0
        # 2. update
        stats = update(ac, ro, cfg, opts, generator, update_policy=step >= cfg.critic_warmup_steps)
        for s in scheds.values():
            s.step()
        kl_ctl.update(ro.metrics["kl"], ro.mask.shape[0])
        # 3. log
        done = step + 1
        dt = time.perf_counter() - t0
        metrics = {
            **ro.metrics,
            **stats,
            "kl_coef": kl_ctl.value,
            "lr": scheds["policy"].get_last_lr()[0],
            "perf/step_s": dt,
            "perf/rollout_s": t_roll,
            "perf/tokens_per_s": float(ro.attention_mask.sum()) / dt,
            "perf/samples_per_s": ro.mask.shape[0] / dt,
        }
        if done % cfg.log_every == 0 or done == cfg.steps:
            run.log(done, "ppo", metrics)
            with (run.path / "rollouts.jsonl").open("a") as f:
                f.write(json.dumps({"step": done, "samples": ro.samples}) + "\n")
        bar.set_postfix(reward=f"{metrics['reward/mean']:.3f}", kl=f"{metrics['kl']:.3f}")
        # 4. checkpoint
        if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < cfg.steps:
            trainable = {n for n, p in ac.named_parameters() if "lora_" in n or n.startswith("value_head")}
            save_checkpoint(
                run.checkpoints,
                done,
                {
                    "model": {k: v for k, v in ac.state_dict().items() if k in trainable},
                    "optimizer": {k: o.state_dict() for k, o in opts.items()},
                    "scheduler": {k: s.state_dict() for k, s in scheds.items()},
                    "kl_ctl": kl_ctl.state_dict(),
                    "generator": generator.get_state(),
                    "rng": rng_state(),
                    "step": done,
                },
                cfg.keep_checkpoints,
            )
    bar.close()
