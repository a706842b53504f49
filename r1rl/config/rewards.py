"""The reward hierarchy of a stage: tiers of reward functions, lowest first, and how they combine."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from r1rl.strict import Strict


class RewardModelSpec(Strict):
    """A learned reward model as a tier's reward: a one-label sequence-classification checkpoint."""

    type: Literal["reward_model"] = Field(description="what scores the tier: a learned reward model")
    path: str = Field(
        description="a sequence-classification checkpoint with one label: a local directory or a Hub id"
    )
    batch_size: int = Field(8, ge=1, description="(prompt, completion) pairs per forward pass")
    max_length: int | None = Field(
        None, ge=1, description="tokens it reads, the end kept; longer inputs are counted; null = its window"
    )
    device: str | None = Field(None, description="where it runs; null = the policy's device")


def _reward_kind(value: Any) -> str:
    """A mapping is a typed spec; anything else is read as a name (and refused there if not a string)."""
    return "spec" if isinstance(value, dict | RewardModelSpec) else "name"


# The string form keeps meaning a name: registered, package.module:function or file.py:function.
RewardSpec = Annotated[
    Annotated[str, Tag("name")] | Annotated[RewardModelSpec, Tag("spec")], Discriminator(_reward_kind)
]


class TierConfig(Strict):
    name: str = Field(description="tier name, lowest first")
    reward: RewardSpec = Field(
        description="registered reward name, package.module:function or file.py:function, "
        "or {type: reward_model, path: ...}"
    )
    threshold: float = Field(1.0, description="score at which the tier counts as passed")
    weight: float = Field(1.0, ge=0, description="w_k; in mode scheduled, the weight at schedule_start")
    weight_end: float | None = Field(
        None, ge=0, description="mode scheduled: the weight at schedule_end (null = weight throughout)"
    )
    on_error: Literal["zero", "skip", "raise"] | None = Field(
        None,
        description="an error or timeout scores 0, is not applicable, or raises; null = rewards.on_error",
    )
    timeout_s: float | None = Field(None, gt=0, description="wall-clock limit of one call; null = none")
    normalize: Literal["none", "batch", "running"] | None = Field(
        None, description="whiten this tier's scores before combining; null = rewards.normalize"
    )


class RewardsConfig(Strict):
    mode: Literal["gated", "weighted", "scheduled"] = Field(
        "gated", description="gated: a tier counts once those below pass; scheduled: weights move over steps"
    )
    tiers: list[TierConfig] | None = Field(
        None, description="the tiers, lowest first; null = the task's own (e.g. arithmetic syntax/logic/task)"
    )
    on_error: Literal["zero", "skip", "raise"] = Field(
        "zero", description="default for tiers: a failed sample scores 0, is not applicable, or raises"
    )
    normalize: Literal["none", "batch", "running"] = Field(
        "none", description="default for tiers: per-tier whitening by batch or running mean/std"
    )
    max_failed_steps: int = Field(
        3, ge=1, description="stop the run once a tier's every sample failed for this many steps in a row"
    )
    schedule_start: int = Field(0, ge=0, description="mode scheduled: step at which weights start moving")
    schedule_end: int | None = Field(
        None, ge=1, description="mode scheduled: step at which they reach weight_end"
    )

    @model_validator(mode="after")
    def _check(self) -> RewardsConfig:
        if self.tiers is not None and not self.tiers:
            raise ValueError("rewards.tiers is empty; give at least one tier")
        names = [t.name for t in self.tiers or []]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"tier names must be unique; repeated: {', '.join(dup)}")
        if self.mode == "scheduled":
            if self.schedule_end is None or self.schedule_end <= self.schedule_start:
                raise ValueError("mode scheduled needs schedule_end > schedule_start")
        elif any(t.weight_end is not None for t in self.tiers or []):
            raise ValueError(
                f"weight_end is set but mode is {self.mode!r}; it only applies to mode scheduled"
            )
        return self
