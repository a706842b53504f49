"""PPO math as pure functions over masked ``(B, T)`` tensors.

Notation:
    B  batch (sequences)        T  response tokens
    mask  (B, T) 1 on real response tokens (through EOS), 0 on padding

Every loss returns a per-token ``(B, T)`` matrix; :func:`agg_loss` is the one place where
tokens are reduced to a scalar.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

AllSum = Callable[[torch.Tensor], torch.Tensor]  # element-wise sum over processes (identity alone)
AGG_MODES = ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean")


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    return (x * mask).sum() if dim is None else (x * mask).sum(dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` over positions where ``mask`` is 1 (0 if there are none)."""
    return masked_sum(x, mask, dim) / mask.sum(dim).clamp_min(1)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    n = mask.sum()
    if unbiased and n > 1:
        var = var * n / (n - 1)
    return var


def masked_moments(
    x: torch.Tensor, mask: torch.Tensor, all_sum: AllSum | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased variance of ``x`` over masked positions.

    With ``all_sum`` (a sum over every process, for data-parallel training) the positions of all
    ranks count: one pass of sums (n, Σx, Σx²) in float64, reduced once, returned in ``x``'s dtype.
    """
    if all_sum is None:
        return masked_mean(x, mask), masked_var(x, mask)
    m = mask.to(x.dtype)
    s = all_sum(torch.stack([m.sum(), (x * m).sum(), (x * x * m).sum()]).double())
    n = s[0].clamp_min(1)
    mean = s[1] / n
    var = (s[2] / n - mean**2).clamp_min(0) * n / (n - 1).clamp_min(1)
    return mean.to(x.dtype), var.to(x.dtype)


def masked_whiten(
    x: torch.Tensor,
    mask: torch.Tensor,
    shift_mean: bool = True,
    eps: float = 1e-8,
    all_sum: AllSum | None = None,
) -> torch.Tensor:
    """Normalise ``x`` to unit variance (and zero mean if ``shift_mean``) over masked positions
    (of every rank, given ``all_sum``)."""
    mean, var = masked_moments(x, mask, all_sum)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask


def normalize(x: torch.Tensor, eps: float = 1e-8, all_sum: AllSum | None = None) -> torch.Tensor:
    """``(x − mean) / (std + eps)`` of a (B,) vector, unbiased std (all ranks' entries with ``all_sum``)."""
    if all_sum is None:
        return (x - x.mean()) / (x.std() + eps)
    mean, var = masked_moments(x, torch.ones_like(x), all_sum)
    return (x - mean) / (var.sqrt() + eps)


def agg_loss(loss: torch.Tensor, mask: torch.Tensor, mode: str = "token-mean") -> torch.Tensor:
    """Reduce a ``(B, T)`` loss matrix to a scalar.

    - ``token-mean``: Σ loss·mask / Σ mask (every token weighs the same; DAPO);
    - ``seq-mean-token-sum``: mean over sequences of the per-sequence token sum (Dr. GRPO);
    - ``seq-mean-token-mean``: mean over sequences of the per-sequence token mean (original GRPO).
    Sequences with no tokens are left out of the sequence means.
    """
    if mode == "token-mean":
        return masked_mean(loss, mask)
    seq_has = (mask.sum(1) > 0).float()  # (B,)
    if mode == "seq-mean-token-sum":
        per_seq = masked_sum(loss, mask, dim=1)
    elif mode == "seq-mean-token-mean":
        per_seq = masked_mean(loss, mask, dim=1)
    else:
        raise ValueError(f"unknown loss_agg_mode {mode!r}; expected one of {AGG_MODES}")
    return (per_seq * seq_has).sum() / seq_has.sum().clamp_min(1)


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, gae_lambda: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2015, eq. 16).

    δ_t = r_t + γ V_{t+1} − V_t,   A_t = Σ_l (γλ)^l δ_{t+l},   returns R_t = A_t + V_t.
    The value after the last real token is 0 (the episode ends at EOS or truncation); padded
    positions are skipped, so values and rewards there do not matter.

    Args: rewards, values, mask: (B, T). Returns advantages, returns: (B, T), zero on padding.
    """
    B, T = rewards.shape
    adv = torch.zeros_like(rewards)
    next_value = torch.zeros(B, dtype=rewards.dtype, device=rewards.device)
    next_adv = torch.zeros(B, dtype=rewards.dtype, device=rewards.device)
    for t in reversed(range(T)):
        m = mask[:, t].to(rewards.dtype)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        a = delta + gamma * gae_lambda * next_adv
        # padding leaves the carried value/advantage untouched
        next_adv = m * a + (1 - m) * next_adv
        next_value = m * values[:, t] + (1 - m) * next_value
        adv[:, t] = a * m
    return adv, (adv + values) * mask


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(π ‖ π_ref) from samples of π (Schulman, "Approximating KL divergence", 2020).

    With log r = log π_ref − log π:  k1 = −log r,  k2 = ½ (log r)²,  k3 = (r − 1) − log r.
    k1 is unbiased, k3 unbiased and non-negative, k2 biased with low variance. (B, T) -> (B, T).
    """
    log_ratio = ref_logprobs - logprobs
    if estimator == "k1":
        return -log_ratio
    if estimator == "k2":
        return 0.5 * log_ratio**2
    if estimator == "k3":
        log_ratio = log_ratio.clamp(-20, 20)  # exp overflow guard
        return torch.exp(log_ratio) - 1 - log_ratio
    raise ValueError(f"unknown KL estimator {estimator!r}; expected 'k1', 'k2' or 'k3'")


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps_low: float = 0.2,
    clip_eps_high: float | None = None,
    dual_clip: float | None = None,
    agg_mode: str = "token-mean",
    is_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped surrogate (Schulman et al. 2017, eq. 7), asymmetric clip (DAPO), dual-clip (Ye et al. 2020).

    L_t = −min(ρ_t A_t, clip(ρ_t, 1−ε_low, 1+ε_high) A_t),  ρ_t = π/π_old;  for A_t < 0 the loss
    is further capped at −c·A_t (dual-clip, c > 1). ``is_weights`` (B, T), detached, multiply
    each token's term before the reduction (:func:`truncated_is_weights`).
    Args: (B, T) tensors. Returns the aggregated loss and metrics (clipfrac, approx_kl).
    """
    clip_eps_high = clip_eps_low if clip_eps_high is None else clip_eps_high
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)  # (B, T)
    loss1 = -advantages * ratio
    loss2 = -advantages * ratio.clamp(1 - clip_eps_low, 1 + clip_eps_high)
    loss = torch.maximum(loss1, loss2)  # (B, T)
    if dual_clip is not None:
        if dual_clip <= 1:
            raise ValueError("dual_clip must be > 1")
        loss = torch.where(advantages < 0, torch.minimum(loss, -advantages * dual_clip), loss)
    if is_weights is not None:
        loss = loss * is_weights
    with torch.no_grad():
        metrics = {
            "policy/clipfrac": float(masked_mean((loss2 > loss1).float(), mask)),
            # k3 estimate of KL(π_old ‖ π) (Schulman 2020)
            "policy/approx_kl": float(masked_mean(torch.exp(-log_ratio) - 1 + log_ratio, mask)),
            "policy/ratio_var": float(masked_var(ratio, mask)),
        }
    return agg_loss(loss, mask, agg_mode), metrics


def sequence_log_ratio(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """log sᵢ = (1/|oᵢ|) Σₜ log(π(oᵢ,ₜ)/π_old(oᵢ,ₜ)) — GSPO's length-normalised sequence log-ratio
    (Zheng et al. 2025, "Group Sequence Policy Optimization", eq. 7). (B, T) -> (B,).

    >>> lp = torch.tensor([[1.0, 1.0, 0.0]]); m = torch.tensor([[1.0, 1.0, 0.0]])
    >>> round(float(sequence_log_ratio(lp, torch.zeros(1, 3), m).exp()), 6)  # log-ratios averaging 1: e
    2.718282
    """
    return masked_sum(logprobs - old_logprobs, mask, dim=1) / mask.sum(1).clamp_min(1)


def gspo_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps_low: float = 3e-4,
    clip_eps_high: float | None = 4e-4,
    token_level: bool = False,
    agg_mode: str = "seq-mean-token-mean",
    is_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """GSPO's clipped sequence-level objective (Zheng et al. 2025, eq. 5), or GSPO-token (eq. 13).

    GSPO: Lᵢ = −min(sᵢ Aᵢ, clip(sᵢ, 1−ε_low, 1+ε_high) Aᵢ) on every token of sequence i, with sᵢ
    the sequence ratio (:func:`sequence_log_ratio`) and Aᵢ its one advantage (the mean of its
    row). GSPO-token: sᵢ,ₜ = sg[sᵢ] · π(oᵢ,ₜ)/sg[π(oᵢ,ₜ)] — numerically sᵢ, so the clip is decided per
    sequence, but the gradient of token t is sᵢ Aᵢ,ₜ ∇log π(oᵢ,ₜ), which allows per-token
    advantages; with Aᵢ,ₜ = Aᵢ it equals GSPO's (eq. 11 and 15). Both are reduced as
    (1/G) Σᵢ (1/|oᵢ|) Σₜ — ``seq-mean-token-mean``. The paper clips at ε = 3e-4 / 4e-4: sequence
    ratios move far less than token ratios. ``is_weights`` (B, T) weigh each token's term, as in
    :func:`policy_loss`. Returns the loss and metrics (clipfrac over sequences, approx_kl, the
    variance of the sequence ratio and of the token ratios).
    """
    clip_eps_high = clip_eps_low if clip_eps_high is None else clip_eps_high
    seq_log = sequence_log_ratio(logprobs, old_logprobs, mask)  # (B,)
    seq_ratio = torch.exp(seq_log)  # (B,)
    if token_level:
        ratio = seq_ratio.detach()[:, None] * torch.exp(logprobs - logprobs.detach())  # (B, T), value sᵢ
        adv = advantages
    else:
        ratio = seq_ratio[:, None].expand_as(logprobs)  # (B, T): sᵢ on every token of sequence i
        adv = masked_mean(advantages, mask, dim=1)[:, None]  # (B, 1): the sequence's one advantage
    loss1 = -adv * ratio
    loss2 = -adv * ratio.clamp(1 - clip_eps_low, 1 + clip_eps_high)
    loss = torch.maximum(loss1, loss2) * mask  # (B, T)
    if is_weights is not None:
        loss = loss * is_weights
    has = (mask.sum(1) > 0).float()  # (B,)
    with torch.no_grad():
        clipped = ((loss2 > loss1).float() * mask).amax(1)  # (B,) the sequence's terms were clipped
        log_ratio = logprobs - old_logprobs
        metrics = {
            "policy/clipfrac": float((clipped * has).sum() / has.sum().clamp_min(1)),
            "policy/approx_kl": float(masked_mean(torch.exp(-log_ratio) - 1 + log_ratio, mask)),
            "policy/ratio_var": float(masked_var(seq_ratio, has)),
            "policy/token_ratio_var": float(masked_var(torch.exp(log_ratio), mask)),
        }
    return agg_loss(loss, mask, agg_mode), metrics


def truncated_is_weights(
    old_logprobs: torch.Tensor, engine_logprobs: torch.Tensor, cap: float
) -> torch.Tensor:
    """Truncated importance sampling: w_t = min(π_old(o_t) / π_engine(o_t), C), detached.

    The rollout engine samples from π_engine, which can differ numerically from the training
    model's π_old (other kernels, batch layout, precision); weighting each token's policy term by
    the truncated ratio corrects the gradient for that mismatch (Yao et al. 2025, "Your Efficient
    RL Framework Secretly Brings You Off-Policy RL Training" — the TIS of veRL and OpenRLHF).
    (B, T) log-probs -> (B, T) weights in (0, C]; an engine log-prob of −inf gives C.

    >>> w = truncated_is_weights(torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, -5.0]]), cap=2.0)
    >>> [round(x, 6) for x in w[0].tolist()]  # e^-1, then e^5 truncated at 2
    [0.367879, 2.0]
    """
    log_ratio = (old_logprobs - engine_logprobs).detach()
    return torch.exp(log_ratio.clamp(max=math.log(cap)))  # clamped before exp: no overflow


def tis_metrics(weights: torch.Tensor, cap: float, mask: torch.Tensor) -> dict[str, float]:
    """Mean TIS weight and the share of tokens truncated at the cap, over real tokens."""
    return {
        "rollout/tis_weight_mean": float(masked_mean(weights, mask)),
        "rollout/tis_clipfrac": float(masked_mean((weights >= cap).float(), mask)),
    }


def logprob_mismatch(
    engine_logprobs: torch.Tensor, logprobs: torch.Tensor, mask: torch.Tensor, all_sum: AllSum | None = None
) -> tuple[float, float]:
    """Mean and max of |log π_engine − log π| over real tokens (of every rank, given ``all_sum``;
    the max then needs its own reduction). (B, T) -> two floats."""
    diff = (engine_logprobs - logprobs).abs() * mask  # (B, T)
    sums = torch.stack([diff.sum(), mask.sum()]).double()
    if all_sum is not None:
        sums = all_sum(sums)
    return float(sums[0] / sums[1].clamp_min(1)), float(diff.max()) if diff.numel() else 0.0


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float | None = 0.2,
    agg_mode: str = "token-mean",
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped value loss: ½ max((V − R)², (clip(V, V_old ± ε) − R)²) (as in OpenAI baselines' PPO2)."""
    loss = (values - returns) ** 2
    if clip_eps is not None:
        clipped = old_values + (values - old_values).clamp(-clip_eps, clip_eps)
        loss_clipped = (clipped - returns) ** 2
        clipfrac = float(masked_mean((loss_clipped > loss).float(), mask))
        loss = torch.maximum(loss, loss_clipped)
    else:
        clipfrac = 0.0
    return 0.5 * agg_loss(loss, mask, agg_mode), {"value/clipfrac": clipfrac}


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """1 − Var[R − V] / Var[R] over masked positions (1 = perfect critic, ≤ 0 = useless)."""
    var_r = masked_var(returns, mask)
    if var_r <= 0:
        return float("nan")
    return float(1 - masked_var(returns - values, mask) / var_r)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the categorical distribution at every position. (B, T, V) -> (B, T)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def logprobs_from_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log p(label) at every position. (B, T, V), (B, T) -> (B, T)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, labels.unsqueeze(-1)).squeeze(-1)


def last_index(mask: torch.Tensor) -> torch.Tensor:
    """The position of each row's last real token (0 for an empty row); the mask may have holes, as a
    multi-turn episode's has where an environment spoke. (B, T) -> (B,).

    >>> last_index(torch.tensor([[1, 1, 0], [1, 0, 1], [0, 0, 0]]))
    tensor([1, 2, 0])
    """
    T = mask.shape[1]
    positions = torch.arange(T, device=mask.device).expand_as(mask)
    return torch.where(mask > 0, positions, torch.zeros_like(positions)).amax(1).long()


def token_rewards(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """Per-token rewards: −β·KL at every token, plus the sequence score at its last real token.

    (Ziegler et al. 2019.) scores: (B,), kl and mask: (B, T) -> (B, T).
    """
    rewards = -kl_coef * kl * mask
    last = last_index(mask)  # (B,)
    has = mask.sum(1) > 0
    rewards[has, last[has]] += scores[has]
    return rewards


ESTIMATORS = ("gae", "grpo", "rloo", "reinforce_pp", "remax")


def group_advantages(
    scores: torch.Tensor, group_size: int, mode: str = "grpo", scale_by_std: bool = True, eps: float = 1e-6
) -> torch.Tensor:
    """Sequence advantages from groups of ``group_size`` samples of the same prompt (contiguous).

    - ``grpo``: (r − mean_group) / (std_group + ε) (Shao et al. 2024); without the std when
      ``scale_by_std`` is false (Dr. GRPO, Liu et al. 2025);
    - ``rloo``: r − mean of the *other* samples of the group (Ahmadian et al. 2024).
    scores: (B,) with B = n_prompts · group_size -> (B,).
    """
    if scores.numel() % group_size:
        raise ValueError(f"{scores.numel()} scores do not split into groups of {group_size}")
    g = scores.view(-1, group_size).float()  # (N, G)
    if mode == "grpo":
        adv = g - g.mean(1, keepdim=True)
        if scale_by_std:
            std = g.std(1, keepdim=True) if group_size > 1 else torch.ones_like(g[:, :1])
            adv = torch.where(std > 0, adv / (std + eps), torch.zeros_like(adv))  # agreeing group: 0
    elif mode == "rloo":
        if group_size < 2:
            raise ValueError("rloo needs at least 2 samples per prompt")
        adv = (g - g.mean(1, keepdim=True)) * group_size / (group_size - 1)
    else:
        raise ValueError(f"unknown group advantage mode {mode!r}; expected 'grpo' or 'rloo'")
    return adv.reshape(-1)


def advantage_metrics(advantages: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """``advantages/{mean,std,abs_mean,positive}`` over real tokens: the signal the policy step sees
    (``positive``: the share of tokens pushed up). (B, T) -> scalars.

    >>> m = advantage_metrics(torch.tensor([[1.0, 1.0], [-1.0, 5.0]]), torch.tensor([[1, 1], [1, 0]]))
    >>> [round(v, 3) for v in m.values()]  # mean, std, abs_mean, positive
    [0.333, 1.155, 1.0, 0.667]
    """
    mean, var = masked_mean(advantages, mask), masked_var(advantages, mask)
    return {
        "advantages/mean": float(mean),
        "advantages/std": float(var.sqrt()),
        "advantages/abs_mean": float(masked_mean(advantages.abs(), mask)),
        "advantages/positive": float(masked_mean((advantages > 0).float(), mask)),
    }


def discounted_returns(rewards: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """G_t = Σ_{s≥t} γ^{s−t} r_s over real tokens. (B, T) -> (B, T), zero on padding."""
    out = torch.zeros_like(rewards)
    running = torch.zeros(rewards.shape[0], dtype=rewards.dtype, device=rewards.device)
    for t in reversed(range(rewards.shape[1])):
        m = mask[:, t].to(rewards.dtype)
        running = m * (rewards[:, t] + gamma * running) + (1 - m) * running
        out[:, t] = running * m
    return out


def reinforce_pp_advantages(
    scores: torch.Tensor,
    kl: torch.Tensor,
    mask: torch.Tensor,
    kl_coef: float,
    gamma: float = 1.0,
    all_sum: AllSum | None = None,
) -> torch.Tensor:
    """REINFORCE++ (Hu 2025): token returns of score − β·KL, whitened over the whole batch.

    scores: (B,), kl and mask: (B, T) -> (B, T).
    """
    returns = discounted_returns(token_rewards(scores, kl, mask, kl_coef), mask, gamma)
    return masked_whiten(returns, mask, all_sum=all_sum)


class FixedKLController:
    """A constant KL coefficient β."""

    def __init__(self, kl_coef: float) -> None:
        self.value = kl_coef

    def update(self, current_kl: float, n_steps: int) -> None:
        pass

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = state["value"]


class AdaptiveKLController(FixedKLController):
    """Adaptive β (Ziegler et al. 2019, §2.2): β ← β·(1 + K_β·e), e = clip(KL/KL_target − 1, ±0.2)."""

    def __init__(self, init_kl_coef: float, target: float, horizon: int) -> None:
        super().__init__(init_kl_coef)
        self.target, self.horizon = target, horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        if not math.isfinite(current_kl):
            return
        error = max(-0.2, min(0.2, current_kl / self.target - 1))
        self.value *= 1 + error * n_steps / self.horizon
