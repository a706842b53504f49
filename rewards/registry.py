"""Reward registry and resolution.

A reward function has the TRL-compatible signature
``fn(prompts: list[str], completions: list[str], **columns) -> list[float | None]``
(``None`` = not applicable). Register one with :func:`register`; a recipe names it by
registered name, ``package.module:function``, ``path/to/file.py:function``, or a name that
an installed package exposes through the ``r1rl.rewards`` entry-point group. Resolution checks,
once, that the target imports, is callable and has that signature; a name that is none of
these gets the nearest valid name (:class:`~r1rl.errors.UserError`, one line). The typed
outcomes of a call are in :mod:`r1rl.rewards.protocol`.

An installed package registers rewards with an entry point::

    [project.entry-points."r1rl.rewards"]
    my_judge = "my_pkg.rewards:judge"
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import cast

from r1rl.rewards.protocol import R, RewardFn

from r1rl.errors import UserError, did_you_mean
from r1rl.registry import Registry, load_plugin

__all__ = ["REWARDS", "RegisteredReward", "RewardFn", "register", "registered", "resolve"]


@dataclass(frozen=True)
class RegisteredReward:
    name: str
    tier: str
    fn: RewardFn


REWARDS: Registry[RegisteredReward] = Registry("reward")


def register(name: str, tier: str) -> Callable[[R], R]:
    """Decorator: register ``fn`` under ``name`` in ``tier``; duplicate names raise."""

    def deco(fn: R) -> R:
        _check_signature(fn, name)
        REWARDS.add(name, RegisteredReward(name, tier, fn))
        return fn

    return deco


def registered() -> dict[str, RegisteredReward]:
    return dict(REWARDS.items())


def resolve(spec: str) -> RewardFn:
    """Turn a recipe's reward spec into a callable, or raise a one-line :class:`UserError`."""
    if spec in REWARDS:
        return REWARDS[spec].fn
    if ":" in spec:
        fn = load_plugin(spec, "reward")
        attr = spec.rpartition(":")[2]
        if not callable(fn):
            raise UserError(f"reward {spec!r}: {attr!r} is a {type(fn).__name__}, not a function")
        _check_signature(fn, spec)
        return cast(RewardFn, fn)  # what it returns is checked at each call (protocol.call_reward)
    for ep in entry_points(group="r1rl.rewards"):
        if ep.name == spec:
            try:
                fn = ep.load()
            except Exception as e:  # a broken installed plug-in is bad input too
                raise UserError(
                    f"reward {spec!r}: entry point {ep.value!r} failed to load ({type(e).__name__}: {e})"
                ) from None
            if not callable(fn):
                raise UserError(f"reward {spec!r}: entry point {ep.value!r} is not callable")
            _check_signature(fn, spec)
            return cast(RewardFn, fn)
    names = REWARDS.names() + [ep.name for ep in entry_points(group="r1rl.rewards")]
    raise UserError(f"unknown reward {spec!r}{did_you_mean(spec, names)}")


def _check_signature(fn: RewardFn, spec: str) -> None:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return
    positional = [
        p for p in params.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]
    has_kwargs = any(p.kind == p.VAR_KEYWORD for p in params.values())
    if len(positional) < 2 and not any(p.kind == p.VAR_POSITIONAL for p in positional) or not has_kwargs:
        got = f"{getattr(fn, '__name__', type(fn).__name__)}{inspect.signature(fn)}"
        raise UserError(f"reward {spec!r}: expected signature fn(prompts, completions, **columns), got {got}")
