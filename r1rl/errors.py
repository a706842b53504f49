"""Errors meant for people: the CLI prints their message on one line and exits with status 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path


class UserError(Exception):
    """Bad input: a config key or value, a missing file, an absent column, an unloadable plug-in."""


class RewardFailedError(UserError):
    """A reward tier failed on every sample, step after step (:mod:`r1rl.rewards.watch`).

    The message is the one line the user sees; ``trace`` (the first exception's traceback) goes to
    ``reward_errors.log`` in the run directory: the stage writes it (:meth:`written_to`) on its way out.
    """

    LOG = "reward_errors.log"

    def __init__(self, message: str, trace: str) -> None:
        super().__init__(message)
        self.trace = trace

    def written_to(self, run_dir: str | Path) -> RewardFailedError:
        """Write ``trace`` to ``<run_dir>/reward_errors.log``; the same error, its line naming that file
        (itself, unchanged, when the file cannot be written)."""
        path = Path(run_dir) / self.LOG
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(self.trace)
        except OSError:
            return self
        return RewardFailedError(f"{self}; traceback in {path}", self.trace)


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
