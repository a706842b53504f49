"""A PPO rollout: generate, score, the behaviour / reference log-probs and values, advantages.

Notation: ``B`` sequences per step (prompts × samples), ``P`` prompt tokens, ``T`` completion tokens.

Each phase is a named block (``phase("generate")`` …) that the loop times as ``perf/<phase>_s``:

- **generate**: the rollout engine (:mod:`r1rl.train.ppo.engines`) samples ``samples_per_prompt``
  completions per prompt from the policy (the task's stop sequences end one; a chat prompt gets
  its completion back as an assistant message);
- **reward**: the hierarchy scores them, every column of the rows as keyword arguments;
- **logprobs**: π_old (unless the step is on-policy, :func:`on_policy`), π_ref (the base with
  adapters off) and the critic's values, with the left-padded layout and position ids of
  generation; the engine's own log-probs are compared with π_old (``rollout/logprob_diff``);
- **advantages**: scores clipped / normalised if asked, the per-token KL, then the estimator
  (:data:`ESTIMATORS`); statistics over the batch span every rank under a launcher.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from r1rl.algorithms import ppo
from r1rl.config import AlgorithmConfig, PPOSettings
from r1rl.envs.episodes import run_episodes
from r1rl.errors import UserError
from r1rl.models.encoding import as_completion, encode_prompts
from r1rl.models.generation import Generation, take_generation
from r1rl.models.moe import RoutingReplay
from r1rl.parallel.distributed import Parallel
from r1rl.records import Record, prompts_of, reward_columns, text_of_prompt
from r1rl.registry import Registry
from r1rl.rewards.hierarchy import HierarchyResult, take_result
from r1rl.train.ppo.context import Phase, PPOContext, untimed
from r1rl.train.ppo.engines import GenerateEngine, Sampling
from r1rl.train.ppo.roles import ActorCritic, FullActorCritic

__all__ = [
    "ESTIMATORS",
    "AdvantageInputs",
    "Phase",
    "Rollout",
    "Sampled",
    "finish",
    "rollout",
    "sample",
    "untimed",
]


@dataclass
class Rollout:
    input_ids: torch.Tensor  # (B, P + T)
    attention_mask: torch.Tensor  # (B, P + T)
    mask: torch.Tensor  # (B, T) completion tokens through EOS
    scores: torch.Tensor  # (B,) combined reward, after optional clipping/normalisation
    old_logprobs: torch.Tensor | None  # (B, T); None when on-policy (the update's own pass is π_old)
    ref_logprobs: torch.Tensor  # (B, T)
    values: torch.Tensor  # (B, T) zeros without a critic
    advantages: torch.Tensor  # (B, T)
    returns: torch.Tensor  # (B, T)
    metrics: dict[str, float]
    samples: list[dict[str, Any]]
    finite: bool = True  # every reward and log-prob is finite
    engine_logprobs: torch.Tensor | None = None  # (B, T) the engine's log-probs of its samples, if given

    @property
    def n_completion(self) -> int:
        return self.mask.shape[1]


def on_policy(
    cfg: PPOSettings, n_sequences: int, world: int, kl_coef: float, engine_is_training_model: bool = True
) -> bool:
    """One optimizer step on the whole batch with the KL outside the reward, sampled by the training
    model itself: the update's own forward pass *is* the behaviour policy's, so the separate
    old-log-prob pass can be skipped. With another engine (``is_training_model`` false) the pass
    always runs: π_old is the training model's, recorded before the update, and the engine's
    log-probs are compared with it and, with ``rollout.tis_cap``, weigh the mismatch."""
    return (
        engine_is_training_model
        and cfg.optim.ppo_epochs == 1
        and cfg.optim.minibatch_size >= n_sequences * world
        and (cfg.algorithm.kl_in == "loss" or kl_coef == 0)
    )


@dataclass
class Sampled:
    """Groups generated and scored for one step (this rank's), before the log-prob passes.

    ``G`` samples per record, contiguous: rows ``i·G … i·G + G − 1`` answer ``batch[i]``.
    """

    batch: list[Record]  # (k,) the records
    prompts: list[Any]  # (B,) = (k·G,)
    generation: Generation
    result: HierarchyResult
    baseline: list[float] | None = None  # (B,) remax: the reward of the record's greedy completion
    metrics: dict[str, float] = field(default_factory=dict)  # multi-turn episodes' env/* metrics
    episodes: list[list[dict[str, Any]]] | None = None  # (B,) multi-turn: each episode's messages

    @property
    def group_size(self) -> int:
        return len(self.prompts) // max(len(self.batch), 1)

    def group_pass_rates(self, tier: str) -> list[float]:
        """Each record's share of samples that passed ``tier``. (k,)."""
        G, passed = self.group_size, self.result.passed[tier]
        return [sum(passed[i * G : (i + 1) * G]) / G for i in range(len(self.batch))]

    def group_varies(self) -> list[bool]:
        """Whether each group's combined rewards differ (a group that agrees has no GRPO signal). (k,)."""
        G, r = self.group_size, self.result.rewards
        return [max(r[i * G : (i + 1) * G]) > min(r[i * G : (i + 1) * G]) for i in range(len(self.batch))]

    def groups(self, keep: Sequence[int]) -> Sampled:
        """Only the groups ``keep`` (record indices), in that order."""
        G = self.group_size
        rows = [i * G + j for i in keep for j in range(G)]
        baseline = [self.baseline[r] for r in rows] if self.baseline is not None else None
        return Sampled(
            [self.batch[i] for i in keep], [self.prompts[r] for r in rows],
            take_generation(self.generation, rows), take_result(self.result, rows), baseline, self.metrics,
            [self.episodes[r] for r in rows] if self.episodes is not None else None,
        )  # fmt: skip


def rollout(ctx: PPOContext, records: list[Record], kl_coef: float) -> Rollout:
    """Generate, score, and compute everything the update needs (no gradients).

    ``records``: this step's rows (each sampled ``samples_per_prompt`` times); ``ctx.task`` gives
    the stop sequences and system prompt. With ``ctx.replay``, the routing of the old-log-prob
    pass (the behaviour policy's weights) is recorded for the update to replay or compare
    against. Under a launcher (``ctx.parallel``), ``records`` is this rank's share and batch
    statistics span every rank. ``ctx.engine`` samples (default: ``generate`` on the policy).
    """
    if ctx.engine is None:
        ctx = replace(ctx, engine=GenerateEngine(ctx.roles.generation_model, ctx.tokenizer))
    return finish(ctx, sample(ctx, records), kl_coef)


def sample(ctx: PPOContext, records: list[Record]) -> Sampled:
    """Generate ``samples_per_prompt`` completions of every record and score them (phases
    ``generate`` and ``reward``); with ``ctx.env``, a completion is a multi-turn episode."""
    cfg, hierarchy, phase = ctx.settings, ctx.hierarchy, ctx.phase
    G = cfg.rollout.samples_per_prompt
    prompts = prompts_of(records, G)
    with phase("generate"):
        g, completions, columns, metrics = _complete(ctx, records, G)
    with phase("reward"):
        res = hierarchy(prompts, completions, **reward_columns(records, G), **columns)
    baseline = None
    if cfg.algorithm.advantage_estimator == "remax":
        with phase("generate"):
            _, greedy, greedy_columns, _ = _complete(ctx, records, 1, greedy=True)
        with phase("reward"), hierarchy.frozen():  # a baseline, not a sample: running statistics stay
            scores = hierarchy(
                prompts_of(records), greedy, **reward_columns(records), **greedy_columns
            ).rewards
        baseline = [x for x in scores for _ in range(G)]
    episodes = completions if ctx.env is not None else None
    return Sampled(list(records), prompts, g, res, baseline, metrics, episodes)


def _complete(
    ctx: PPOContext, records: list[Record], repeat: int, greedy: bool = False
) -> tuple[Generation, list[Any], dict[str, list[Any]], dict[str, float]]:
    """``repeat`` completions of every record: the generation, what the rewards receive (text, an
    assistant message, or an episode's messages), extra reward columns and the episodes' metrics."""
    prompts = prompts_of(records, repeat)
    if ctx.env is None:
        g = _generate(ctx, prompts, greedy)
        return g, [as_completion(p, t) for p, t in zip(prompts, g.texts)], {}, {}
    task, r = ctx.task, ctx.settings.rollout
    sampling = Sampling(r.max_new_tokens, do_sample=not greedy, temperature=r.temperature, top_p=r.top_p)
    rows_ = [rec for rec in records for _ in range(repeat)]
    episodes = run_episodes(
        lambda ids, n: _engine_generate(ctx, ids, replace(sampling, max_new_tokens=n), greedy),
        ctx.tokenizer, ctx.env, prompts, rows_, r.max_new_tokens, getattr(task, "system_prompt", None),
        synced=ctx.parallel.synced_generation,
    )  # fmt: skip
    columns: dict[str, list[Any]] = {}
    if any(x is not None for x in episodes.env_rewards):
        columns["env_reward"] = list(episodes.env_rewards)
    return episodes.generation, list(episodes.conversations), columns, episodes.metrics


def finish(ctx: PPOContext, sampled: Sampled, kl_coef: float) -> Rollout:
    """The log-prob passes and the advantages of scored groups (phases ``logprobs``, ``advantages``)."""
    cfg, parallel, algorithm = ctx.settings, ctx.parallel, ctx.settings.algorithm
    g, res, prompts = sampled.generation, sampled.result, sampled.prompts
    dev = parallel.device  # everything from here on lives where the model does
    raw = torch.tensor(res.rewards, dtype=torch.float32, device=dev)  # (B,)
    input_ids = torch.cat([g.prompt_ids, g.completion_ids], 1).to(dev)  # (B, P + T)
    attention_mask = torch.cat([g.prompt_mask, g.completion_mask], 1).to(dev)
    mask = g.model_mask.float().to(dev)  # (B, T) the model's tokens (an environment's are context)
    engine_logprobs = g.logprobs.to(dev) if g.logprobs is not None else None  # (B, T)
    with ctx.phase("logprobs"):
        engine_is_training_model = ctx.engine is None or ctx.engine.is_training_model
        skip_old = on_policy(cfg, len(prompts), parallel.world, kl_coef, engine_is_training_model)
        old, ref, values = _forward_passes(ctx.roles, input_ids, attention_mask, mask, skip_old, ctx.replay)
        if g.action_mask is not None:  # an episode: the environment's tokens get no log-probs
            old, ref = (old * mask if old is not None else None), ref * mask
        mismatch = logprob_diff_metrics(engine_logprobs, old, mask, parallel)
    if sampled.baseline is not None:  # remax: the greedy completion's reward is the baseline
        values = torch.tensor(sampled.baseline, dtype=torch.float32, device=dev)[:, None] * mask
    behaviour = old if old is not None else ref
    finite = bool(torch.isfinite(raw).all() and torch.isfinite(behaviour * mask).all())
    finite = parallel.all_true(finite and bool(torch.isfinite(ref * mask).all()))
    with ctx.phase("advantages"):
        all_sum = parallel.all_sum if parallel.enabled else None
        scores = _shape_scores(raw, algorithm, parallel.world, all_sum)
        kl = ppo.kl_penalty(behaviour, ref, algorithm.kl_estimator) * mask  # (B, T); 0 when on-policy
        beta = kl_coef if algorithm.kl_in == "reward" else 0.0
        if not finite:  # the step will be skipped; keep the tensors finite for logging
            scores, kl = torch.nan_to_num(scores), torch.nan_to_num(kl)
        estimator = ESTIMATORS.get(algorithm.advantage_estimator, "algorithm.advantage_estimator")
        inputs = AdvantageInputs(scores, kl, values, mask, beta, cfg.rollout.samples_per_prompt, all_sum)
        advantages, returns = estimator(inputs, algorithm)
        if algorithm.negative_scale != 1.0:  # (B, T) the critic's returns are left as they are
            advantages = torch.where(advantages < 0, advantages * algorithm.negative_scale, advantages)
    metrics = {
        **res.metrics(),
        "kl": float(kl.sum(1).mean()),
        "kl/per_token": float(kl.sum() / mask.sum().clamp_min(1)),
        "response/length": float(mask.sum(1).mean()),
        "response/truncated": float(g.truncated.float().mean()),
        "response/empty": float((mask.sum(1) <= 1).float().mean()),  # EOS only, or nothing
        **ppo.advantage_metrics(advantages, mask),
        **mismatch,
        **sampled.metrics,
    }
    samples = [
        {"prompt": text_of_prompt(p), "completion": c, "reward": r}
        for p, c, r in zip(prompts[:4], g.texts[:4], res.rewards[:4])
    ]
    for sample, episode in zip(samples, sampled.episodes or []):  # multi-turn: the whole episode
        sample["episode"] = episode
    return Rollout(
        input_ids, attention_mask, mask, scores, old, ref, values, advantages, returns, metrics, samples,
        finite, engine_logprobs=engine_logprobs,
    )  # fmt: skip


def _generate(ctx: PPOContext, prompts: list[Any], greedy: bool = False) -> Generation:
    """The engine's completions of ``prompts`` from the policy (sampled, or ``greedy``)."""
    r = ctx.settings.rollout
    prompt_ids = encode_prompts(ctx.tokenizer, prompts, getattr(ctx.task, "system_prompt", None))
    sampling = Sampling(r.max_new_tokens, do_sample=not greedy, temperature=r.temperature, top_p=r.top_p)
    return _engine_generate(ctx, prompt_ids, sampling, greedy)


def _engine_generate(
    ctx: PPOContext, prompt_ids: list[list[int]], sampling: Sampling, greedy: bool
) -> Generation:
    assert ctx.engine is not None  # rollout() and the loop give the context one
    ctx.roles.use("policy")
    with ctx.roles.autocast():
        g = ctx.engine.generate(
            prompt_ids, sampling, stop=getattr(ctx.task, "stop", ()), synced=ctx.parallel.synced_generation
        )
    if ctx.settings.rollout.tis_cap is not None and g.logprobs is None and not greedy:
        raise UserError(
            f"rollout.tis_cap needs the engine's log-probs; the {ctx.engine.name} engine gave none"
        )
    return g


def logprob_diff_metrics(
    engine_logprobs: torch.Tensor | None, old: torch.Tensor | None, mask: torch.Tensor, parallel: Parallel
) -> dict[str, float]:
    """``rollout/logprob_diff`` (mean |log π_engine − log π_old| over real tokens) and its max, over
    every rank; nothing without the engine's log-probs, or before π_old exists (on-policy, the
    update measures it on its own pass)."""
    if engine_logprobs is None or old is None:
        return {}
    all_sum = parallel.all_sum if parallel.enabled else None
    mean, largest = ppo.logprob_mismatch(engine_logprobs, old, mask, all_sum)
    if parallel.enabled:
        largest = max(parallel.gather_objects(largest))
    return {"rollout/logprob_diff": mean, "rollout/logprob_diff_max": largest}


@torch.no_grad()
def _forward_passes(
    roles: ActorCritic | FullActorCritic, input_ids: torch.Tensor, attention_mask: torch.Tensor,
    mask: torch.Tensor, skip_old: bool, replay: RoutingReplay | None,
) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:  # fmt: skip
    """π_old (``None`` when skipped), π_ref and the values, each (B, T)."""
    B, S = input_ids.shape
    T = mask.shape[1]
    old = None
    if not skip_old:
        with replay.record((B, S)) if replay is not None else nullcontext():
            old, _, _ = roles.policy_logprobs(input_ids, attention_mask, T)
    ref, _, _ = roles.policy_logprobs(input_ids, attention_mask, T, reference=True)
    values = roles.values(input_ids, attention_mask, T) * mask if roles.has_critic else torch.zeros_like(mask)
    roles.use("policy")
    return old, ref, values


def _shape_scores(
    raw: torch.Tensor, cfg: AlgorithmConfig, world: int, all_sum: ppo.AllSum | None
) -> torch.Tensor:
    """The sequence scores the advantages see: clipped to ±``reward_clip``, whitened if asked."""
    scores = raw.clone()
    if cfg.reward_clip is not None:
        scores = scores.clamp(-cfg.reward_clip, cfg.reward_clip)
    if cfg.normalize_rewards and scores.numel() * world > 1:
        scores = ppo.normalize(scores, all_sum=all_sum)
    return scores


# ---------------------------------------------------------------------------- advantage estimators
#
# (inputs, the algorithm options) -> advantages and returns, both (B, T). Whitening spans every
#   rank's tokens under a launcher; GRPO/RLOO groups never straddle ranks (a rank's share is whole
#   prompts).


@dataclass(frozen=True)
class AdvantageInputs:
    """What every advantage estimator reads, computed once per rollout."""

    scores: torch.Tensor  # (B,) sequence scores, after clipping / normalisation
    kl: torch.Tensor  # (B, T) per-token KL(π_old ‖ π_ref), 0 on padding
    values: torch.Tensor  # (B, T) the critic's values (zeros without one; remax: the greedy score)
    mask: torch.Tensor  # (B, T) completion tokens through EOS
    beta: float  # the KL coefficient in the reward (0 when the KL is a loss term)
    group: int  # samples per prompt (G): rows i·G … i·G + G − 1 answer one prompt
    all_sum: ppo.AllSum | None  # the sum over ranks under a launcher (None alone)


Estimator = Callable[[AdvantageInputs, AlgorithmConfig], tuple[torch.Tensor, torch.Tensor]]
ESTIMATORS: Registry[Estimator] = Registry("advantage estimator")


@ESTIMATORS.register("gae")
def gae_advantages(x: AdvantageInputs, cfg: AlgorithmConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over the score-on-the-last-token rewards with the per-token KL penalty (Schulman et al. 2015)."""
    rewards = ppo.token_rewards(x.scores, x.kl, x.mask, x.beta)  # (B, T)
    advantages, returns = ppo.gae(rewards, x.values, x.mask, cfg.gamma, cfg.gae_lambda)
    if cfg.whiten_advantages:
        advantages = ppo.masked_whiten(advantages, x.mask, all_sum=x.all_sum)
    return advantages, returns


@ESTIMATORS.register("reinforce_pp")
def reinforce_pp(x: AdvantageInputs, cfg: AlgorithmConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """REINFORCE++: whitened discounted returns of the token rewards (Hu 2025)."""
    advantages = ppo.reinforce_pp_advantages(x.scores, x.kl, x.mask, x.beta, cfg.gamma, all_sum=x.all_sum)
    return advantages, advantages


def _group(mode: str) -> Estimator:
    def estimator(x: AdvantageInputs, cfg: AlgorithmConfig) -> tuple[torch.Tensor, torch.Tensor]:
        """One advantage per sequence (its group's baseline removed), on every token of it."""
        adjusted = x.scores - x.beta * x.kl.sum(1)
        seq = ppo.group_advantages(adjusted, x.group, mode, scale_by_std=cfg.grpo_scale_by_std)  # (B,)
        advantages = seq[:, None] * x.mask
        return advantages, advantages

    estimator.__qualname__ = f"group_advantages[{mode}]"
    return estimator


ESTIMATORS.add("grpo", _group("grpo"))
ESTIMATORS.add("rloo", _group("rloo"))


@ESTIMATORS.register("remax")
def remax(x: AdvantageInputs, cfg: AlgorithmConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """ReMax (Li et al. 2023): the sample's score minus its prompt's greedy completion's, on every token.

    ``values`` holds that greedy score on every real token. A sample scores above zero only where it
    beats what greedy decoding — what the held-out eval runs — answers for the same prompt."""
    adjusted = x.scores - x.beta * x.kl.sum(1)
    baseline = (x.values * x.mask).sum(1) / x.mask.sum(1).clamp_min(1)  # (B,)
    advantages = (adjusted - baseline)[:, None] * x.mask
    return advantages, advantages
