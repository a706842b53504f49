"""The reward hierarchy: tiers scored by plain reward functions, combined into one scalar.

Modes (``N`` samples, tiers ``k = 1..K`` lowest first, score ``r_k``, threshold ``τ_k``,
weight ``w_k``):

- ``gated``:    R = Σ_k w_k · r_k · Π_{j<k} [r_j ≥ τ_j] / Σ_k w_k — a tier counts only once
  every tier below it passes;
- ``weighted``: R = Σ_k w_k · r_k / Σ_k w_k.

A tier that returns ``None`` for a sample is not applicable there: it passes its gate and
drops out of that sample's weight sum. A reward function that raises, returns the wrong
length or a non-finite value is an *error*: the tier scores 0 on that batch, and the error
is counted in the metrics (``reward/tier/<tier>/errors``) and logged — never silent.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from r1rl.rewards.registry import RewardFn, resolve

log = logging.getLogger(__name__)


@dataclass
class Tier:
    name: str
    fn: RewardFn
    threshold: float = 1.0
    weight: float = 1.0


@dataclass
class HierarchyResult:
    rewards: list[float]  # (N,) combined reward
    scores: dict[str, list[float | None]]  # tier -> (N,) raw scores
    passed: dict[str, list[bool]]  # tier -> (N,) r_k >= τ_k (None counts as passed)
    errors: dict[str, int] = field(default_factory=dict)

    def metrics(self, prefix: str = "reward") -> dict[str, float]:
        n = max(len(self.rewards), 1)
        out = {f"{prefix}/mean": sum(self.rewards) / n}
        for tier, passed in self.passed.items():
            vals = [s for s in self.scores[tier] if s is not None]
            out[f"{prefix}/tier/{tier}/pass_rate"] = sum(passed) / n
            out[f"{prefix}/tier/{tier}/mean"] = sum(vals) / len(vals) if vals else float("nan")
            if self.errors.get(tier):
                out[f"{prefix}/tier/{tier}/errors"] = float(self.errors[tier])
        return out


class RewardHierarchy:
    def __init__(self, tiers: Sequence[Tier], mode: str = "gated") -> None:
        if mode not in ("gated", "weighted"):
            raise ValueError(f"unknown hierarchy mode {mode!r}; expected 'gated' or 'weighted'")
        if not tiers:
            raise ValueError("a reward hierarchy needs at least one tier")
        self.tiers = list(tiers)
        self.mode = mode

    @classmethod
    def from_config(cls, cfg: Any) -> RewardHierarchy:
        """Build from a :class:`r1rl.config.RewardsConfig`; every reward is resolved now."""
        tiers = [Tier(t.name, resolve(t.reward), t.threshold, t.weight) for t in cfg.tiers]
        return cls(tiers, cfg.mode)

    def __call__(self, prompts: list[str], completions: list[str], **columns: Any) -> HierarchyResult:
        n = len(completions)
        scores: dict[str, list[float | None]] = {}
        errors: dict[str, int] = {}
        for tier in self.tiers:
            scores[tier.name], err = _call_checked(tier, prompts, completions, columns)
            if err:
                errors[tier.name] = err
        passed = {t.name: [s is None or s >= t.threshold for s in scores[t.name]] for t in self.tiers}
        rewards = []
        for i in range(n):
            total, weight, gate = 0.0, 0.0, True
            for t in self.tiers:
                s = scores[t.name][i]
                if s is not None:
                    total += t.weight * s * (gate if self.mode == "gated" else 1.0)
                    weight += t.weight
                gate = gate and passed[t.name][i]
            rewards.append(total / weight if weight > 0 else 0.0)
        return HierarchyResult(rewards, scores, passed, errors)

    def as_reward_function(self) -> RewardFn:
        """The combined reward as a TRL-compatible ``fn(prompts, completions, **kw)``."""

        def hierarchy_reward(prompts: list[str], completions: list[str], **columns: Any) -> list[float]:
            return self(prompts, completions, **columns).rewards

        return hierarchy_reward


def _call_checked(
    tier: Tier, prompts: list[str], completions: list[str], columns: dict[str, Any]
) -> tuple[list[float | None], int]:
    n = len(completions)
    name = getattr(tier.fn, "__name__", tier.name)
    try:
        out = list(tier.fn(prompts, completions, **columns))
    except Exception as e:  # a user's reward is untrusted: count it, log it, score the tier 0
        log.warning("reward %s (tier %s) raised %s: %s", name, tier.name, type(e).__name__, e)
        return [0.0] * n, n
    if len(out) != n:
        log.warning("reward %s (tier %s) returned %d values for %d completions", name, tier.name, len(out), n)
        return [0.0] * n, n
    clean: list[float | None] = []
    bad = 0
    for v in out:
        if v is None:
            clean.append(None)
        elif isinstance(v, (int, float)) and math.isfinite(v):
            clean.append(float(v))
        else:
            bad += 1
            clean.append(0.0)
    if bad:
        log.warning("reward %s (tier %s) returned %d non-finite or non-numeric values", name, tier.name, bad)
    return clean, bad
