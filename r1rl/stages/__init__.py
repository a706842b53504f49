"""Stages: each is ``run(config) -> RunDir``."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel

from r1rl.config import EvalConfig, PPOConfig, PretrainConfig, SFTConfig
from r1rl.rundir import RunDir


def _pretrain(cfg: PretrainConfig) -> RunDir:
    from r1rl.stages import pretrain

    return pretrain.run(cfg)


def _sft(cfg: SFTConfig) -> RunDir:
    from r1rl.stages import sft

    return sft.run(cfg)


def _ppo(cfg: PPOConfig) -> RunDir:
    from r1rl.stages import ppo

    return ppo.run(cfg)


def _eval(cfg: EvalConfig) -> RunDir:
    from r1rl.stages import evaluate

    return evaluate.run(cfg)


STAGES: dict[str, Callable[..., RunDir]] = {"pretrain": _pretrain, "sft": _sft, "ppo": _ppo, "eval": _eval}
CONFIG_TYPES: dict[str, type[BaseModel]] = {
    "pretrain": PretrainConfig,
    "sft": SFTConfig,
    "ppo": PPOConfig,
    "eval": EvalConfig,
}
