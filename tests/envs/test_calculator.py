"""The calculator tool: exact integer arithmetic, every bad expression a short ValueError."""

import pytest

from r1rl.envs.base import TOOLS
from r1rl.envs.calculator import calculator
from r1rl.envs.tools import ToolRunner, tool_schema


@pytest.mark.parametrize(
    "expression, value",
    [
        ("4821*37+9124", "187501"),
        ("(4821+9124)*7", "97615"),
        ("12-4821", "-4809"),
        ("-3--4", "1"),
        ("+5", "5"),
        (" 2 * ( 3 + 4 ) ", "14"),
        ("7/2", "3.5"),
        ("6/3", "2"),  # an even division is an integer, not "2.0"
        ("7/2*2", "7"),  # exact: rationals, not floats
        ("1/3", "0.3333333333333333"),
        ("7//2", "3"),
        ("-7//2", "-4"),
        ("-7%3", "2"),
        ("99999999999999999999*99999999999999999999", str(99999999999999999999**2)),
    ],
)
def test_values(expression, value):
    assert calculator(expression) == value


@pytest.mark.parametrize(
    "expression, message",
    [
        ("1/0", "division by zero"),
        ("5%(3-3)", "division by zero"),
        ("7//0", "division by zero"),
        ("2**10", "unsupported"),
        ("2.5+1", "unsupported"),
        ("True+1", "unsupported"),
        ("x+1", "unsupported"),
        ("__import__('os').getcwd()", "unsupported"),
        ("(1).__class__", "unsupported"),
        ("[1][0]", "unsupported"),
        ("1<2", "unsupported"),
        ("1+", "not an arithmetic expression"),
        ("", "not an arithmetic expression"),
        ("1;2", "not an arithmetic expression"),
        ("1" + "+1" * 300, "at most 500"),
    ],
)
def test_bad_expressions_are_short_value_errors(expression, message):
    with pytest.raises(ValueError, match=message) as caught:
        calculator(expression)
    assert len(str(caught.value)) < 100


def test_registered_with_a_schema_from_its_docstring():
    assert TOOLS["calculator"] is calculator
    fn = tool_schema(calculator)["function"]
    assert fn["name"] == "calculator"
    assert fn["parameters"]["required"] == ["expression"]
    assert fn["parameters"]["properties"]["expression"]["type"] == "string"
    assert "(4821+9124)*7" in fn["parameters"]["properties"]["expression"]["description"]


def test_in_the_tool_runner_a_bad_expression_is_an_error_the_model_reads():
    with ToolRunner([calculator]) as tools:
        assert tools.call("calculator", {"expression": "4821*37+9124"}).content == "187501"
        out = tools.call("calculator", {"expression": "1/0"})
    assert (out.status, out.content) == ("error", "error: ValueError: division by zero")
