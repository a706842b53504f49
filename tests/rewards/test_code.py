"""MBPP/HumanEval-style code rewards: extraction, static checks, unit tests in the sandbox."""

import json
from pathlib import Path

import pytest
from r1rl.rewards import code as code_rewards
from r1rl.rewards.code import (
    code_logic,
    code_syntax,
    code_task,
    code_task_reward,
    extract_code,
    program_source,
    static_errors,
    unit_tests,
)
from r1rl.rewards.protocol import Failure, call_reward
from r1rl.rewards.sandbox import Limits

DATA = Path("/work/shared/data")
STUB = 'def add(a: int, b: int) -> int:\n    """Add two numbers."""\n'
HUMANEVAL_TEST = "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(-1, 1) == 0\n"


@pytest.mark.parametrize(
    "text,code",
    [
        ("```python\ndef f():\n    return 1\n```", "def f():\n    return 1\n"),
        ("Sure!\n```py\nx = 1\n```\nand\n```python\ny = 2\n```", "x = 1\n"),  # the first block
        ("```\nz = 3\n```", "z = 3\n"),
        ("```text\nnot code\n```", "not code\n"),  # only a non-Python fence: use it
        ("```python\ndef f():\n    return 1", "def f():\n    return 1"),  # truncated: no closing fence
        ("<think>plan: loop</think>def f(): pass", "def f(): pass"),
        ("    return a + b\n", "    return a + b\n"),  # a HumanEval body continuation
        ("   \n", ""),
    ],
)
def test_extract_code(text, code):
    assert extract_code(text) == code


def test_program_source_continues_a_code_stub_only():
    assert program_source(STUB, "    return a + b\n") == STUB + "    return a + b\n"
    assert program_source(STUB, "```python\ndef add(a, b):\n    return a + b\n```").startswith(STUB)
    assert (
        program_source("Write a function add.", "def add(a, b): return a + b")
        == "def add(a, b): return a + b"
    )
    assert program_source("hello", "x = 1") == "x = 1"  # a one-word prompt is valid Python but no stub


def test_syntax_parses_and_compiles():
    completions = [
        "def f(x):\n    return x\n",
        "def f(x)\n    return x",
        "return 1",
        "nonlocal x",
        "",
        "```python\n```",
    ]
    assert code_syntax(["Write f."] * 6, completions) == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]


def test_static_errors_use_pyflakes_definite_errors_only():
    assert static_errors("import os\nx = 1\n") == []  # an unused import is style, not an error
    assert static_errors("def f():\n    return y\n") == ["undefined name 'y'"]
    assert static_errors("def f(a, a):\n    pass\n") != []


def test_logic_checks_names_and_the_entry_points_arity():
    mbpp = [["assert add(1, 2) == 3", "assert add(0, 0) == 0"]] * 5
    completions = [
        "def add(a, b):\n    return a + b\n",
        "def add(a, b):\n    return a + c\n",  # undefined name
        "def add(a):\n    return a\n",  # wrong arity for the tests' calls
        "def plus(a, b):\n    return a + b\n",  # entry point missing
        "def add(a, b, *, c):\n    return a + b\n",  # required keyword the tests never pass
    ]
    assert code_logic(["Write add."] * 5, completions, test_list=mbpp) == [1.0, 0.5, 0.5, 0.5, 0.5]


def test_logic_with_entry_point_and_signature_columns():
    cols = {"entry_point": ["add"] * 3, "signature": ["add(a, b)"] * 3}
    completions = ["def add(x, y=0): return x + y", "def add(x): return x", "add = lambda a, b: a + b"]
    assert code_logic(["Write add."] * 3, completions, **cols) == [1.0, 0.5, 1.0]
    # HumanEval: the prompt's stub gives the signature; a redefinition must keep it callable
    he = {"test": [HUMANEVAL_TEST] * 2, "entry_point": ["add"] * 2}
    assert code_logic([STUB] * 2, ["    return a + b\n", "def add(a):\n    return a\n"], **he) == [1.0, 0.5]


def test_unit_tests_from_columns():
    assert (
        unit_tests({"test_list": ["assert f() == 1"], "test_setup_code": "x = 1"})
        == "x = 1\nassert f() == 1\n"
    )
    assert unit_tests({"test": HUMANEVAL_TEST, "entry_point": "add"}).endswith("check(add)\n")
    assert unit_tests({"test": "assert add(1, 2) == 3"}) == "assert add(1, 2) == 3"
    assert unit_tests({}) is None


def test_task_runs_unit_tests_in_the_sandbox():
    mbpp = {"test_list": [["assert add(1, 2) == 3", "assert add(2, 2) == 4", "assert add(0, 5) == 5"]] * 4}
    completions = [
        "```python\ndef add(a, b):\n    return a + b\n```",
        "def add(a, b):\n    return 3\n",  # passes one of three
        "def add(a, b):\n    raise ValueError\n",  # crashes: every assert fails
        "def add(a, b) return a + b",  # does not compile: not run at all
    ]
    assert code_task(["Write add."] * 4, completions, **mbpp) == pytest.approx([1.0, 1 / 3, 0.0, 0.0])
    he = {"test": [HUMANEVAL_TEST], "entry_point": ["add"]}
    assert code_task([STUB], ["    return a + b\n"], **he) == [1.0]


def test_task_not_applicable_without_tests_and_error_on_broken_tests():
    out = code_task(["p"] * 3, ["x = 1"] * 3, test_list=[[], ["assert (("], ["print(1)"]])
    assert out[0] is None and out[2] is None  # no asserts: nothing to score
    assert isinstance(out[1], Failure) and out[1].kind == "error"


def test_task_infinite_loop_scores_zero_within_the_limit():
    fast = code_task_reward(limits=Limits(timeout_s=1.0, cpu_s=1.0))
    out = fast(["p"], ["def f():\n    while True:\n        pass\n"], test_list=[["assert f() == 1"]])
    assert out == [0.0]


def test_sandbox_failure_is_a_typed_error_not_a_zero(monkeypatch):
    from r1rl.rewards.sandbox import SandboxError

    def broken(*args, **kwargs):
        raise SandboxError("cannot create namespaces")

    monkeypatch.setattr(code_rewards, "run_tests", broken)
    outcomes = call_reward(code_task, ["p"], ["def f(): return 1"], {"test_list": [["assert f() == 1"]]})
    assert outcomes[0].kind == "error" and "SandboxError: cannot create namespaces" in outcomes[0].detail


@pytest.mark.skipif(not (DATA / "mbpp").is_dir(), reason="MBPP/HumanEval not available")
def test_reference_solutions_pass_every_static_check():
    mbpp = json.loads((DATA / "mbpp" / "sanitized-mbpp.json").read_text())
    he = [json.loads(line) for line in (DATA / "humaneval" / "HumanEval.jsonl").read_text().splitlines()]
    cols = {"test_list": [r["test_list"] for r in mbpp], "test_imports": [r["test_imports"] for r in mbpp]}
    prompts, sols = [r["prompt"] for r in mbpp], [r["code"] for r in mbpp]
    assert code_syntax(prompts, sols, **cols) == [1.0] * len(mbpp)
    assert code_logic(prompts, sols, **cols) == [1.0] * len(mbpp)
    cols = {"test": [r["test"] for r in he], "entry_point": [r["entry_point"] for r in he]}
    prompts, sols = [r["prompt"] for r in he], [r["canonical_solution"] for r in he]
    assert code_logic(prompts, sols, **cols) == [1.0] * len(he)
    # and two HumanEval references pass their unit tests in the sandbox
    picks = [0, 1]
    assert code_task(
        [prompts[i] for i in picks],
        [sols[i] for i in picks],
        **{k: [v[i] for i in picks] for k, v in cols.items()},
    ) == [1.0, 1.0]


STDIO_TASKS = json.loads((Path(__file__).parent / "fixtures" / "stdio_tasks.json").read_text())


@pytest.mark.parametrize("match", ["whitespace", "float"])
def test_task_scores_input_output_cases(match):
    """APPS-style ``input_output`` columns (JSON text): the fraction of cases whose stdout matches."""
    tasks = [t for t in STDIO_TASKS if t["match"] in ("whitespace", match)]
    reward = code_task_reward(match=match)
    prompts = [t["prompt"] for t in tasks] * 2
    completions = [f"```python\n{t['solution']}```" for t in tasks] + [t["wrong"] for t in tasks]
    scores = reward(prompts, completions, input_output=[t["input_output"] for t in tasks] * 2)
    assert scores[: len(tasks)] == [1.0] * len(tasks)
    assert all(s < 1.0 for s in scores[len(tasks) :])
    assert scores[len(tasks)] == pytest.approx(1 / 3)  # sum_of_list's wrong answer is right once


def test_task_input_output_errors_and_precedence():
    io = json.dumps({"inputs": ["1"], "outputs": ["1"]})
    call_based = json.dumps({"fn_name": "f", "inputs": [[1]], "outputs": [[1]]})
    out = code_task(["p"] * 3, ["print(input())"] * 3, input_output=[io, call_based, "{"])
    assert out[0] == 1.0
    assert all(isinstance(o, Failure) and o.kind == "error" for o in out[1:])
    assert "call-based" in out[1].detail and "not valid JSON" in out[2].detail
    # unit tests, when a sample has them, are what it is scored by
    both = code_task(
        ["p"], ["def f(): return 2\nprint(3)"], test_list=[["assert f() == 2"]], input_output=[io]
    )
    assert both == [1.0]
    with pytest.raises(ValueError, match="match must be one of"):
        code_task_reward(match="tokens")


HELPER_PROMPT = (
    "def double(x: int) -> int:\n"
    "    return 2 * x\n\n\n"
    "def halve(x: int) -> int:\n"
    '    """Undo double: halve(double(x)) == x."""\n'
)
HELPER_TEST = "def check(candidate):\n    for x in (1, 5, 12):\n        assert candidate(double(x)) == x\n"


def test_prompt_helpers_run_in_the_judge():
    """HumanEval 32/38/50 test with the prompt's own helpers: a completion that redefines them
    (here, to remember what the tests pass) changes nothing the tests see."""
    assert (
        code_rewards.prompt_helpers(HELPER_PROMPT, "halve") == "def double(x: int) -> int:\n    return 2 * x"
    )
    assert code_rewards.prompt_helpers("def halve(x):\n    pass\n", "halve") == ""
    cols = {"test": [HELPER_TEST] * 3, "entry_point": ["halve"] * 3}
    honest = "    return x // 2\n"
    memo = "    return SEEN.get(x, 0)\n\nSEEN = {}\n\ndef double(x):\n    SEEN[2 * x] = x\n    return 2 * x\n"
    wrong = "    return x\n"
    assert code_task([HELPER_PROMPT] * 3, [honest, memo, wrong], **cols) == [1.0, 0.0, 0.0]


FIND_ZERO_PROMPT = (  # HumanEval 32, shortened
    "import math\n\n\n"
    "def poly(xs: list, x: float):\n"
    "    return sum([coeff * math.pow(x, i) for i, coeff in enumerate(xs)])\n\n\n"
    "def find_zero(xs: list):\n"
    '    """A zero of the polynomial with coefficients xs (an even number of them)."""\n'
)
FIND_ZERO_TEST = (  # HumanEval 32's: the call is a statement of its own in the loop, before the assert
    "def check(candidate):\n"
    "    import random\n"
    "    rng = random.Random(42)\n"
    "    import copy\n"
    "    for _ in range(100):\n"
    "        ncoeff = 2 * rng.randint(1, 4)\n"
    "        coeffs = []\n"
    "        for _ in range(ncoeff):\n"
    "            coeff = rng.randint(-10, 10)\n"
    "            if coeff == 0:\n"
    "                coeff = 1\n"
    "            coeffs.append(coeff)\n"
    "        solution = candidate(copy.deepcopy(coeffs))\n"
    "        assert math.fabs(poly(coeffs, solution)) < 1e-4\n"
)
BISECT = (
    "    begin, end = -1.0, 1.0\n"
    "    while poly(xs, begin) * poly(xs, end) > 0:\n"
    "        begin *= 2.0\n"
    "        end *= 2.0\n"
    "    while end - begin > 1e-10:\n"
    "        center = (begin + end) / 2.0\n"
    "        if poly(xs, center) * poly(xs, begin) > 0:\n"
    "            begin = center\n"
    "        else:\n"
    "            end = center\n"
    "    return begin\n"
)


def test_an_assert_in_the_tests_loop_passes_only_if_every_round_ran():
    """HumanEval 32: a completion right on its first call that raises on the next ones scored 1.0
    while the first round's pass stood; a round cut short before its assert fails it."""
    first_only = (
        "    if CALLS:\n        raise ValueError('no zero')\n    CALLS.append(1)\n"
        + BISECT
        + "\n\nCALLS = []\n"
    )
    cols = {"test": [FIND_ZERO_TEST] * 2, "entry_point": ["find_zero"] * 2}
    assert code_task([FIND_ZERO_PROMPT] * 2, [BISECT, first_only], **cols) == [1.0, 0.0]


def test_the_prompts_imports_are_the_tests_own():
    """A name that a stub prompt imports and the tests use (HumanEval's ``import math``) is bound in
    the judge, so a completion that rebinds it changes nothing the tests see."""
    prompt = 'from math import floor\n\n\ndef shift(x: float) -> float:\n    """x plus one."""\n'
    cols = {"test": ["def check(candidate):\n    assert floor(candidate(2.5)) == 3\n"] * 2}
    honest, rebinds = "    return x + 1\n", "    return x\n\n\ndef floor(x):\n    return 3\n"
    assert code_task([prompt] * 2, [honest, rebinds], entry_point=["shift"] * 2, **cols) == [1.0, 0.0]
