"""Errors meant for people: the CLI prints their message on one line and exits with status 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """Bad input: a config key or value, a missing file, an absent column, an unloadable plug-in."""


class Preempted(Exception):
    """SIGTERM arrived; the training loop stopped at a step boundary after writing a checkpoint."""

    def __init__(self, step: int, checkpoint: object) -> None:
        super().__init__(f"stopped by SIGTERM after step {step}; checkpoint {checkpoint}")
        self.step, self.checkpoint = step, checkpoint


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or the list of valid ones."""
    choices = sorted(set(choices))
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (valid: {', '.join(choices)})" if choices else ""
