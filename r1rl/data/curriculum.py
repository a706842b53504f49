"""Curriculum: a difficulty score per example, stages basic → intermediate → expert, and a sampler.

Notation: ``N`` examples, ``S`` stages (3 by default: :data:`STAGE_NAMES`).

1. **Difficulty** — :func:`difficulty_scores` with a registered kind: ``length`` (characters),
   ``operands`` (terms of an arithmetic problem, from the source's ``meta``; digits break
   ties), ``perplexity`` (a :mod:`~r1rl.data.scoring` scorer, e.g. a reference model).
2. **Stages** — :func:`assign_stages` cuts the scores at quantiles (or given boundaries);
   equal scores always share a stage.
3. **Schedule** — :class:`StageSchedule` says which stage is current: after fixed step
   counts (a pure function of the step, so resume is exact) or when the smoothed training
   loss stops improving by ``min_delta`` (relative) for ``patience`` steps (a loss plateau;
   its state is checkpointed with :meth:`~StageSchedule.state_dict`).
4. **Sampling** — :class:`CurriculumSampler` draws from the current stage, with a fraction
   ``mix_earlier`` of each batch from the earlier stages (so earlier skills are rehearsed,
   as in Bengio et al. 2009, "Curriculum learning", where the training distribution widens
   rather than moves). Within a stage, examples are drawn without replacement in shuffled
   passes.

Random order is the same sampler over a single stage (:func:`random_order`).

    >>> assign_stages(np.array([1.0, 2, 3, 4, 5, 6])).tolist()
    [0, 0, 1, 1, 2, 2]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from r1rl.data.scoring import Scorer
from r1rl.data.sources import Document
from r1rl.errors import UserError
from r1rl.registry import Registry

STAGE_NAMES = ("basic", "intermediate", "expert")

DifficultyFn = Callable[[Sequence[Document]], np.ndarray]
DIFFICULTIES: Registry[DifficultyFn] = Registry("difficulty")


@DIFFICULTIES.register("length")
def length_difficulty() -> DifficultyFn:
    """Characters per document."""
    return lambda docs: np.array([len(d.text) for d in docs], dtype=np.float64)


@DIFFICULTIES.register("operands")
def operands_difficulty() -> DifficultyFn:
    """Terms of an arithmetic problem (``meta["operands"]``), plus digits/10 of its largest operand."""

    def score(docs: Sequence[Document]) -> np.ndarray:
        missing = next((d for d in docs if "operands" not in d.meta), None)
        if missing is not None:
            raise UserError(
                f"curriculum.difficulty 'operands' needs documents from the arithmetic source; "
                f"a document from {missing.source!r} has no meta['operands']"
            )
        return np.array([d.meta["operands"] + d.meta.get("digits", 0) / 10 for d in docs], dtype=np.float64)

    return score


@DIFFICULTIES.register("perplexity")
def perplexity_difficulty(scorer: Scorer) -> DifficultyFn:
    """The scorer's value, e.g. perplexity under a reference model: less familiar = harder."""
    return lambda docs: np.asarray(scorer([d.text for d in docs]), dtype=np.float64)


def difficulty_scores(docs: Sequence[Document], kind: str = "length", **kwargs: Any) -> np.ndarray:
    """Difficulty of each document by a registered ``kind``. -> (N,)"""
    return DIFFICULTIES.get(kind, "curriculum.difficulty")(**kwargs)(docs)


def stage_boundaries(scores: np.ndarray, fractions: Sequence[float] = (1 / 3, 1 / 3, 1 / 3)) -> np.ndarray:
    """Upper score boundary of each stage but the last: quantiles at the cumulative ``fractions``. -> (S-1,)

    Keep them to put held-out examples into the same stages (``assign_stages(val, boundaries=b)``).
    """
    if not fractions or any(f <= 0 for f in fractions):
        raise UserError(f"curriculum.fractions must be positive (got {list(fractions)})")
    scores = np.asarray(scores, dtype=np.float64)
    if not len(scores):
        return np.zeros(len(fractions) - 1)
    cum = np.cumsum(fractions)[:-1] / np.sum(fractions)
    return np.quantile(scores, cum, method="lower")


def assign_stages(
    scores: np.ndarray,
    fractions: Sequence[float] = (1 / 3, 1 / 3, 1 / 3),
    boundaries: Sequence[float] | None = None,
) -> np.ndarray:
    """Stage index of each example: 0 for the easiest. (N,) -> (N,) int.

    Without ``boundaries``, they are :func:`stage_boundaries` of ``scores``; an example goes
    to the first stage whose upper boundary is ≥ its score, so ties never straddle stages
    (discrete scores may make the stages' sizes differ from ``fractions``).
    """
    scores = np.asarray(scores, dtype=np.float64)
    if boundaries is None:
        boundaries = stage_boundaries(scores, fractions)
    return np.searchsorted(np.asarray(boundaries, dtype=np.float64), scores, side="left")


class StageSchedule:
    """Which of ``num_stages`` stages is current, switching by step or on a loss plateau.

    ``switch_steps`` (length ``num_stages − 1``, increasing) fixes the steps at which each
    next stage starts. Without it, the stage advances when the exponentially smoothed loss
    (coefficient ``smoothing``) has not dropped below ``best × (1 − min_delta)`` for
    ``patience`` consecutive observed steps, and at least ``min_steps`` steps were spent in
    the stage. Switches are recorded in ``switches`` as ``(step, new_stage)``.
    """

    def __init__(
        self,
        num_stages: int = 3,
        switch_steps: Sequence[int] | None = None,
        *,
        patience: int = 50,
        min_delta: float = 0.01,
        smoothing: float = 0.9,
        min_steps: int = 0,
    ) -> None:
        if switch_steps is not None:
            if len(switch_steps) != num_stages - 1 or list(switch_steps) != sorted(switch_steps):
                n, got = num_stages - 1, list(switch_steps)
                raise UserError(f"curriculum.switch_steps must list {n} increasing steps (got {got})")
        if patience < 1 or not 0 <= smoothing < 1:
            raise UserError("curriculum: patience must be >= 1 and smoothing in [0, 1)")
        self.num_stages = num_stages
        self.switch_steps = list(switch_steps) if switch_steps is not None else None
        self.patience, self.min_delta, self.smoothing, self.min_steps = (
            patience,
            min_delta,
            smoothing,
            min_steps,
        )
        self.stage = 0
        self.switches: list[tuple[int, int]] = []
        self._ema: float | None = None
        self._best = float("inf")
        self._since_best = 0
        self._stage_start = 0

    @property
    def mode(self) -> str:
        return "steps" if self.switch_steps is not None else "plateau"

    def stage_at(self, step: int) -> int:
        """The stage for ``step`` (by-step mode: a pure function; plateau mode: the current stage)."""
        if self.switch_steps is None:
            return self.stage
        stage = int(np.searchsorted(self.switch_steps, step, side="right"))
        if stage != self.stage:
            self.switches.append((step, stage))
            self.stage = stage
        return stage

    def observe(self, step: int, loss: float) -> bool:
        """Feed the training loss after ``step``; True if this advanced the stage (plateau mode only)."""
        if self.switch_steps is not None or self.stage == self.num_stages - 1:
            return False
        self._ema = loss if self._ema is None else self.smoothing * self._ema + (1 - self.smoothing) * loss
        if self._ema < self._best * (1 - self.min_delta):
            self._best, self._since_best = self._ema, 0
            return False
        self._since_best += 1
        if self._since_best >= self.patience and step + 1 - self._stage_start >= self.min_steps:
            self.stage += 1
            self.switches.append((step + 1, self.stage))
            self._best, self._since_best, self._stage_start = float("inf"), 0, step + 1
            self._ema = None  # the next stage's data has a different loss level
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        keys = ("stage", "_ema", "_best", "_since_best", "_stage_start")
        return {"switches": list(self.switches), **{k: getattr(self, k) for k in keys}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, list(v) if k == "switches" else v)


class _Pool:
    """Indices drawn without replacement in reshuffled passes."""

    def __init__(self, indices: np.ndarray) -> None:
        self.indices = indices
        self.order = np.zeros(0, dtype=np.int64)
        self.pos = 0

    def take(self, k: int, rng: np.random.Generator) -> np.ndarray:
        out = []
        while k > 0:
            if self.pos >= len(self.order):
                self.order, self.pos = rng.permutation(self.indices), 0
            got = self.order[self.pos : self.pos + k]
            self.pos += len(got)
            k -= len(got)
            out.append(got)
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


class CurriculumSampler:
    """Example indices for each batch, following a :class:`StageSchedule`.

    ``stages`` (N,) gives each example's stage. Of the ``n`` examples drawn at stage ``s > 0``,
    ``Binomial(n, mix_earlier)`` come from stages ``< s`` (each earlier stage in proportion to
    its size), the rest from stage ``s``. Deterministic in ``seed`` and the sequence of calls.
    """

    def __init__(
        self, stages: np.ndarray, schedule: StageSchedule, mix_earlier: float = 0.2, seed: int = 0
    ) -> None:
        stages = np.asarray(stages)
        if not 0 <= mix_earlier <= 1:
            raise UserError(f"curriculum.mix_earlier must be in [0, 1] (got {mix_earlier})")
        self.pools = [_Pool(np.flatnonzero(stages == s)) for s in range(schedule.num_stages)]
        empty = [
            STAGE_NAMES[s] if s < len(STAGE_NAMES) else str(s)
            for s, p in enumerate(self.pools)
            if not len(p.indices)
        ]
        if empty:
            raise UserError(
                f"curriculum: stage(s) {empty} have no examples; the difficulty scores do not spread "
                "enough for this many stages"
            )
        self.schedule, self.mix_earlier = schedule, mix_earlier
        self.rng = np.random.default_rng(seed)
        self.drawn_per_stage = [0] * schedule.num_stages

    def sample(self, n: int, step: int) -> np.ndarray:
        """``n`` example indices for ``step``. -> (n,) int64"""
        s = self.schedule.stage_at(step)
        n_early = int(self.rng.binomial(n, self.mix_earlier)) if s > 0 else 0
        parts = [self.pools[s].take(n - n_early, self.rng)]
        self.drawn_per_stage[s] += n - n_early
        if n_early:
            sizes = np.array([len(p.indices) for p in self.pools[:s]], dtype=np.float64)
            counts = self.rng.multinomial(n_early, sizes / sizes.sum())
            for e, k in enumerate(counts):
                if k:
                    parts.append(self.pools[e].take(int(k), self.rng))
                    self.drawn_per_stage[e] += int(k)
        out = np.concatenate(parts)
        return out[self.rng.permutation(len(out))]

    def state_dict(self) -> dict[str, Any]:
        return {
            "rng": self.rng.bit_generator.state,
            "pools": [(p.order.copy(), p.pos) for p in self.pools],
            "schedule": self.schedule.state_dict(),
            "drawn_per_stage": list(self.drawn_per_stage),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        for p, (order, pos) in zip(self.pools, state["pools"]):
            p.order, p.pos = np.asarray(order), pos
        self.schedule.load_state_dict(state["schedule"])
        self.drawn_per_stage = list(state["drawn_per_stage"])


def random_order(num_examples: int, seed: int = 0) -> CurriculumSampler:
    """The no-curriculum baseline: one stage holding every example, shuffled passes."""
    return CurriculumSampler(np.zeros(num_examples, dtype=np.int64), StageSchedule(1, []), 0.0, seed)
