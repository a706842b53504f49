"""What answers the model between its turns: tools, environment objects, and how a turn is read.

The contract is TRL's (``GRPOTrainer(tools=..., environment_factory=...)``), so what is written for
TRL runs here unchanged:

- a **tool** is a plain function with type hints and a docstring (:mod:`r1rl.envs.tools`);
- an **environment** is a class whose instances live for one episode: ``reset(**row)`` is called
  with the dataset row's columns and may return text appended to the prompt's last user message;
  its public methods are the episode's tools (bound to its state); ``get_reward()``, if defined,
  is read when the episode ends. For what tools cannot express, :meth:`Environment.step` receives
  each assistant turn that called no tool and answers as Gymnasium's and skyrl-gym's ``step`` do:
  messages to show the model, whether the episode is done, and an optional per-turn reward.

A model calls a tool by writing ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` in its
turn — the markup of Qwen2.5/3, Hermes and r1rl's own chat template. :func:`parse_turn` reads a turn
into its text and its calls; a call whose JSON does not parse, or that names no tool, is
``malformed`` and is answered with an error message the model can read.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from r1rl.registry import Registry

TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)
NOT_TOOLS = frozenset({"reset", "step", "get_reward", "close"})  # an environment's methods that are not tools


@dataclass(frozen=True)
class ToolCall:
    """One call the model wrote: the tool's name and its arguments."""

    name: str
    arguments: dict[str, Any]

    def as_message_call(self) -> dict[str, Any]:
        """The call as a chat message's ``tool_calls`` entry (transformers' and OpenAI's shape)."""
        return {"type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(frozen=True)
class Turn:
    """An assistant turn read: its text without the calls, the calls, and the calls that did not parse."""

    content: str
    calls: list[ToolCall] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)

    @property
    def message(self) -> dict[str, Any]:
        """The turn as an assistant message (with ``tool_calls`` when it made any)."""
        out: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.calls:
            out["tool_calls"] = [c.as_message_call() for c in self.calls]
        return out


def parse_turn(text: str) -> Turn:
    """Read the tool calls out of one assistant turn.

    >>> t = parse_turn('<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>')
    >>> t.calls, t.content
    ([ToolCall(name='add', arguments={'a': 1, 'b': 2})], '')
    >>> parse_turn("<tool_call>{oops</tool_call>").malformed
    ['{oops']
    """
    calls: list[ToolCall] = []
    malformed: list[str] = []
    for raw in TOOL_CALL.findall(text):
        try:
            obj = json.loads(raw)
        except ValueError:
            malformed.append(raw)
            continue
        args = obj.get("arguments", {}) if isinstance(obj, dict) else None
        if isinstance(args, str):  # OpenAI sends arguments as JSON text
            try:
                args = json.loads(args)
            except ValueError:
                args = None
        if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not isinstance(args, dict):
            malformed.append(raw)
            continue
        calls.append(ToolCall(obj["name"], args))
    content = TOOL_CALL.sub("", text)
    if "<tool_call>" in content:  # an opened call never closed: the turn ran out or the model erred
        head, _, tail = content.partition("<tool_call>")
        content, malformed = head, [*malformed, tail]
    return Turn(content.strip(), calls, malformed)


@dataclass(frozen=True)
class Step:
    """An environment's answer to an assistant turn that called no tool.

    ``messages``: what the model is shown next (``{"role": "user" | "tool", "content": ...}``; empty
    for nothing); ``done``: the episode ends here; ``reward``: this turn's reward, if any (summed over
    the episode and given to the reward functions as the ``env_reward`` column).
    """

    messages: list[dict[str, Any]] = field(default_factory=list)
    done: bool = True
    reward: float | None = None


class Environment:
    """Base class of an environment: subclass it, or write any class with the same methods (TRL's).

    Every method is optional. One instance serves one episode; it must be picklable, because its
    tools run in a worker process that returns the instance with its new state after each call.
    """

    def reset(self, **row: Any) -> str | None:
        """Start an episode on a dataset row (its columns as keywords); text to add to the prompt, or None."""
        return None

    def step(self, message: Mapping[str, Any]) -> Step:
        """Answer an assistant turn that called no tool. The default ends the episode."""
        return Step()


def environment_tools(env: object) -> list[Callable[..., Any]]:
    """An environment's tools: its public methods but ``reset``, ``step``, ``get_reward`` and ``close``."""
    return [
        getattr(env, name)
        for name, member in inspect.getmembers(type(env), callable)
        if not name.startswith("_") and name not in NOT_TOOLS and not isinstance(member, type)
    ]


ENVIRONMENTS: Registry[Callable[[], object]] = Registry("environment")  # name -> factory (a class)
TOOLS: Registry[Callable[..., Any]] = Registry("tool")  # name -> tool function
