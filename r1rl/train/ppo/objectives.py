"""The policy objectives, by ``algorithm.importance_sampling_level`` (TRL's option name).

- ``token``: PPO's clipped surrogate of the token ratio π/π_old (Schulman et al. 2017), with
  DAPO's asymmetric clip and dual-clip; ε defaults to 0.2. Any ``loss_agg_mode``.
- ``sequence``: GSPO (Zheng et al. 2025, eq. 5): the length-normalised sequence ratio, clipped
  per sequence; needs one advantage per sequence (``grpo`` or ``rloo``).
- ``sequence_token``: GSPO-token (eq. 13): the sequence ratio's value, the token's gradient, so
  per-token advantages (``gae``, ``reinforce_pp``) work.

Both sequence levels clip at GSPO's ε = 3e-4 / 4e-4 by default and reduce with
``seq-mean-token-mean`` — (1/G) Σᵢ (1/|oᵢ|) Σₜ — which the config enforces.

Every objective takes ``is_weights``: (B, T) detached per-token weights of its terms (truncated
importance sampling of the rollout engine's mismatch, ``rollout.tis_cap``), or None.
"""

from __future__ import annotations

from typing import Protocol

import torch

from r1rl.algorithms import ppo
from r1rl.config import AlgorithmConfig
from r1rl.registry import Registry


class Objective(Protocol):
    """(log π (b, T), log π_old (b, T), advantages (b, T), mask (b, T), algorithm, TIS weights (b, T) or
    None) -> (the policy loss, its metrics)."""

    def __call__(
        self,
        logprobs: torch.Tensor,
        old: torch.Tensor,
        advantages: torch.Tensor,
        mask: torch.Tensor,
        cfg: AlgorithmConfig,
        is_weights: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]: ...


POLICY_LOSSES: Registry[Objective] = Registry("importance sampling level")
DEFAULT_CLIP = {"token": (0.2, None), "sequence": (3e-4, 4e-4), "sequence_token": (3e-4, 4e-4)}


def clip_range(cfg: AlgorithmConfig) -> tuple[float, float]:
    """``(ε_low, ε_high)`` of an algorithm config: as given, or the level's default."""
    low, high = DEFAULT_CLIP[cfg.importance_sampling_level]
    low = cfg.clip_eps if cfg.clip_eps is not None else low
    high = cfg.clip_eps_high if cfg.clip_eps_high is not None else (high if cfg.clip_eps is None else None)
    return low, low if high is None else high


@POLICY_LOSSES.register("token")
def token_objective(
    logprobs: torch.Tensor,
    old: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    cfg: AlgorithmConfig,
    is_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    low, high = clip_range(cfg)
    return ppo.policy_loss(logprobs, old, advantages, mask, clip_eps_low=low, clip_eps_high=high,
                            dual_clip=cfg.dual_clip, agg_mode=cfg.loss_agg_mode,
                            is_weights=is_weights)  # fmt: skip


def gspo_objective(token_level: bool) -> Objective:
    """GSPO at the sequence level, or GSPO-token (``token_level``): the same clip, the same reduction."""

    def objective(
        logprobs: torch.Tensor,
        old: torch.Tensor,
        advantages: torch.Tensor,
        mask: torch.Tensor,
        cfg: AlgorithmConfig,
        is_weights: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        low, high = clip_range(cfg)
        return ppo.gspo_policy_loss(
            logprobs, old, advantages, mask, low, high, token_level=token_level, is_weights=is_weights
        )

    return objective


POLICY_LOSSES.add("sequence", gspo_objective(token_level=False))
POLICY_LOSSES.add("sequence_token", gspo_objective(token_level=True))
