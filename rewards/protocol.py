"""The reward-function protocol: one signature, four typed outcomes per sample.

A reward function has TRL's signature
``fn(prompts: list[str], completions: list[str], **columns) -> list[float | None]``, one value
per completion; ``columns`` are the dataset's other columns, one value per completion each
(TRL also passes ``completion_ids``, ``trainer_state``, ``log_metric`` and ``log_extra``).
Every sample of every call ends in exactly one outcome:

================  ==========================================  ============================
outcome           the reward function says so by              TRL sees
================  ==========================================  ============================
score             a finite number                             that number
not_applicable    ``None``                                    NaN (left out of its nansum)
error             :func:`reward_error` for one sample,        NaN / the exception
                  raising for the whole call, a
                  non-finite value
timeout           :func:`reward_timeout` for one sample,      NaN / the exception
                  raising :class:`RewardTimeout` (or any
                  ``TimeoutError``), or running past the
                  tier's ``timeout_s``
================  ==========================================  ============================

:func:`call_reward` makes one checked call and returns the outcomes; it never raises for a
reward's failure on a sample. What a failure scores is the caller's policy (``on_error``: ``zero``,
``skip`` = not applicable, ``raise``), applied by :func:`resolve_outcomes`.

A broken *contract* is another matter: a result that is not one value per completion, or a value
that is neither a number nor ``None``, is a bug in the function, not a property of a sample, and
:func:`call_reward` raises :class:`RewardContractError` (one line naming the function) on the
first call that shows it, whatever ``on_error`` says.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
import subprocess
import threading
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from r1rl.errors import UserError

RewardFn = Callable[..., Sequence[float | None]]  # one value per completion; see the table above
R = TypeVar("R", bound=RewardFn)  # a reward function, its own type kept through a decorator
OutcomeKind = Literal["score", "not_applicable", "error", "timeout"]
OUTCOMES: tuple[str, ...] = ("score", "not_applicable", "error", "timeout")
OnError = Literal["zero", "skip", "raise"]
ON_ERROR: tuple[str, ...] = ("zero", "skip", "raise")
TRL_HOOKS = ("completion_ids", "trainer_state", "log_metric", "log_extra")  # keyword arguments, not columns


class RewardTimeout(TimeoutError):
    """Raise from a reward function to mark every sample of the call as timed out."""


class RewardError(UserError):
    """A reward failed and its tier's ``on_error`` is ``raise``; the message is one line."""


class RewardContractError(UserError):
    """A reward returned something other than one number (or ``None``) per completion: a bug in it."""


class Failure(float):
    """A per-sample failure a reward function returns in place of a score.

    It *is* a float (NaN), so TRL, which turns ``None`` into NaN and sums rewards with
    ``nansum``, leaves the sample out of that function's sum; r1rl reads its ``kind``.

    >>> f = reward_timeout("judge did not answer")
    >>> f.kind, math.isnan(f)
    ('timeout', True)
    """

    kind: Literal["error", "timeout"]
    detail: str

    def __new__(cls, kind: Literal["error", "timeout"], detail: str = "") -> Failure:
        if kind not in ("error", "timeout"):
            raise ValueError(f"Failure kind must be 'error' or 'timeout', got {kind!r}")
        self = super().__new__(cls, math.nan)
        self.kind, self.detail = kind, detail
        return self

    def __reduce__(self) -> tuple[Any, ...]:  # float's pickling would call __new__(cls, nan)
        return (Failure, (self.kind, self.detail))

    def __repr__(self) -> str:
        return f"reward_{self.kind}({self.detail!r})"


def reward_error(detail: str = "") -> Failure:
    """The value a reward function returns for a sample it could not score."""
    return Failure("error", detail)


def reward_timeout(detail: str = "") -> Failure:
    """The value a reward function returns for a sample whose scoring ran out of time."""
    return Failure("timeout", detail)


@dataclass(frozen=True)
class Outcome:
    """One sample's outcome: ``kind`` and, for ``score``, the ``value``; ``detail`` says why."""

    kind: OutcomeKind
    value: float | None = None
    detail: str = ""
    trace: str = field(default="", compare=False, repr=False)  # the traceback of a raised exception


def fn_name(fn: Any) -> str:
    """A reward's display name (TRL's rule: unwrap partials, else the class name)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return getattr(fn, "__name__", type(fn).__name__)


def required_columns(fn: RewardFn) -> list[str]:
    """Parameters after ``prompts, completions`` that have no default: columns the call needs.

    >>> def task(prompts, completions, answer, *, schema=None, **kw): ...
    >>> required_columns(task)
    ['answer']
    """
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return []
    named = [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return [p.name for p in named[2:] if p.default is p.empty]


def columns(*specs: str) -> Callable[[R], R]:
    """Declare the dataset columns a reward needs; ``"a | b"`` means either will do.

    A hierarchy whose rewards need a column the data lacks is refused before training, naming both.

    >>> @columns("answer", "test_list | test")
    ... def judge(prompts, completions, **kw): ...
    >>> needed_columns(judge)
    [('answer',), ('test_list', 'test')]
    """
    groups = [tuple(c.strip() for c in spec.split("|") if c.strip()) for spec in specs]

    def deco(fn: R) -> R:
        fn.__r1rl_columns__ = groups  # type: ignore[attr-defined]
        return fn

    return deco


def needed_columns(fn: RewardFn) -> list[tuple[str, ...]]:
    """The column groups ``fn`` needs: those declared with :func:`columns`, then its required parameters."""
    out = list(getattr(fn, "__r1rl_columns__", []))
    for name in required_columns(fn):
        if not any(name in group for group in out):
            out.append((name,))
    return out


def missing_columns(fn: RewardFn, have: Sequence[str]) -> tuple[str, ...] | None:
    """The first column group of ``fn`` that ``have`` lacks entirely, or ``None``."""
    for group in needed_columns(fn):
        if not set(group) & set(have):
            return group
    return None


def call_reward(
    fn: RewardFn,
    prompts: Sequence[Any],
    completions: Sequence[Any],
    columns: dict[str, Any] | None = None,
    *,
    timeout_s: float | None = None,
    where: str | None = None,
) -> list[Outcome]:
    """Call ``fn`` once and check what it returns; one :class:`Outcome` per completion.

    Checks: the columns the signature requires are present; the call returns (within
    ``timeout_s``, when given) without raising; each value is ``None``, a :class:`Failure`, or a
    finite real number. A result that breaks the contract — not one value per completion, or a
    value that is neither a number nor ``None`` — raises :class:`RewardContractError`, its one
    line naming ``where`` (default: the function).

    >>> [o.kind for o in call_reward(lambda p, c, **kw: [1.0, None, float("nan")], ["p"] * 3, ["c"] * 3)]
    ['score', 'not_applicable', 'error']
    >>> def short(prompts, completions, **kw):
    ...     return [1.0]
    >>> try:
    ...     call_reward(short, ["p"] * 2, ["c"] * 2)
    ... except RewardContractError as e:
    ...     print(str(e)[:50])
    reward 'short' returned 1 scores for 2 completions
    """
    columns = columns or {}
    n = len(completions)
    missing = [c for c in required_columns(fn) if c not in columns]
    if missing:
        have = ", ".join(sorted(k for k in columns if k not in TRL_HOOKS)) or "none"
        return [Outcome("error", None, f"needs column {missing[0]!r} (columns given: {have})")] * n
    try:
        if timeout_s is None:
            out = fn(list(prompts), list(completions), **columns)
        else:
            out = _call_with_timeout(fn, list(prompts), list(completions), columns, timeout_s)
    except (TimeoutError, subprocess.TimeoutExpired) as e:
        return [Outcome("timeout", None, one_line(f"timed out: {type(e).__name__}: {e}"))] * n
    except Exception as e:  # a reward is untrusted code: its exception is an outcome, not a crash
        trace = "".join(traceback.format_exception(e))
        return [Outcome("error", None, one_line(f"raised {type(e).__name__}: {e}"), trace)] * n
    where = where or f"reward {fn_name(fn)!r}"
    values = out if isinstance(out, (list, tuple)) else None
    if values is None and not isinstance(out, (str, bytes, dict)):
        try:
            values = list(out)  # an array or a generator
        except TypeError:
            pass
    if values is None:
        raise RewardContractError(f"{where} returned a {type(out).__name__}; {CONTRACT}")
    if len(values) != n:
        raise RewardContractError(f"{where} returned {len(values)} scores for {n} completions; {CONTRACT}")
    return [_classify(v, i, where) for i, v in enumerate(values)]


CONTRACT = "a reward function returns a list of one score (a number or None) per completion"


def _classify(v: Any, i: int, where: str) -> Outcome:
    if v is None:
        return Outcome("not_applicable")
    if isinstance(v, Failure):
        return Outcome(v.kind, None, one_line(f"sample {i}: {v.detail}") if v.detail else f"sample {i}")
    if not isinstance(v, (numbers.Real, str, bytes)) and callable(getattr(v, "item", None)):
        try:
            v = v.item()  # a 0-d array or tensor, as TRL accepts
        except (TypeError, ValueError, RuntimeError):
            pass
    if not isinstance(v, numbers.Real):
        raise RewardContractError(f"{where} returned {one_line(repr(v), 60)} for sample {i}; {CONTRACT}")
    if math.isfinite(v):
        return Outcome("score", float(v))
    return Outcome("error", None, f"returned {v!r} for sample {i}, expected a finite number or None")


def _call_with_timeout(
    fn: RewardFn, prompts: list[Any], completions: list[Any], columns: dict[str, Any], timeout_s: float
) -> Any:
    # Python cannot kill a thread: a call that overruns is abandoned (a daemon thread that
    # finishes on its own). Rewards that run programs bound them in the sandbox as well.
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["out"] = fn(prompts, completions, **columns)
        except BaseException as e:  # handed to the caller's thread
            box["exc"] = e

    t = threading.Thread(target=target, name=f"reward-{fn_name(fn)}", daemon=True)
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        raise RewardTimeout(f"no result after {timeout_s:g} s")
    if "exc" in box:
        raise box["exc"]
    return box["out"]


def resolve_outcomes(outcomes: Sequence[Outcome], on_error: str, where: str = "reward") -> list[float | None]:
    """Scores for the hierarchy: failures become 0 (``zero``), ``None`` (``skip``) or raise.

    ``raise`` raises :class:`RewardError` with a one-line message naming ``where``.

    >>> outs = [Outcome("score", 0.5), Outcome("error", None, "raised KeyError: 'x'")]
    >>> resolve_outcomes(outs, "zero"), resolve_outcomes(outs, "skip")
    ([0.5, 0.0], [0.5, None])
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    failed = [o for o in outcomes if o.kind in ("error", "timeout")]
    if failed and on_error == "raise":
        first = failed[0]
        raise RewardError(
            f"{where} failed on {len(failed)} of {len(outcomes)} samples ({first.kind}: {first.detail}); "
            "set on_error to zero or skip to score such samples instead"
        )
    fill = 0.0 if on_error == "zero" else None
    return [o.value if o.kind == "score" else None if o.kind == "not_applicable" else fill for o in outcomes]


def count_outcomes(outcomes: Sequence[Outcome]) -> dict[str, int]:
    """How many samples ended in each outcome (every kind present, zeros included)."""
    counts = dict.fromkeys(OUTCOMES, 0)
    for o in outcomes:
        counts[o.kind] += 1
    return counts


def one_line(text: str, limit: int = 300) -> str:
    """``text`` with its whitespace collapsed, cut at ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def as_text(completion: Any) -> str:
    """A completion as text: a string as is, a conversation (TRL's chat format) as its last message.

    >>> as_text([{"role": "assistant", "content": "42"}])
    '42'
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    return "" if completion is None else str(completion)
