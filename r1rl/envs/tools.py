"""Tools a model calls in multi-turn episodes: typed Python functions, run in a worker process.

A tool is a plain function with type hints and a Google-style docstring (``Args:``), the contract of
TRL's ``GRPOTrainer(tools=[...])`` and of transformers' chat templates: :func:`tool_schema` is the
JSON schema ``apply_chat_template(tools=...)`` renders, made by transformers' own
``get_json_schema``. So a function written for TRL works here unchanged, and the other way round.

Tools run in one worker process per :class:`ToolRunner`, never in the trainer's: a thread cannot be
stopped, a process can. Every call ends in a :class:`ToolOutcome` whose ``status`` is one of
:data:`STATUSES` and whose ``content`` is what the model is shown — the result, or an error message
it can read and react to. A tool that raises (``error``), runs past ``timeout`` seconds
(``timeout``: the worker is killed and replaced), returns more than ``max_chars`` characters
(``flood``: cut to ``max_chars``), is not known (``unknown_tool``) or gets arguments its signature
does not take (``bad_arguments``) is counted in :attr:`ToolRunner.counts`, never a crash. What a tool
prints goes nowhere. Code the model writes is run by the sandbox (:mod:`r1rl.rewards.sandbox`), not
as a tool here: these workers have no resource limits beyond the time limit.
"""

from __future__ import annotations

import inspect
import json
import multiprocessing
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any, cast

from transformers.utils import get_json_schema

from r1rl.envs.base import NOT_TOOLS
from r1rl.errors import UserError

STATUSES = ("ok", "error", "timeout", "flood", "unknown_tool", "bad_arguments")
Tool = Callable[..., Any]


@dataclass(frozen=True)
class ToolOutcome:
    """One tool call's end: ``status`` (one of :data:`STATUSES`) and what the model is shown."""

    name: str
    status: str
    content: str
    seconds: float
    owner: Any = None  # the environment whose method ran, with the state the call left it in

    @property
    def message(self) -> dict[str, Any]:
        """The outcome as the tool message the model is shown (``status`` is r1rl's; templates ignore it)."""
        return {"role": "tool", "name": self.name, "content": self.content, "status": self.status}

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def tool_schema(tool: Tool) -> dict[str, Any]:
    """The chat template's schema of ``tool`` (name, description, typed parameters), as transformers
    makes it; a function without type hints or a docstring for each argument is a one-line error."""
    try:
        return dict(get_json_schema(tool))
    except Exception as e:  # transformers raises its own TypeError and DocstringParsingException
        name = getattr(tool, "__name__", repr(tool))
        raise UserError(
            f"tool {name!r}: {e} (a tool needs type hints and a docstring with an Args: line per argument)"
        ) from None


def _serve(conn: Connection, tools: dict[str, Tool], max_chars: int) -> None:
    """The worker: call each ``(name, arguments, owner)`` received and send back ``(status, content,
    owner)``; ``owner`` is an environment whose method ``name`` is called, returned with its new state."""
    devnull = open(os.devnull, "w")  # noqa: SIM115  (the worker's whole life)
    sys.stdout = sys.stderr = devnull
    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        if request is None:
            return
        name, arguments, owner = request
        try:
            fn = getattr(owner, name) if owner is not None else tools[name]
            text = str(fn(**arguments))
        except BaseException as e:  # the tool's failure is the model's to read, whatever it is
            conn.send(("error", f"{type(e).__name__}: {e}"[:max_chars], owner))
            continue
        conn.send(("flood", text[:max_chars], owner) if len(text) > max_chars else ("ok", text, owner))


class ToolRunner:
    """Run tool calls in a worker process with a time limit and an output cap.

    >>> def add(a: int, b: int) -> int:
    ...     '''Add two integers.
    ...
    ...     Args:
    ...         a: the first number
    ...         b: the second number
    ...     '''
    ...     return a + b
    >>> with ToolRunner([add]) as tools:
    ...     tools.call("add", {"a": 2, "b": 3}).content, tools.call("add", '{"a": 1}').status
    ('5', 'bad_arguments')
    """

    def __init__(self, tools: Sequence[Tool], timeout: float = 5.0, max_chars: int = 2000) -> None:
        if timeout <= 0 or max_chars < 1:
            raise UserError(f"tools: timeout must be > 0 and max_chars >= 1 (got {timeout}, {max_chars})")
        self.schemas = [tool_schema(tool) for tool in tools]
        self.tools = {schema["function"]["name"]: tool for schema, tool in zip(self.schemas, tools)}
        if len(self.tools) < len(tools):
            raise UserError(
                f"tools: two tools share a name ({', '.join(s['function']['name'] for s in self.schemas)})"
            )
        self.timeout, self.max_chars = timeout, max_chars
        self.counts: Counter[str] = Counter()
        self._worker: Any = None  # a multiprocessing Process, started on the first call
        self._conn: Connection | None = None

    def call(self, name: str, arguments: Mapping[str, Any] | str, owner: object = None) -> ToolOutcome:
        """Call tool ``name`` with ``arguments`` (a mapping, or its JSON text as OpenAI sends it).

        With ``owner`` (an environment, :mod:`r1rl.envs.base`), its method ``name`` is called when it
        has one as a tool; the outcome's ``owner`` is the instance as the call left it (the worker's
        copy, sent back), or ``owner`` itself when the call never ran or the worker was lost."""
        start = time.perf_counter()
        fn = self._find(name, owner)
        status, content, args = self._checked(name, fn, arguments)
        after = owner
        if status == "ok":
            status, content, after = self._run(name, args, owner if fn is not self.tools.get(name) else None)
            after = owner if after is None else after
        self.counts[status] += 1
        if status not in ("ok", "flood"):
            content = f"error: {content}"
        return ToolOutcome(name, status, content, time.perf_counter() - start, after)

    def _find(self, name: str, owner: object) -> Tool | None:
        """The tool ``name``: a method of ``owner`` that is one of its tools, else a function given."""
        if owner is not None and not name.startswith("_") and name not in NOT_TOOLS:
            method = getattr(owner, name, None)
            if callable(method):
                return cast(Tool, method)
        return self.tools.get(name)

    def _checked(
        self, name: str, fn: Tool | None, arguments: Mapping[str, Any] | str
    ) -> tuple[str, str, dict[str, Any]]:
        """``(status, message, arguments as a dict)``: ``ok`` when the tool takes these arguments."""
        if fn is None:
            known = ", ".join(sorted(self.tools))
            return "unknown_tool", f"no tool named {name!r}; the tools are {known}", {}
        try:
            args = json.loads(arguments) if isinstance(arguments, str) else arguments
            inspect.signature(fn).bind(**args)
        except (TypeError, ValueError) as e:  # JSON that does not parse, or arguments it does not take
            return "bad_arguments", f"{name}: {e}", {}
        return "ok", "", dict(args)

    def _run(self, name: str, args: dict[str, Any], owner: object) -> tuple[str, str, object]:
        conn = self._connection()
        try:
            conn.send((name, args, owner))
        except Exception as e:  # an environment that cannot be pickled: the user's to fix
            raise UserError(
                f"environment {type(owner).__name__}: its tools run in a worker process, so an instance must "
                f"pickle ({type(e).__name__}: {e})"
            ) from None
        if not conn.poll(self.timeout):
            self._stop(kill=True)
            return "timeout", f"{name} ran past {self.timeout:g} s and was stopped", None
        try:
            status, content, after = conn.recv()
        except (EOFError, OSError):  # the worker died mid-call (os._exit, a signal): start a new one
            self._stop(kill=True)
            return "error", f"{name} ended its process", None
        return str(status), str(content), after

    def _connection(self) -> Connection:
        if self._worker is None or not self._worker.is_alive():
            self._stop(kill=True)
            parent, child = multiprocessing.get_context("fork").Pipe()
            self._worker = multiprocessing.get_context("fork").Process(
                target=_serve, args=(child, self.tools, self.max_chars), daemon=True
            )
            self._worker.start()
            child.close()
            self._conn = parent
        assert self._conn is not None
        return self._conn

    def _stop(self, kill: bool = False) -> None:
        if self._worker is not None:
            if not kill and self._conn is not None:
                try:
                    self._conn.send(None)
                except OSError:
                    pass
                self._worker.join(1.0)
            if self._worker.is_alive():
                self._worker.kill()
            self._worker.join(1.0)
        if self._conn is not None:
            self._conn.close()
        self._worker, self._conn = None, None

    def close(self) -> None:
        self._stop()

    def __enter__(self) -> ToolRunner:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
