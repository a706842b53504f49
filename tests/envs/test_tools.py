"""Tools in a worker process: TRL's tool contract, and every way a tool can fail as a typed outcome."""

import json
import os
import time

import pytest
from transformers.utils import get_json_schema

from r1rl.envs.tools import STATUSES, ToolRunner, tool_schema
from r1rl.errors import UserError


def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: the first number
        b: the second number
    """
    return a + b


def divide(a: float, b: float) -> float:
    """Divide a by b.

    Args:
        a: the dividend
        b: the divisor
    """
    return a / b


def nap(seconds: float) -> str:
    """Sleep, then say so.

    Args:
        seconds: how long
    """
    time.sleep(seconds)
    return "awake"


def flood(n: int) -> str:
    """Return n characters, printing them too.

    Args:
        n: how many
    """
    print("x" * n)
    return "y" * n


def vanish(code: int) -> str:
    """End the process.

    Args:
        code: the exit status
    """
    os._exit(code)


TOOLS = [add, divide, nap, flood, vanish]


@pytest.fixture(scope="module")
def tools():
    with ToolRunner(TOOLS, timeout=1.0, max_chars=100) as runner:
        yield runner


def test_a_trl_style_function_gets_transformers_schema():
    assert tool_schema(add) == get_json_schema(add)
    assert tool_schema(add)["function"]["parameters"]["required"] == ["a", "b"]

    def bare(a):
        return a

    with pytest.raises(UserError, match="tool 'bare'"):
        tool_schema(bare)


def test_a_call_returns_the_result_as_text(tools):
    out = tools.call("add", {"a": 2, "b": 40})
    assert (out.status, out.content, out.ok) == ("ok", "42", True)
    assert tools.call("add", json.dumps({"a": 1, "b": 1})).content == "2"  # OpenAI's JSON arguments


def test_a_raising_tool_is_an_error_the_model_reads(tools):
    out = tools.call("divide", {"a": 1, "b": 0})
    assert out.status == "error" and out.content == "error: ZeroDivisionError: division by zero"
    assert tools.call("divide", {"a": 1, "b": 4}).content == "0.25"  # the worker lives on


def test_a_hanging_tool_is_stopped_and_the_next_call_works(tools):
    start = time.perf_counter()
    out = tools.call("nap", {"seconds": 60})
    assert out.status == "timeout" and "stopped" in out.content and time.perf_counter() - start < 10
    assert tools.call("nap", {"seconds": 0}).content == "awake"


def test_a_flood_is_cut_and_prints_nothing(tools, capfd):
    out = tools.call("flood", {"n": 1_000_000})
    assert out.status == "flood" and out.content == "y" * 100
    assert "xxx" not in capfd.readouterr().out


def test_a_dying_worker_is_replaced(tools):
    out = tools.call("vanish", {"code": 3})
    assert out.status == "error" and "ended its process" in out.content
    assert tools.call("add", {"a": 1, "b": 2}).content == "3"


def test_bad_calls_are_typed_outcomes(tools):
    unknown = tools.call("multiply", {"a": 1})
    assert unknown.status == "unknown_tool" and "add, divide" in unknown.content
    for arguments in ({"a": 1}, {"a": 1, "b": 2, "c": 3}, "{not json", "[1, 2]"):
        assert tools.call("add", arguments).status == "bad_arguments", arguments


def test_every_outcome_is_counted():
    with ToolRunner([add, divide], timeout=1.0) as runner:
        runner.call("add", {"a": 1, "b": 2})
        runner.call("divide", {"a": 1, "b": 0})
        runner.call("nope", {})
        assert runner.counts == {"ok": 1, "error": 1, "unknown_tool": 1}
        assert set(runner.counts) <= set(STATUSES)


def test_bad_settings_and_duplicate_names_are_one_line_errors():
    with pytest.raises(UserError, match="timeout"):
        ToolRunner([add], timeout=0)
    with pytest.raises(UserError, match="share a name"):
        ToolRunner([add, add])
