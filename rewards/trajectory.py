"""Reading a multi-turn completion: the tool calls it made, what the tools answered, its last turn.

In a multi-turn run a reward function's completion is the list of messages the episode added after
the prompt: assistant turns (those that called tools carry ``tool_calls``), the tool messages that
answered them (``{"role": "tool", "name", "content", "status"}``, ``status`` one of
:data:`r1rl.envs.tools.STATUSES` or ``malformed``) and the final assistant turn. A single-turn
completion is text or a one-message list; these helpers tell the two apart, so a reward suite can
keep its single-turn scores exactly and judge trajectories by what the tools returned.

>>> episode = [
...     {"role": "assistant", "content": "", "tool_calls": [
...         {"type": "function", "function": {"name": "calculator", "arguments": {"expression": "6*7"}}}]},
...     {"role": "tool", "name": "calculator", "content": "42", "status": "ok"},
...     {"role": "assistant", "content": "<answer>42</answer>"},
... ]
>>> [m["content"] for m in tool_messages(episode)], tool_messages("<answer>42</answer>")
(['42'], None)
>>> final_turn(episode), [tool_ok(m) for m in tool_messages(episode)]
('<answer>42</answer>', [True])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ERROR_PREFIX = "error:"  # how a failed call's content starts (r1rl.envs.tools.ToolRunner.call)


def tool_messages(completion: Any) -> list[Mapping[str, Any]] | None:
    """The tool messages of a trajectory, or ``None`` for a completion that used no tool.

    A completion used tools when it holds a ``tool`` message or an assistant turn with ``tool_calls``
    (a call the episode never answered); text and plain conversations are single-turn (``None``).
    """
    if not isinstance(completion, (list, tuple)):
        return None
    messages = [m for m in completion if isinstance(m, Mapping)]
    tools = [m for m in messages if m.get("role") == "tool"]
    called = any(m.get("tool_calls") for m in messages if m.get("role") == "assistant")
    return tools if tools or called else None


def tool_ok(message: Mapping[str, Any]) -> bool:
    """Whether a tool message reports a call that ran and returned in full (status ``ok``).

    A message without a ``status`` (TRL's, or a hand-written one) is ok unless its content is an error.

    >>> tool_ok({"role": "tool", "content": "error: no tool named 'calc'", "status": "unknown_tool"})
    False
    >>> tool_ok({"role": "tool", "content": "42"}), tool_ok({"role": "tool", "content": "error: x"})
    (True, False)
    """
    status = message.get("status")
    if status is None:
        return not str(message.get("content", "")).startswith(ERROR_PREFIX)
    return status == "ok"


def final_turn(completion: Any) -> str | None:
    """The text of a trajectory's final assistant turn; ``None`` when it ends otherwise.

    An episode that ends on a tool message, or on a turn whose call was never answered, has no final
    answer: the model ran out of turns or tokens.
    """
    if not isinstance(completion, (list, tuple)) or not completion or not isinstance(completion[-1], Mapping):
        return None
    last = completion[-1]
    if last.get("role") != "assistant" or last.get("tool_calls"):
        return None
    return str(last.get("content") or "")
