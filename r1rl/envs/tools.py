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
from typing import Any

from transformers.utils import get_json_schema

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
    """The worker: call each ``(name, arguments)`` received and send back ``(status, content)``."""
    devnull = open(os.devnull, "w")  # noqa: SIM115  (the worker's whole life)
    sys.stdout = sys.stderr = devnull
    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        if request is None:
            return
        name, arguments = request
        try:
            text = str(tools[name](**arguments))
        except BaseException as e:  # the tool's failure is the model's to read, whatever it is
            conn.send(("error", f"{type(e).__name__}: {e}"[:max_chars]))
            continue
        conn.send(("flood", text[:max_chars]) if len(text) > max_chars else ("ok", text))


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

    def call(self, name: str, arguments: Mapping[str, Any] | str) -> ToolOutcome:
        """Call tool ``name`` with ``arguments`` (a mapping, or its JSON text as OpenAI sends it)."""
        start = time.perf_counter()
        status, content, args = self._checked(name, arguments)
        if status == "ok":
            status, content = self._run(name, args)
        self.counts[status] += 1
        if status not in ("ok", "flood"):
            content = f"error: {content}"
        return ToolOutcome(name, status, content, time.perf_counter() - start)

    def _checked(self, name: str, arguments: Mapping[str, Any] | str) -> tuple[str, str, dict[str, Any]]:
        """``(status, message, arguments as a dict)``: ``ok`` when the tool takes these arguments."""
        if name not in self.tools:
            known = ", ".join(sorted(self.tools))
            return "unknown_tool", f"no tool named {name!r}; the tools are {known}", {}
        try:
            args = json.loads(arguments) if isinstance(arguments, str) else arguments
            inspect.signature(self.tools[name]).bind(**args)
        except (TypeError, ValueError) as e:  # JSON that does not parse, or arguments it does not take
            return "bad_arguments", f"{name}: {e}", {}
        return "ok", "", dict(args)

    def _run(self, name: str, args: dict[str, Any]) -> tuple[str, str]:
        conn = self._connection()
        conn.send((name, args))
        if not conn.poll(self.timeout):
            self._stop(kill=True)
            return "timeout", f"{name} ran past {self.timeout:g} s and was stopped"
        try:
            status, content = conn.recv()
        except (EOFError, OSError):  # the worker died mid-call (os._exit, a signal): start a new one
            self._stop(kill=True)
            return "error", f"{name} ended its process"
        return str(status), str(content)

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
