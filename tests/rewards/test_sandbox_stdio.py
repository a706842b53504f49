"""stdin/stdout judging: outputs compared in the parent, per case, three ways; APPS-style columns."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from r1rl.rewards.sandbox import Limits, compare_output, parse_input_output, run_io_tests

TASKS = json.loads((Path(__file__).parent / "fixtures" / "stdio_tasks.json").read_text())
EASY = Limits(timeout_s=30, memory_mb=256)


@pytest.mark.parametrize(
    "actual, expected, match, same",
    [
        ("1 2\n", "1 2\n", "exact", True),
        ("1 2", "1 2\n", "exact", False),
        ("1 2\r\n", "1 2\n", "exact", False),
        ("1  2\n\n", "1 2", "whitespace", True),
        ("1\n2", "1 2", "whitespace", True),  # tokens, as testlib's wcmp compares
        ("1 2 3", "1 2", "whitespace", False),
        ("0.1", "0.10", "whitespace", False),
        ("0.1000001", "0.1", "float", True),
        ("1000000.5", "1000000.0", "float", True),  # relative error 5e-7
        ("1000000.5", "1000000", "float", False),  # an integer is compared exactly
        ("0.11", "0.1", "float", False),
        ("yes 2.0000001", "yes 2.0", "float", True),
        ("yes 2.0000001", "yes 2", "float", False),
        ("2.0 +2 02 2e0", "2 2 2 2", "float", True),  # the same integer, exactly
        ("0.0000005", "0.0", "float", True),  # absolute error 5e-7
        ("-.5e-1 1.E2", "-0.05 100.0", "float", True),
        ("no 2", "yes 2", "float", False),
        ("nan inf", "nan inf", "float", True),  # equal tokens
        ("inf", "1e400", "float", False),  # not a finite decimal: never a finite value
        ("NaN", "0.0", "float", False),
        ("1_000 \u0661\u0662\u0663", "1000 123", "float", False),  # not in the grammar
        ("1e99999999999999999999", "1e99999999999999999998", "float", False),  # past decimal's range
        ("1 2", "1", "float", False),
        # no tolerance spans a difference of 1 or more, however the expected number is spelled
        ("1000000000", "1000000007.0", "float", False),  # 1e-6 of it would be 1000
        ("1000000007 1000000007.0", "1000000007.0 +1000000007.000", "float", True),
        ("12345670", "12345678.5", "float", False),  # relative error 6.9e-7
        ("1000001.0", "1000000.0", "float", False),  # relative error 1e-6, a whole unit
        ("1000000.9", "1000000.0", "float", True),  # relative error 9e-7, within the unit
        ("7 7.000 +7.0 7e0", "7.0 +7 7 7.000", "float", True),
        ("0.333333", "0.3333333333", "float", True),
        ("2.5", "2.50000", "float", True),
        ("1.9999999999 123456789.12345679", "2.000000 123456789.123456789", "float", True),
    ],
)
def test_compare_output(actual, expected, match, same):
    assert compare_output(actual, expected, match) is same


@dataclass(frozen=True)
class IOAttack:
    """A wrong stdin/stdout program whose output today's ``float()`` comparison took for the answer."""

    name: str
    code: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


# Each program is wrong on every case; with float() reading the tokens each scored full marks.
IO_ATTACKS = [
    IOAttack(  # forgets the +7: 1000000000 is within 1e-6 of 1000000007, relatively
        "big_integer_within_the_relative_tolerance",
        "print(int(input()))",
        ("1000000000", "987654321"),
        ("1000000007", "987654328"),
    ),
    IOAttack(  # a count answered with a fraction added: no integer is close to another
        "integer_answer_with_a_fraction",
        "print(len(input().split()) + 1e-7)",
        ("a b c", "x"),
        ("3", "1"),
    ),
    IOAttack(  # 2**n for n past 1023: float() reads both as inf, and inf is close to inf
        "any_huge_number_for_a_huge_answer",
        "input()\nprint('9' * 500)",
        ("1500", "2000"),
        (str(2**1500), str(2**2000)),
    ),
    IOAttack(  # "inf" (or "Infinity") for an answer beyond a double
        "infinity_for_an_answer_beyond_doubles",
        "n = int(input())\nprint('inf' if n % 2 else 'Infinity')",
        ("1", "2"),
        ("1.5e309", "2.5e400"),
    ),
    IOAttack(  # off by one past 2**53, where two integers are one double
        "off_by_one_past_double_precision",
        "print(int(input()) + 1)",
        ("123456789012345678", "9007199254740993"),
        ("123456789012345678", "9007199254740993"),
    ),
    IOAttack(  # 10**21 spelled 1e21 for 10**21 - 1
        "rounded_exponent_for_a_large_integer",
        "print('1e' + str(len(input())))",
        ("x" * 21, "y" * 25),
        ("9" * 21, "9" * 25),
    ),
    # These two also passed once the tokens were read exactly, while a relative tolerance could
    # span whole units of a large expected number not written as an integer.
    IOAttack(  # forgets the +7 of an answer the reference printed as a real
        "big_integer_against_an_answer_written_as_a_real",
        "print(int(input()))",
        ("1000000000", "987654321"),
        ("1000000007.0", "987654328.000"),
    ),
    IOAttack(  # a large real answer whose last integer digit is dropped
        "large_real_answer_off_in_its_integer_digits",
        "print(int(float(input())) // 10 * 10)",
        ("12345678.5", "98765432.25"),
        ("12345678.5", "98765432.25"),
    ),
]


@pytest.mark.parametrize("attack", IO_ATTACKS, ids=[a.name for a in IO_ATTACKS])
def test_number_tokens_that_are_wrong_never_pass(attack):
    rep = run_io_tests(attack.code, list(attack.inputs), list(attack.outputs), match="float", limits=EASY)
    assert all(r.ok for r in rep.results), rep.results
    assert (rep.passed, rep.total) == (0, len(attack.inputs)), [r.stdout for r in rep.results]


def test_long_number_tokens_compare_in_linear_time():
    digits = "1" * 60_000
    start = time.monotonic()
    assert not compare_output(digits + "x " * 2000, digits + "0 " * 2000, "float")
    assert compare_output(f"{digits}.5 " * 4, f"{digits}.5000001 " * 4, "float")
    assert not compare_output(digits, digits[:-1] + "2", "float")
    assert time.monotonic() - start < 1.0


def test_parse_input_output_reads_apps_columns():
    text = json.dumps({"inputs": ["1\n", ["2", "3"]], "outputs": [["4"], "5\n"]})
    assert parse_input_output(text) == (["1\n", "2\n3"], ["4", "5\n"])
    assert parse_input_output({"inputs": [], "outputs": []}) == ([], [])


@pytest.mark.parametrize(
    "value, message",
    [
        ("{not json", "not valid JSON"),
        ([1, 2], "must be an object"),
        ({"inputs": ["1"], "outputs": []}, "same length"),
        ({"inputs": [1], "outputs": ["1"]}, "strings or lists of lines"),
        ({"fn_name": "solve", "inputs": [[1]], "outputs": [[2]]}, "call-based problem"),
    ],
)
def test_parse_input_output_refuses_bad_columns(value, message):
    with pytest.raises(ValueError, match=message):
        parse_input_output(value)


@pytest.mark.parametrize("task", TASKS, ids=[t["name"] for t in TASKS])
def test_fixture_solutions_pass_and_wrong_ones_do_not(task):
    inputs, outputs = parse_input_output(task["input_output"])
    good = run_io_tests(task["solution"], inputs, outputs, match=task["match"], limits=EASY)
    bad = run_io_tests(task["wrong"], inputs, outputs, match=task["match"], limits=EASY)
    assert good.passed == good.total == len(inputs), [r.stdout for r in good.results]
    assert bad.passed < bad.total
    assert all(r.ok for r in good.results)


def test_a_case_that_hangs_stops_the_rest():
    code = "import time\nx = input()\nif x == 'slow':\n    time.sleep(60)\nprint(x)"
    limits = Limits(timeout_s=1.0, cpu_s=1.0)
    rep = run_io_tests(code, ["a", "slow", "b", "c"], ["a", "slow", "b", "c"], limits=limits)
    assert (rep.passed, rep.total) == (1, 4)
    assert [r.status for r in rep.results] == ["ok", "timeout"]  # b and c never ran: they fail


def test_expected_output_never_enters_the_sandbox():
    question, answer = secrets.token_hex(8), secrets.token_hex(8)
    # The program reads its input, then looks for the answer in its own memory: it finds the
    # question (so the search works), never the answer, which only the parent has.
    code = (
        "import re\n"
        "input()\n"
        "found = set()\n"
        "with open('/proc/self/maps') as maps, open('/proc/self/mem', 'rb', 0) as mem:\n"
        "    for line in maps:\n"
        "        lo, hi = (int(x, 16) for x in line.split()[0].split('-'))\n"
        "        try:\n"
        "            mem.seek(lo)\n"
        "            chunk = mem.read(min(hi - lo, 1 << 26))\n"
        "            found |= set(re.findall(rb'(?:ANSWER|QUESTION)-[0-9a-f]{16}', chunk))\n"
        "        except (OSError, OverflowError, ValueError):\n"
        "            pass\n"
        "print(*sorted(t.decode() for t in found))\n"
    )
    rep = run_io_tests(code, [f"QUESTION-{question}"], [f"ANSWER-{answer}"], limits=EASY)
    assert rep.results[0].ok and rep.results[0].stdout.split() == [f"QUESTION-{question}"]
    assert rep.passed == 0


def test_truncated_output_does_not_pass():
    limits = Limits(timeout_s=30, max_output_bytes=1000)
    rep = run_io_tests("print('x' * 5000)", [""], ["x" * 1000], match="exact", limits=limits)
    assert rep.results[0].truncated and rep.passed == 0


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"inputs": ["1"], "outputs": ["1", "2"]}, ValueError, "1 inputs but 2 outputs"),
        ({"inputs": [], "outputs": []}, ValueError, "need >= 1 of each"),
        ({"inputs": "1", "outputs": ["1"]}, TypeError, "inputs must be a sequence of str"),
        ({"inputs": [1], "outputs": ["1"]}, TypeError, "inputs[0] must be str"),
        ({"inputs": ["1"], "outputs": ["1"], "match": "tokens"}, ValueError, "match must be one of"),
        ({"inputs": ["1"], "outputs": ["1"], "tol": -1}, ValueError, "tol must be a non-negative"),
    ],
)
def test_run_io_tests_bad_input(kwargs, error, message):
    with pytest.raises(error) as exc:
        run_io_tests("print(1)", **kwargs)
    assert message in str(exc.value) and "\n" not in str(exc.value)
