"""What every PPO phase reads: :class:`PPOContext` (roles, tokenizer, rewards, settings, processes,
engine, run) and :class:`PPOState` (what a checkpoint holds besides the weights).

The phases (:func:`r1rl.train.ppo.rollout.rollout`, :func:`r1rl.train.ppo.update.update`, the
loop in :mod:`r1rl.train.ppo.trainer`) take one context instead of a dozen arguments, so a call
line says what a phase adds — the records, the rollout, β — and nothing it shares with the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from r1rl.algorithms import ppo
from r1rl.config import PPOSettings
from r1rl.envs.episodes import EnvSpec
from r1rl.errors import UserError
from r1rl.models.moe import RoutingReplay
from r1rl.parallel.distributed import Parallel
from r1rl.records import Task
from r1rl.rewards.hierarchy import RewardHierarchy
from r1rl.rewards.watch import FailureWatch
from r1rl.rundir import RunDir
from r1rl.train.common import cosine_schedule
from r1rl.train.ppo.engines import RolloutEngine
from r1rl.train.ppo.roles import ActorCritic, FullActorCritic
from r1rl.train.ppo.selection import PromptSelector, SelectionSettings

# a named, timed block of a step: ``with phase("generate"): ...`` (the loop's StepLogger.phase)
Phase = Callable[[str], AbstractContextManager[None]]


@contextmanager
def untimed(name: str) -> Iterator[None]:
    yield


class NonFiniteError(UserError):
    """Too many steps in a row were skipped for non-finite rewards, log-probs, losses or gradients."""


class PPOState:
    """Everything of the loop a checkpoint holds besides the weights: optimizers, schedules, β, streams."""

    def __init__(
        self, roles: Any, cfg: PPOSettings, seed: int, n_rows: int, hierarchy: RewardHierarchy
    ) -> None:
        optim, algorithm = cfg.optim, cfg.algorithm
        self.opts = {
            "policy": torch.optim.AdamW(roles.adapter_parameters("policy"), lr=optim.lr, weight_decay=0.0)
        }
        if roles.has_critic:
            self.opts["critic"] = torch.optim.AdamW(
                roles.adapter_parameters("critic"), lr=optim.critic_lr, weight_decay=0.0
            )
        self.scheds = {
            k: cosine_schedule(opt, optim.warmup_steps, cfg.steps, 1.0) for k, opt in self.opts.items()
        }
        self.kl_ctl: ppo.FixedKLController = (
            ppo.AdaptiveKLController(algorithm.kl_coef, algorithm.kl_target, algorithm.kl_horizon)
            if algorithm.kl_target is not None
            else ppo.FixedKLController(algorithm.kl_coef)
        )
        self.generator = torch.Generator().manual_seed(seed)  # minibatch order
        sel = cfg.selection
        settings = SelectionSettings(
            curriculum_floor=sel.curriculum_floor if sel.curriculum else None,
            replay_fraction=sel.replay_fraction, replay_threshold=sel.replay_threshold,
            replay_capacity=sel.replay_capacity, replay_max_visits=sel.replay_max_visits,
        )  # fmt: skip
        self.sampler = PromptSelector(n_rows, cfg.rollout.prompts_per_step, seed + 1, settings)  # prompts
        self.hierarchy = hierarchy
        self.watch = FailureWatch(hierarchy)  # a tier failing on every sample, step after step, stops the run
        self.skipped_steps, self.in_a_row = 0, 0
        self.generated = 0  # completions generated so far, dynamic sampling's dropped ones included

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer": {k: o.state_dict() for k, o in self.opts.items()},
            "scheduler": {k: s.state_dict() for k, s in self.scheds.items()},
            "kl_ctl": self.kl_ctl.state_dict(),
            "rewards": self.hierarchy.state_dict(),  # running normalisation statistics
            "reward_watch": self.watch.state_dict(),  # steps in a row on which a tier failed everywhere
            "generator": self.generator.get_state(),
            "sampler": self.sampler.state_dict(),
            "skipped_steps": self.skipped_steps,
            "generated": self.generated,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k in self.opts:
            self.opts[k].load_state_dict(state["optimizer"][k])
            self.scheds[k].load_state_dict(state["scheduler"][k])
        self.kl_ctl.load_state_dict(state["kl_ctl"])
        if "rewards" in state:
            self.hierarchy.load_state_dict(state["rewards"])
        self.watch.load_state_dict(state.get("reward_watch", {}))
        self.generator.set_state(state["generator"])
        self.sampler.load_state_dict(state["sampler"])
        self.skipped_steps = state.get("skipped_steps", 0)
        self.generated = state.get("generated", 0)

    def count_skip(self, skipped: bool, done: int, cfg: PPOSettings, run: RunDir) -> None:
        """Count a skipped step; ``max_consecutive_skips`` in a row halt with :class:`NonFiniteError`."""
        self.skipped_steps += int(skipped)
        self.in_a_row = self.in_a_row + 1 if skipped else 0
        if self.in_a_row >= cfg.optim.max_consecutive_skips:
            raise NonFiniteError(
                f"ppo halted at step {done}: {self.in_a_row} steps in a row had non-finite rewards, "
                "log-probs, losses or gradients; lower optim.lr or check the reward functions "
                f"(last good checkpoint in {run.checkpoints})"
            )


@dataclass
class PPOContext:
    """The roles, the rewards, the settings and the machinery every PPO phase shares.

    Built by the recipe from its pieces; :func:`r1rl.train.ppo.trainer.train_ppo` adds the loop's
    own parts (``state``, ``replay``, ``phase``) to its copy. A phase called on its own (a test, an
    experiment) needs only the first four: one process, ``generate`` on the policy, nothing timed.
    """

    roles: ActorCritic | FullActorCritic  # the policy, the critic and the reference, on one base
    tokenizer: Any
    hierarchy: RewardHierarchy  # the task's reward tiers
    settings: PPOSettings
    parallel: Parallel = field(default_factory=Parallel)  # the processes of a launcher (or one)
    task: Task | None = None  # stop sequences and system prompt
    engine: RolloutEngine | None = None  # samples the rollouts (None: ``rollout.engine``'s / ``generate``)
    run: RunDir | None = None  # the run directory: checkpoints and metrics
    replay: RoutingReplay | None = None  # the rollout's routing, replayed (or compared) in the update
    state: PPOState | None = None  # optimizers, schedules, β, samplers (the loop's)
    phase: Phase = untimed  # times each named block of a step (the loop's StepLogger.phase)
    env: EnvSpec | None = None  # multi-turn episodes: tools and an environment (None: one completion)
