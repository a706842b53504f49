"""The reward hierarchy: tiers scored by plain reward functions, combined into one scalar.

Notation: ``N`` samples, tiers ``k = 1..K`` lowest first, score ``r_k`` (after the tier's
optional normalisation), threshold ``τ_k``, weight ``w_k``, training step ``s``.

Modes:

- ``gated``:     R = Σ_k w_k · r_k · Π_{j<k} [r_j ≥ τ_j] / Σ_k w_k — a tier counts only once
  every tier below it passes;
- ``weighted``:  R = Σ_k w_k · r_k / Σ_k w_k;
- ``scheduled``: ``weighted`` with w_k(s) = w_k + (w_k^end − w_k) · clip((s − s_0)/(s_1 − s_0), 0, 1),
  a reward curriculum (e.g. format first, correctness later). The step comes from
  :meth:`RewardHierarchy.set_step`: a trainer calls ``hierarchy.set_step(step)`` with the number
  of steps completed before each rollout; :meth:`~RewardHierarchy.as_reward_function` reads
  it from TRL's ``trainer_state.global_step``.

A tier that returns ``None`` for a sample is not applicable there: it passes its gate and
drops out of that sample's weight sum. Every sample of every call has a typed outcome
(:mod:`r1rl.rewards.protocol`: score, not applicable, error, timeout), counted per tier in the
metrics (``reward/tier/<tier>/{errors,timeouts,not_applicable}``) and logged — never silent.
What an error or timeout scores is the tier's ``on_error``: ``zero`` (0, fails its gate),
``skip`` (not applicable) or ``raise`` (:class:`~r1rl.rewards.protocol.RewardError`).

Per-tier normalisation (``normalize``) whitens a tier's applicable scores before combining:
``batch`` with this batch's mean and standard deviation, ``running`` with those of every score
seen so far (Chan, Golub & LeVeque 1979, the parallel form of Welford's update). Gates and
pass rates always use the raw scores: thresholds are in the reward's own units. Running
statistics update on every call unless inside ``with hierarchy.frozen():`` (use it around
held-out evaluation), and are saved by :meth:`~RewardHierarchy.state_dict`.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from r1rl.rewards.protocol import (
    ON_ERROR,
    Outcome,
    RewardFn,
    call_reward,
    count_outcomes,
    fn_name,
    missing_columns,
    resolve_outcomes,
)
from r1rl.rewards.registry import registered, resolve

from r1rl.errors import UserError

if TYPE_CHECKING:  # the config is only read here; importing it would load pydantic with every reward
    from r1rl.config.rewards import RewardModelSpec, RewardsConfig

log = logging.getLogger(__name__)
T = TypeVar("T")

MODES = ("gated", "weighted", "scheduled")
NORMALIZATIONS = ("none", "batch", "running")
EPS = 1e-8


@dataclass
class Tier:
    """One tier: its reward function and how its score enters the combination.

    ``weight_end`` is the weight at the end of the schedule (``scheduled`` mode only; ``None``
    keeps ``weight``); ``timeout_s`` bounds one call's wall-clock time.
    """

    name: str
    fn: RewardFn
    threshold: float = 1.0
    weight: float = 1.0
    weight_end: float | None = None
    on_error: str = "zero"
    timeout_s: float | None = None
    normalize: str = "none"

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise TypeError(f"tier {self.name!r}: fn must be callable, got {type(self.fn).__name__}")
        if self.on_error not in ON_ERROR:
            raise ValueError(f"tier {self.name!r}: on_error must be one of {ON_ERROR}, got {self.on_error!r}")
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(
                f"tier {self.name!r}: normalize must be one of {NORMALIZATIONS}, got {self.normalize!r}"
            )
        if self.weight < 0 or (self.weight_end is not None and self.weight_end < 0):
            raise ValueError(f"tier {self.name!r}: weights must be >= 0")
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise ValueError(f"tier {self.name!r}: timeout_s must be > 0, got {self.timeout_s!r}")


@dataclass
class RunningStats:
    """Mean and (population) variance of every value seen, merged batch by batch."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0  # Σ (x − mean)²

    def update(self, values: Sequence[float]) -> None:
        """Merge a batch (Chan et al. 1979: δ = μ_b − μ_a, M2 = M2_a + M2_b + δ²·n_a·n_b/n)."""
        n_b = len(values)
        if n_b == 0:
            return
        mean_b = sum(values) / n_b
        m2_b = sum((v - mean_b) ** 2 for v in values)
        n = self.count + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta**2 * self.count * n_b / n
        self.count = n

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / self.count) if self.count else 0.0


def whiten(scores: Sequence[float | None], mean: float, std: float) -> list[float | None]:
    """``(r − mean) / (std + ε)`` for every applicable score; ``None`` stays ``None``.

    >>> [None if z is None else round(z, 6) for z in whiten([1.0, None, 0.0], 0.5, 0.5)]
    [1.0, None, -1.0]
    """
    return [None if s is None else (s - mean) / (std + EPS) for s in scores]


def combine(
    scores: dict[str, list[float | None]],
    passed: dict[str, list[bool]],
    weights: dict[str, float],
    gated: bool,
) -> list[float]:
    """The combined reward per sample (module docstring); tiers in ``scores``' order, lowest first.

    >>> combine({"a": [1.0, 0.0], "b": [1.0, 1.0]}, {"a": [True, False], "b": [True, True]},
    ...         {"a": 1.0, "b": 1.0}, gated=True)
    [1.0, 0.0]
    """
    n = len(next(iter(scores.values()))) if scores else 0
    rewards = []
    for i in range(n):
        total, weight, gate = 0.0, 0.0, True
        for name, tier_scores in scores.items():
            s = tier_scores[i]
            if s is not None:
                total += weights[name] * s * (gate if gated else 1.0)
                weight += weights[name]
            gate = gate and passed[name][i]
        rewards.append(total / weight if weight > 0 else 0.0)
    return rewards


@dataclass
class HierarchyResult:
    rewards: list[float]  # (N,) combined reward
    scores: dict[str, list[float | None]]  # tier -> (N,) raw scores, failures resolved by on_error
    passed: dict[str, list[bool]]  # tier -> (N,) r_k >= τ_k (None counts as passed)
    errors: dict[str, int] = field(default_factory=dict)  # tier -> samples with an error (non-zero only)
    timeouts: dict[str, int] = field(default_factory=dict)  # tier -> samples timed out (non-zero only)
    not_applicable: dict[str, int] = field(default_factory=dict)  # tier -> samples the reward returned None
    weights: dict[str, float] = field(default_factory=dict)  # tier -> w_k(s) used (scheduled mode)
    running: dict[str, RunningStats] = field(default_factory=dict)  # tier -> running stats (if any)
    logged: dict[str, dict[str, float]] = field(default_factory=dict)  # tier -> what its reward logged
    failures: dict[str, Outcome] = field(default_factory=dict)  # tier -> its first failed sample (if any)

    def metrics(self, prefix: str = "reward") -> dict[str, float]:
        n = max(len(self.rewards), 1)
        out = {f"{prefix}/mean": sum(self.rewards) / n}
        for tier, passed in self.passed.items():
            vals = [s for s in self.scores[tier] if s is not None]
            t = f"{prefix}/tier/{tier}"
            out[f"{t}/pass_rate"] = sum(passed) / n
            out[f"{t}/mean"] = sum(vals) / len(vals) if vals else float("nan")
            out[f"{t}/errors"] = float(self.errors.get(tier, 0))
            out[f"{t}/timeouts"] = float(self.timeouts.get(tier, 0))
            out[f"{t}/not_applicable"] = float(self.not_applicable.get(tier, 0))
            if tier in self.weights:
                out[f"{t}/weight"] = self.weights[tier]
            if tier in self.running:
                out[f"{t}/running_mean"] = self.running[tier].mean
                out[f"{t}/running_std"] = self.running[tier].std
            for key, value in self.logged.get(tier, {}).items():
                out[f"{t}/{key}"] = value
        return out


def take_result(res: HierarchyResult, rows: Sequence[int]) -> HierarchyResult:
    """The samples ``rows`` of a result, in that order; counts are recounted over them, what the
    reward functions logged is kept as it was (it describes the call)."""

    def pick(xs: Sequence[T]) -> list[T]:
        return [xs[i] for i in rows]

    scores = {t: pick(v) for t, v in res.scores.items()}
    return HierarchyResult(
        pick(res.rewards), scores, {t: pick(v) for t, v in res.passed.items()},
        errors=_recount(res.errors, len(res.rewards), len(rows)),
        timeouts=_recount(res.timeouts, len(res.rewards), len(rows)),
        not_applicable={t: c for t, c in ((t, sum(s is None for s in v)) for t, v in scores.items()) if c},
        weights=res.weights, running=res.running, logged=res.logged, failures=res.failures,
    )  # fmt: skip


def _recount(counts: dict[str, int], n: int, kept: int) -> dict[str, int]:
    """Failure counts of a subset: which samples failed is not kept, so all of them when every sample
    is kept, none of a subset (failures are counted once, on the call that saw them)."""
    return dict(counts) if kept == n else {}


def concat_results(parts: Sequence[HierarchyResult]) -> HierarchyResult:
    """Results of several calls as one: samples one after another, failure counts summed.

    >>> a = HierarchyResult([1.0], {"t": [1.0]}, {"t": [True]}, errors={"t": 1})
    >>> b = HierarchyResult([0.0], {"t": [0.0]}, {"t": [False]}, errors={"t": 2})
    >>> c = concat_results([a, b]); c.rewards, c.passed, c.errors
    ([1.0, 0.0], {'t': [True, False]}, {'t': 3})
    """
    if len(parts) == 1:
        return parts[0]

    def summed(field_of: Callable[[HierarchyResult], dict[str, int]]) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in parts:
            for t, c in field_of(p).items():
                out[t] = out.get(t, 0) + c
        return out

    tiers = list(parts[0].scores)
    return HierarchyResult(
        [r for p in parts for r in p.rewards],
        {t: [s for p in parts for s in p.scores[t]] for t in tiers},
        {t: [s for p in parts for s in p.passed[t]] for t in tiers},
        errors=summed(lambda p: p.errors), timeouts=summed(lambda p: p.timeouts),
        not_applicable=summed(lambda p: p.not_applicable),
        weights=parts[-1].weights, running=parts[-1].running, logged=parts[-1].logged,
        failures={t: o for p in reversed(parts) for t, o in p.failures.items()},  # each tier's first
    )  # fmt: skip


class RewardHierarchy:
    """Tiers combined by ``mode``; call it like a reward function to get a :class:`HierarchyResult`.

    >>> from r1rl.rewards.math import math_syntax, math_task
    >>> h = RewardHierarchy([Tier("syntax", math_syntax), Tier("task", math_task)])
    >>> completions = ["<think>1+2=3</think><answer>3</answer>", "<answer>3</answer>"]
    >>> h(["1+2="] * 2, completions, answer=[3, 3]).rewards
    [1.0, 0.0]
    """

    def __init__(
        self,
        tiers: Sequence[Tier],
        mode: str = "gated",
        *,
        schedule_start: int = 0,
        schedule_end: int | None = None,
        max_failed_steps: int = 3,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown hierarchy mode {mode!r}; expected one of {', '.join(MODES)}")
        if not tiers:
            raise ValueError("a reward hierarchy needs at least one tier")
        names = [t.name for t in tiers]
        if len(set(names)) != len(names):
            raise ValueError(f"tier names must be unique, got {names}")
        if mode == "scheduled" and (schedule_end is None or schedule_end <= schedule_start):
            raise ValueError(
                f"mode 'scheduled' needs schedule_end > schedule_start, got {schedule_start}..{schedule_end}"
            )
        ends = [t.name for t in tiers if t.weight_end is not None]
        if ends and mode != "scheduled":
            raise ValueError(f"tiers {ends} set weight_end, which only mode 'scheduled' uses (not {mode!r})")
        self.tiers = list(tiers)
        self.mode = mode
        self.schedule_start, self.schedule_end = schedule_start, schedule_end
        self.max_failed_steps = max_failed_steps  # all-failed steps in a row that stop a run (rewards.watch)
        self.step = 0
        self.running = {t.name: RunningStats() for t in self.tiers if t.normalize == "running"}
        self.last_result: HierarchyResult | None = None
        self._frozen = False
        # Data-parallel training sets this to "every process's values" (an all-gather), so
        # per-tier batch and running statistics span the global batch and stay equal on all ranks.
        self.gather: Callable[[list[float]], list[float]] | None = None

    @classmethod
    def from_config(cls, cfg: RewardsConfig, device: str = "cpu") -> RewardHierarchy:
        """Build from a :class:`r1rl.config.RewardsConfig`; every reward is resolved (and checked) now.

        A tier's reward is a name (:func:`~r1rl.rewards.registry.resolve`) or a typed spec: a
        learned reward model (:mod:`r1rl.rewards.reward_model`), loaded now onto ``device``
        (the policy's) unless the spec names its own.
        """
        if cfg.tiers is None:  # a stage fills them in from its task (r1rl.train.prepare.resolved_rewards)
            raise UserError("rewards.tiers is not set: name the tiers, or take the task's own")
        tiers = []
        for i, t in enumerate(cfg.tiers):
            try:
                fn = build_reward(t.reward, device)
            except UserError as e:
                raise UserError(f"rewards.tiers[{i}] ({t.name}): {e}") from None
            tiers.append(
                Tier(
                    t.name,
                    fn,
                    t.threshold,
                    t.weight,
                    t.weight_end,
                    on_error=t.on_error or cfg.on_error,
                    timeout_s=t.timeout_s,
                    normalize=t.normalize or cfg.normalize,
                )
            )
        return cls(
            tiers, cfg.mode, schedule_start=cfg.schedule_start, schedule_end=cfg.schedule_end,
            max_failed_steps=cfg.max_failed_steps,
        )  # fmt: skip

    @classmethod
    def from_rewards(cls, specs: Sequence[str], mode: str = "gated", **tier_options: Any) -> RewardHierarchy:
        """Tiers named after the registered tier of each reward spec, e.g. a built-in suite.

        >>> RewardHierarchy.from_rewards(["math_syntax", "math_logic", "math_task"]).tier_names
        ['syntax', 'logic', 'task']
        """
        reg = registered()
        tiers = [Tier(reg[s].tier if s in reg else s, resolve(s), **tier_options) for s in specs]
        return cls(tiers, mode)

    def check_columns(self, have: Sequence[str], where: str) -> None:
        """Refuse (one line) a hierarchy whose rewards need a column that ``have`` (the data's) lacks."""
        for i, tier in enumerate(self.tiers):
            group = missing_columns(tier.fn, have)
            if group is not None:
                need = " or ".join(repr(c) for c in group)
                raise UserError(
                    f"rewards.tiers[{i}] ({tier.name}): reward {fn_name(tier.fn)!r} needs a column {need}, "
                    f"which {where} lacks (columns: {', '.join(sorted(have)) or 'none'}); "
                    "add it to the data, map it with data.columns, or pick another reward"
                )

    @property
    def tier_names(self) -> list[str]:
        return [t.name for t in self.tiers]

    # --- training progress and state ------------------------------------------------------

    def gather_with(self, gather: Callable[[list[float]], list[float]]) -> None:
        """Data-parallel training: ``gather`` returns every process's values (an all-gather), so
        per-tier batch and running statistics span the global batch (a collective per tier call)."""
        self.gather = gather

    def set_step(self, step: int) -> None:
        """Training steps completed so far; ``scheduled`` mode interpolates the weights with it."""
        self.step = int(step)

    def weights(self, step: int | None = None) -> dict[str, float]:
        """w_k at ``step`` (default: the current step); constant unless the mode is ``scheduled``."""
        if self.mode != "scheduled":
            return {t.name: t.weight for t in self.tiers}
        s = self.step if step is None else step
        assert self.schedule_end is not None  # checked in __init__
        frac = min(max((s - self.schedule_start) / (self.schedule_end - self.schedule_start), 0.0), 1.0)
        return {
            t.name: t.weight + ((t.weight if t.weight_end is None else t.weight_end) - t.weight) * frac
            for t in self.tiers
        }

    @contextlib.contextmanager
    def frozen(self) -> Iterator[RewardHierarchy]:
        """Score without updating the running normalisation statistics (held-out evaluation)."""
        before, self._frozen = self._frozen, True
        try:
            yield self
        finally:
            self._frozen = before

    def state_dict(self) -> dict[str, Any]:
        running = {k: {"count": v.count, "mean": v.mean, "m2": v.m2} for k, v in self.running.items()}
        return {"step": self.step, "running": running}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state.get("step", 0))
        for k, v in state.get("running", {}).items():
            if k in self.running:
                self.running[k] = RunningStats(int(v["count"]), float(v["mean"]), float(v["m2"]))

    # --- scoring ----------------------------------------------------------------------------

    def __call__(self, prompts: list[Any], completions: list[Any], **columns: Any) -> HierarchyResult:
        raw: dict[str, list[float | None]] = {}
        counts: dict[str, dict[str, int]] = {}
        logged: dict[str, dict[str, float]] = {}
        failures: dict[str, Outcome] = {}
        for tier in self.tiers:
            tier_columns = {**columns, "log_metric": _log_into(logged.setdefault(tier.name, {}))}
            where = f"reward {fn_name(tier.fn)!r} in tier {tier.name!r}"
            outcomes = call_reward(
                tier.fn, prompts, completions, tier_columns, timeout_s=tier.timeout_s, where=where
            )
            counts[tier.name] = count_outcomes(outcomes)
            first = next((o for o in outcomes if o.kind in ("error", "timeout")), None)
            if first is not None:
                failures[tier.name] = first
            _log_failures(tier, outcomes, counts[tier.name])
            raw[tier.name] = resolve_outcomes(outcomes, tier.on_error, where)
        passed = {t.name: [s is None or s >= t.threshold for s in raw[t.name]] for t in self.tiers}
        weights = self.weights()
        rewards = combine(self._normalized(raw), passed, weights, gated=self.mode == "gated")
        result = HierarchyResult(
            rewards, raw, passed,
            errors={k: c["error"] for k, c in counts.items() if c["error"]},
            timeouts={k: c["timeout"] for k, c in counts.items() if c["timeout"]},
            not_applicable={k: c["not_applicable"] for k, c in counts.items() if c["not_applicable"]},
            weights=weights if self.mode == "scheduled" else {},
            running={k: RunningStats(v.count, v.mean, v.m2) for k, v in self.running.items()},
            logged={k: v for k, v in logged.items() if v}, failures=failures,
        )  # fmt: skip
        self.last_result = result
        return result

    def _normalized(self, raw: dict[str, list[float | None]]) -> dict[str, list[float | None]]:
        out = {}
        for t in self.tiers:
            vals = [s for s in raw[t.name] if s is not None]
            if t.normalize != "none" and self.gather is not None and not self._frozen:
                vals = self.gather(vals)  # a collective: every rank gets here for every tier
            if t.normalize == "batch" and vals:
                stats = RunningStats()
                stats.update(vals)
                out[t.name] = whiten(raw[t.name], stats.mean, stats.std)
            elif t.normalize == "running":
                if not self._frozen:
                    self.running[t.name].update(vals)
                stats = self.running[t.name]
                out[t.name] = whiten(raw[t.name], stats.mean, stats.std) if stats.count else raw[t.name]
            else:
                out[t.name] = raw[t.name]
        return out

    def as_reward_function(self) -> RewardFn:
        """The combined reward as a TRL-compatible ``fn(prompts, completions, **kw)``.

        Under TRL it follows ``trainer_state.global_step`` (for ``scheduled`` mode) and reports
        every tier metric through ``log_metric`` (logged as ``reward/tier/<tier>/...``).
        """

        def hierarchy_reward(prompts: list[Any], completions: list[Any], **columns: Any) -> list[float]:
            step = getattr(columns.get("trainer_state"), "global_step", None)
            if step is not None:
                self.set_step(step)
            res = self(prompts, completions, **columns)
            log_metric = columns.get("log_metric")
            if callable(log_metric):
                for k, v in res.metrics().items():
                    log_metric(k, v)
            return res.rewards

        return hierarchy_reward


def build_reward(spec: str | RewardModelSpec, device: str = "cpu") -> RewardFn:
    """The reward function a tier's ``reward`` names: a string is resolved by name, a
    ``{type: reward_model, ...}`` spec loads that model (torch is imported only then)."""
    if isinstance(spec, str):
        return resolve(spec)
    if getattr(spec, "type", None) == "reward_model":
        from r1rl.rewards.reward_model import load_reward_model

        return load_reward_model(spec, device)
    raise UserError(f"reward {spec!r}: expected a reward name or {{type: reward_model, path: ...}}")


def _log_into(sink: dict[str, float]) -> Callable[[str, float], None]:
    """TRL's ``log_metric`` for one tier's reward: what it logs lands in the result's metrics
    (``reward/tier/<tier>/<name>``), which :meth:`RewardHierarchy.as_reward_function` hands to TRL."""

    def log_metric(name: str, value: float) -> None:
        sink[name] = float(value)

    return log_metric


def _log_failures(tier: Tier, outcomes: list[Outcome], counts: dict[str, int]) -> None:
    for kind in ("error", "timeout"):
        if counts[kind]:
            first = next(o for o in outcomes if o.kind == kind)
            log.warning(
                "reward %s (tier %s): %d of %d samples %s (%s); on_error=%s",
                fn_name(tier.fn), tier.name, counts[kind], len(outcomes),
                "failed" if kind == "error" else "timed out", first.detail, tier.on_error,
            )  # fmt: skip
