"""Stages: each is ``run(config) -> RunDir``."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel

from r1rl.config import EvalConfig, PPOConfig, PretrainConfig, SFTConfig
from r1rl.distributed import is_main
from r1rl.rundir import RunDir


def _pretrain(cfg: PretrainConfig) -> RunDir:
    from r1rl.stages import pretrain

    return _push_if_asked(cfg, pretrain.run(cfg))


def _sft(cfg: SFTConfig) -> RunDir:
    from r1rl.stages import sft

    return _push_if_asked(cfg, sft.run(cfg))


def _ppo(cfg: PPOConfig) -> RunDir:
    from r1rl.stages import ppo

    return _push_if_asked(cfg, ppo.run(cfg))


def _push_if_asked(cfg: PretrainConfig | SFTConfig | PPOConfig, rd: RunDir) -> RunDir:
    """``push_to_hub: true``: upload ``final/``, the tokenizer and a model card when the stage ends
    (from the main process only, under a multi-process launcher)."""
    if cfg.push_to_hub and is_main():
        from r1rl.hub import push_run

        print(f"[hub] {rd.path} → {push_run(rd.path, cfg.hub_repo_id, private=cfg.hub_private)}")
    return rd


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
