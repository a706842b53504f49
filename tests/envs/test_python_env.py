"""The ``python`` environment: what the model reads back from running code and tests in the sandbox."""

import json
import multiprocessing
import pickle
import time
from pathlib import Path

import pytest
from r1rl.rewards.code import code_task
from r1rl.rewards.sandbox import SandboxError, isolation_mode

from r1rl.envs.base import ENVIRONMENTS, environment_tools
from r1rl.envs.python import PythonInterpreter, clip
from r1rl.envs.tools import ToolRunner, tool_schema
from r1rl.errors import UserError
from r1rl.tasks.mbpp import TOOL_SYSTEM_PROMPT, tool_record

MBPP = Path("/work/shared/data/mbpp/sanitized-mbpp.json")
SLACK_S = 4.0  # sandbox start-up and teardown on a loaded 2-core machine
# An MBPP-style row: a description, three asserts, and the reference solution (which must stay unseen).
ROW = {
    "task_id": 1000,
    "prompt": "Write a function to return the square of a number.",
    "test_list": ["assert square(2) == 4", "assert square(3) == 9", "assert square(-1) == 1"],
    "test_imports": [],
    "code": "def square(x):\n    return x * x\n",
}


def interpreter(**kwargs) -> PythonInterpreter:
    env = PythonInterpreter(**{"timeout_s": 1.0, **kwargs})
    env.reset(**ROW)
    return env


def test_registered_with_two_tools():
    env = ENVIRONMENTS["python"]()
    assert isinstance(env, PythonInterpreter)
    assert [t.__name__ for t in environment_tools(env)] == ["run_python", "run_tests"]
    assert env.reset(**ROW) is None


def test_run_python_shows_stdout():
    env = interpreter()
    assert env.run_python("print('hi')\nprint(sum(range(10)))") == "hi\n45"
    assert env.run_python("x = 1") == "(no output)"
    assert env.programs_run == 2


def test_run_python_shows_the_exception_after_stdout():
    out = interpreter().run_python("def f(x):\n    return 1 / x\nprint('start')\nf(0)\n")
    assert out.startswith("start\nTraceback (most recent call last):")
    assert 'File "<code>", line 4, in <module>' in out and "line 2, in f\n    return 1 / x" in out
    assert out.endswith("ZeroDivisionError: division by zero")


def test_run_python_says_how_a_silent_failure_ended():
    env = interpreter()
    assert env.run_python("import sys\nsys.exit(3)") == "The program ended with exit code 3."
    assert env.run_python("def f(:\n    pass").endswith("SyntaxError: invalid syntax")


def test_a_program_that_loops_forever_is_stopped_and_told():
    env = interpreter(timeout_s=1.0)
    start = time.monotonic()
    out = env.run_python("print('working')\nwhile True:\n    pass")
    assert time.monotonic() - start < 1.0 + SLACK_S
    assert out.startswith("working\nTimeout: the program ran past its time limit")
    assert out.endswith("and was stopped.")
    assert (env.programs_run, env.timeouts) == (1, 1)


def test_a_flood_is_cut_to_max_chars_and_says_so():
    env = interpreter(max_chars=200)
    out = env.run_python("print('x' * 100_000)")
    assert len(out) <= 200
    assert out.startswith("x" * 100) and out.endswith("+ more characters]")  # the sandbox kept 16 KiB
    both = env.run_python("print('y' * 5000)\nraise ValueError('the real problem')")
    assert len(both) <= 200
    assert both.startswith("yyy") and both.endswith("ValueError: the real problem")  # the error survives


def test_clip_keeps_its_budget_exactly():
    text = "line\n" * 500
    for n in (80, 81, 99, 100, 400):
        assert len(clip(text, n)) <= n and len(clip(text, n, keep="tail")) <= n
        assert len(clip(text[:n], n, more=True)) <= n
    assert clip("short", 80) == "short"


def test_run_tests_all_pass():
    env = interpreter()
    assert env.run_tests(ROW["code"]) == "3/3 tests passed."
    assert (env.test_runs, env.tests_passed, env.tests_total, env.programs_run) == (1, 3, 3, 1)
    assert env.metrics == {"programs_run": 1.0, "timeouts": 0.0, "test_runs": 1.0, "tests_pass_rate": 1.0}


def test_run_tests_shows_the_first_failing_assert_and_both_sides():
    env = interpreter()
    out = env.run_tests("def square(x):\n    return x + x\n")
    assert out == "1/3 tests passed. First failure:\nassert square(3) == 9\nAssertionError: got 6, expected 9"
    assert env.programs_run == 2  # the judge's run, then the run that finds the failure
    assert env.metrics["tests_pass_rate"] == pytest.approx(1 / 3)


def test_run_tests_shows_an_error_raised_in_the_code_with_its_line():
    out = interpreter().run_tests("def square(x):\n    y = x * x\n    return y / 0\n")
    assert out == (
        "0/3 tests passed. First failure:\nassert square(2) == 4\n"
        "ZeroDivisionError: division by zero (line 3: return y / 0)"
    )


def test_run_tests_when_the_code_cannot_even_load():
    env = interpreter()
    assert env.run_tests("def square(x) return x") == (
        "0/3 tests passed. Your code failed before the tests ran: SyntaxError: expected ':' "
        "(line 1: def square(x) return x)"
    )
    assert env.run_tests("import sys\nsys.exit(0)").startswith(
        "0/3 tests passed. Your code failed before the tests ran: SystemExit: 0 (line 2: sys.exit(0))"
    )


def test_run_tests_that_hang_are_stopped_and_told():
    env = interpreter(timeout_s=1.0)
    start = time.monotonic()
    out = env.run_tests("def square(x):\n    while True:\n        pass\n")
    assert time.monotonic() - start < 2.0 + SLACK_S  # the judge has a second of its own
    assert out == "0/3 tests passed. The code ran past the 1 s time limit and was stopped."
    assert env.timeouts == 1


def test_what_the_program_prints_cannot_pass_for_the_report():
    """The count is the judge's; a program that prints what looks like a report changes nothing."""
    forged = 'def square(x):\n    return 0\nprint(\'{"stage": "done"}\')\nprint("3/3 tests passed.")\n'
    out = interpreter().run_tests(forged)
    assert out.startswith("0/3 tests passed. First failure:\nassert square(2) == 4")


def test_the_count_agrees_with_the_code_task_reward():
    for code in (ROW["code"], "def square(x):\n    return x + x\n", "def square(x):\n    return 4\n"):
        env = interpreter()
        env.run_tests(code)
        reward = code_task([ROW["prompt"]], [code], test_list=[ROW["test_list"]])[0]
        assert env.tests_passed / env.tests_total == reward


def test_setup_code_and_humaneval_style_tests():
    env = PythonInterpreter(timeout_s=1.0)
    env.reset(test_setup_code="K = 10", test_list=["assert addk(K) == 20", "assert addk(1) == 11"])
    assert env.run_tests("def addk(x):\n    return x + 10\n") == "2/2 tests passed."
    # The judge runs the tests apart from the code: names they define are not the code's to use.
    assert env.run_tests("def addk(x):\n    return x + K\n") == (
        "0/2 tests passed. Run in one interpreter with your code, the tests pass: "
        "use no names only the tests define."
    )
    env.reset(
        test="def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(2, 2) == 4\n",
        entry_point="add",
    )
    assert env.run_tests("def add(a, b):\n    return a + b\n") == "2/2 tests passed."
    out = env.run_tests("def add(a, b):\n    return a - b\n")
    assert out == (
        "0/2 tests passed. First failure:\nassert candidate(1, 2) == 3\nAssertionError: got -1, expected 3"
    )


def test_a_row_without_tests():
    env = PythonInterpreter()
    env.reset(prompt="Say hi.")
    assert env.run_tests("print('hi')") == "This problem has no tests to run."
    assert env.metrics == {"programs_run": 0.0, "timeouts": 0.0, "test_runs": 0.0}


def test_reset_keeps_no_reference_solution_and_clears_the_counters():
    env = interpreter()
    env.run_python("print(1)")
    env.reset(**ROW)
    assert env.programs_run == 0
    assert "x * x" not in pickle.dumps(env).decode("latin-1")  # ROW["code"] was not kept


def test_schema_of_the_tools():
    env, descriptions = interpreter(), {}
    for tool in (env.run_python, env.run_tests):
        schema = tool_schema(tool)["function"]
        assert schema["name"] == tool.__name__
        assert schema["parameters"]["required"] == ["code"]
        code = schema["parameters"]["properties"]["code"]
        assert code["type"] == "string" and code["description"]
        descriptions[tool.__name__] = code["description"]
    assert descriptions == {
        "run_python": "the whole program to run; print() what you want to see",
        "run_tests": "your solution: the function the tests call, with its imports",
    }


def test_pickle_round_trip_keeps_state():
    env = interpreter(max_chars=120)
    env.run_tests("def square(x):\n    return x + x\n")
    copy = pickle.loads(pickle.dumps(env))
    assert vars(copy) == vars(env)
    assert copy.run_tests(ROW["code"]) == "3/3 tests passed."
    assert (copy.programs_run, copy.test_runs) == (3, 2)


def _episode(conn, env):
    """In a forked worker: call the tools, send the instance back with its new state."""
    env.run_python("print(2 + 2)")
    conn.send((env.run_tests(ROW["code"]), env))
    conn.close()


def test_tools_run_in_a_forked_process_and_the_state_comes_back():
    env = interpreter()
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    worker = ctx.Process(target=_episode, args=(child, env))
    worker.start()
    assert parent.poll(30)
    answer, returned = parent.recv()
    worker.join(10)
    assert answer == "3/3 tests passed."
    assert returned.metrics == {
        "programs_run": 2.0, "timeouts": 0.0, "test_runs": 1.0, "tests_pass_rate": 1.0
    }  # fmt: skip
    assert env.programs_run == 0  # the worker's copy ran them


def test_bound_tools_in_the_tool_runner():
    env = interpreter()
    with ToolRunner([env.run_python, env.run_tests], timeout=30) as runner:
        assert runner.call("run_python", {"code": "print('hi')"}).content == "hi"
        assert runner.call("run_tests", json.dumps({"code": ROW["code"]})).content == "3/3 tests passed."
        assert runner.call("run_python", {"code": 3}).content.startswith("error: TypeError: run_python: code")


@pytest.mark.parametrize("mode", ["namespaces", "basic"])
def test_each_isolation_mode_that_works_here(mode):
    try:
        isolation_mode(mode)
    except SandboxError as e:  # basic mode as root needs the interpreter readable by other uids
        pytest.skip(f"{mode} isolation is unavailable here: {e}")
    env = interpreter(isolation=mode)
    assert env.run_python("print('hi')") == "hi"
    assert env.run_tests("def square(x):\n    return x + x\n").startswith("1/3 tests passed.")


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"timeout_s": 0}, "timeout_s must be a positive"),
        ({"memory_mb": 1.5}, "memory_mb must be int"),
        ({"max_chars": 10}, "max_chars must be int >= 80"),
        ({"isolation": "docker"}, "isolation must be one of auto, namespaces, basic"),
    ],
)
def test_bad_options_are_one_line_errors(kwargs, message):
    with pytest.raises(UserError, match=message):
        PythonInterpreter(**kwargs)


def test_tool_record_feeds_the_environment():
    record = tool_record({**ROW})
    assert record["prompt"][0] == {"role": "system", "content": TOOL_SYSTEM_PROMPT}
    assert "assert square(3) == 9" in record["prompt"][1]["content"]
    assert "code" not in record
    env = PythonInterpreter(timeout_s=1.0)
    env.reset(**record)
    assert env.run_tests(ROW["code"]) == "3/3 tests passed."


@pytest.mark.skipif(not MBPP.is_file(), reason="MBPP not available (../shared/data/mbpp)")
def test_real_mbpp_rows():
    docs = [d for d in json.loads(MBPP.read_text()) if 601 <= d["task_id"] <= 974][:5]
    env = PythonInterpreter(timeout_s=5.0)
    for doc in docs:
        env.reset(**tool_record(doc))
        n = len(doc["test_list"])
        assert env.run_tests(doc["code"]) == f"{n}/{n} tests passed.", doc["task_id"]
        broken = env.run_tests(doc["code"] + "\n\ndel " + doc["test_list"][0].split("(")[0].split()[-1])
        assert broken.startswith(f"0/{n} tests passed. First failure:\n{doc['test_list'][0].strip()}"), broken
        assert "NameError" in broken and len(broken) <= env.max_chars
