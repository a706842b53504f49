"""A reward that fails is loud: a tier whose every sample fails, step after step, stops the run.

One failed sample is a typed outcome (:mod:`r1rl.rewards.protocol`) that the tier's ``on_error``
scores: a judge that timed out once, a completion the reward could not parse. A tier that fails
on *every* sample of ``rewards.max_failed_steps`` steps in a row is a broken reward — a missing
import, a column of the wrong type, an expired API key — and a run that trained on it would end
with exit status 0 and a reward of 0. :class:`FailureWatch` sees each step's
:class:`~r1rl.rewards.hierarchy.HierarchyResult` and raises :class:`RewardFailedError`: one line
naming the function and the first exception of the failing streak. The exception's traceback
travels with the error; the stage writes it to ``reward_errors.log`` in its run directory
(:meth:`~r1rl.errors.RewardFailedError.written_to`). An evaluation is one step: a tier that failed
on every held-out sample stops it (:func:`check_eval_failures`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from r1rl.rewards.hierarchy import HierarchyResult, RewardHierarchy
from r1rl.rewards.protocol import Outcome, fn_name

from r1rl.errors import RewardFailedError

Counts = dict[str, float]  # per tier, samples that failed; "n", samples in all


class FailureWatch:
    """Counts, per tier, the steps in a row on which every sample failed; raises at ``max_failed_steps``.

    >>> from r1rl.rewards.hierarchy import Tier
    >>> def broken(prompts, completions, **kw):
    ...     raise KeyError("answer")
    >>> h = RewardHierarchy([Tier("task", broken)], max_failed_steps=2)
    >>> watch = FailureWatch(h)
    >>> watch.observe(h(["p"], ["c"]))
    >>> try:
    ...     watch.observe(h(["p"], ["c"]))
    ... except RewardFailedError as e:
    ...     for line in str(e).split("; "):
    ...         print(line)
    reward 'broken' (tier 'task') failed on every sample for 2 steps in a row (rewards.max_failed_steps=2)
    first: raised KeyError: 'answer'
    """

    def __init__(self, hierarchy: RewardHierarchy, max_failed_steps: int | None = None) -> None:
        self.names = {t.name: fn_name(t.fn) for t in hierarchy.tiers}
        self.max_failed_steps = max_failed_steps or hierarchy.max_failed_steps
        self.streak = dict.fromkeys(self.names, 0)
        self.first: dict[str, Outcome] = {}  # tier -> the first failure of its current streak

    def observe(self, result: HierarchyResult, sum_counts: Callable[[Counts], Counts] | None = None) -> None:
        """One step's result (every call of the step, concatenated). ``sum_counts`` sums the counts
        over the processes of a launcher (a collective: every rank calls it every step), so every
        rank decides alike."""
        counts = {f"failed/{t}": float(failed(result, t)) for t in self.names}
        counts["n"] = float(len(result.rewards))
        if sum_counts is not None:
            counts = sum_counts(counts)
        for tier in self.names:
            if counts["n"] > 0 and counts[f"failed/{tier}"] >= counts["n"]:
                self.streak[tier] += 1
                if tier in result.failures:
                    self.first.setdefault(tier, result.failures[tier])
            else:
                self.streak[tier] = 0
                self.first.pop(tier, None)
        for tier, streak in self.streak.items():
            if streak >= self.max_failed_steps:
                limit = f"rewards.max_failed_steps={self.max_failed_steps}"
                how = f"on every sample for {streak} steps in a row ({limit})"
                raise failed_error(self.names[tier], tier, how, self.first.get(tier))

    def state_dict(self) -> dict[str, Any]:
        return {"streak": dict(self.streak)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for tier, streak in state.get("streak", {}).items():
            if tier in self.streak:
                self.streak[tier] = int(streak)


def failures_in(metrics: Mapping[str, Any], prefix: str = "reward") -> int | None:
    """Failed samples (errors and timeouts, every tier) in a metrics row; ``None`` when there are none,
    so a progress bar shows the count only when there is something to see.

    >>> failures_in({"reward/tier/a/errors": 2.0, "reward/tier/b/timeouts": 1.0, "reward/mean": 0.5})
    3
    """
    keys = [k for k in metrics if k.startswith(f"{prefix}/tier/") and k.endswith(("/errors", "/timeouts"))]
    return int(sum(metrics[k] or 0 for k in keys)) or None


def failed(result: HierarchyResult, tier: str) -> int:
    """Samples of ``tier`` that errored or timed out in ``result``."""
    return result.errors.get(tier, 0) + result.timeouts.get(tier, 0)


def failed_samples(result: HierarchyResult) -> int:
    """Failed samples over every tier (what a progress bar shows)."""
    return sum(failed(result, t) for t in result.scores)


def check_eval_failures(result: HierarchyResult, hierarchy: RewardHierarchy) -> None:
    """An evaluation is one step: a tier that failed on every one of its samples stops it."""
    n = len(result.rewards)
    for tier in hierarchy.tiers:
        if n and failed(result, tier.name) >= n:
            how = f"on every one of the {n} held-out samples"
            raise failed_error(fn_name(tier.fn), tier.name, how, result.failures.get(tier.name))


def failed_error(fn: str, tier: str, how: str, first: Outcome | None) -> RewardFailedError:
    detail = first.detail if first is not None else "no detail"
    message = f"reward {fn!r} (tier {tier!r}) failed {how}; first: {detail}"
    trace = (first.trace or first.detail) if first is not None else detail
    return RewardFailedError(message, f"{message}\n\n{trace.rstrip()}\n")
