"""What a task is (the :class:`Task` protocol) and what its records are; helpers over records.

Task types register in :mod:`r1rl.tasks` (one file each); this module is what the loops, the
rewards and the eval harness need to know of any task, so none of them imports a task.

A task is any object with these members (:class:`Task`, a ``Protocol``: compose, don't subclass)::

    task.name               "arithmetic", "gsm8k", "my_prompts", ...
    task.records("train")   the rows trained on; task.records("test"): the held-out rows
    task.rewards            the default reward tiers (a list of TierConfig mappings, lowest first)
    task.stop               stop sequences that end a completion (cut off before scoring)
    task.notes              facts a model card must state (e.g. "contaminated: trained on test")
    task.corpus(n, seed)    pretraining documents (``formatted_fraction=``: the share in the prompt format)

A *record* is a dict with a ``"prompt"`` — text, or a list of chat messages
(``{"role", "content"}``) — an optional ``"completion"`` (the SFT target, text or messages) and
any other columns. Every other column reaches every reward function as a keyword argument, one
value per completion, exactly as TRL passes dataset columns (:func:`reward_columns`). The task's
top tier is also its scorer: held-out accuracy is that tier's pass rate, so "the reward" and "the
benchmark" cannot disagree (nanochat's ``Task.reward`` = ``Task.evaluate``). Stages, trainers and
the eval stage only use these members; none of them knows which task it runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal, Protocol, TypeGuard, runtime_checkable

from r1rl.errors import UserError

Split = Literal["train", "test"]
Record = dict[str, Any]
NOT_COLUMNS = ("prompt", "completion")  # what a record holds besides its columns


@runtime_checkable
class Task(Protocol):
    # Read-only members: a frozen dataclass or a property satisfies them as well as an attribute.
    @property
    def name(self) -> str: ...

    @property
    def rewards(self) -> list[dict[str, Any]]: ...

    @property
    def stop(self) -> tuple[str, ...]: ...

    @property
    def notes(self) -> tuple[str, ...]: ...

    def records(self, split: Split) -> Sequence[Record]: ...

    def corpus(self, n: int, seed: int, formatted_fraction: float = 1.0) -> list[str]:
        """``n`` pretraining documents; ``formatted_fraction`` of them as prompt + completion (a task with
        one document format ignores it)."""
        ...


def is_conversation(value: Any) -> TypeGuard[Sequence[dict[str, Any]]]:
    """A list of chat messages (dicts with ``role`` and ``content``).

    >>> is_conversation([{"role": "user", "content": "hi"}]), is_conversation("hi")
    (True, False)
    """
    return (
        isinstance(value, (list, tuple))
        and len(value) > 0
        and all(isinstance(m, dict) and "role" in m and "content" in m for m in value)
    )


def check_prompt(value: Any, where: str) -> None:
    """A prompt is text or a list of chat messages; anything else is a one-line :class:`UserError`."""
    if isinstance(value, str) or is_conversation(value):
        return
    got = type(value).__name__ if not isinstance(value, list) else "a list that is not chat messages"
    raise UserError(
        f"{where}: the prompt is {got}; expected text or a list of {{'role', 'content'}} messages"
    )


def columns_of(records: Sequence[Record]) -> list[str]:
    """The reward columns of ``records``: every key of the first record but the prompt and completion."""
    if not len(records):
        return []
    return [k for k in records[0] if k not in NOT_COLUMNS]


def reward_columns(batch: Sequence[Record], repeat: int = 1) -> dict[str, list[Any]]:
    """TRL's reward keyword arguments: each column as a list with one value per completion.

    ``repeat`` completions per record (samples per prompt), in record order.

    >>> reward_columns([{"prompt": "1+1=", "answer": 2}, {"prompt": "2+2=", "answer": 4}], repeat=2)
    {'answer': [2, 2, 4, 4]}
    """
    keys = columns_of(batch)
    return {k: [r[k] for r in batch for _ in range(repeat)] for k in keys}


def prompts_of(batch: Sequence[Record], repeat: int = 1) -> list[Any]:
    return [r["prompt"] for r in batch for _ in range(repeat)]


def text_of_prompt(prompt: Any) -> str:
    """A prompt as one string, for tables and logs: text as is, a conversation as its last message."""
    if isinstance(prompt, str):
        return prompt
    return str(prompt[-1]["content"]) if is_conversation(prompt) else str(prompt)


def first(records: Sequence[Record], n: int | None) -> Sequence[Record]:
    """The first ``n`` records (all with ``None``); works on lists and ``datasets.Dataset``."""
    if n is None or n >= len(records):
        return records
    if hasattr(records, "select"):
        selected: Sequence[Record] = records.select(range(n))  # a datasets.Dataset keeps its cache files
        return selected
    return records[:n]


def rows(records: Sequence[Record], indices: Iterable[int]) -> list[Record]:
    return [dict(records[int(i)]) for i in indices]
