"""Sandbox tests: ordinary programs, unit-test scoring, bad input, and an adversarial corpus.

Every hostile program in the corpus must come back with a non-ok status (or, scored as unit
tests, with no assert passed and the judge through the tests) within its limits plus some slack,
and leave the host as it was: this test process alive, no sandbox process left, no file written
outside, secrets unread. The corpus ends with programs that try to forge verdicts.
"""

from __future__ import annotations

import json
import keyword
import os
import secrets
import shutil
import socket
import subprocess
import sys
import sysconfig
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from r1rl.rewards.sandbox import (
    Limits,
    Sandbox,
    SandboxError,
    isolation_mode,
    network_isolation,
    run_program,
    run_tests,
)

REPO = Path(__file__).resolve().parents[2]
# Hostile programs get small limits; ordinary ones a generous wall clock (the machine may be busy).
TIGHT = Limits(
    timeout_s=1.5, cpu_s=1, memory_mb=256, max_processes=16, max_file_mb=8, max_output_bytes=16_384, tmp_mb=32
)
EASY = Limits(timeout_s=30, memory_mb=256)
SLACK_S = 3.0  # start-up and teardown on a loaded 2-core machine
MODE = isolation_mode()
# Without root and without namespaces the program keeps our uid and sees our PIDs: attacks that
# would reach this process cannot be run safely there.
SHARED_UID = MODE == "basic" and os.geteuid() != 0


def sandbox_pids() -> list[int]:
    """Host PIDs of processes started by this test process's sandboxes (tagged command line)."""
    tag = f"r1rl-sandbox:{os.getpid()}".encode()
    out = []
    for p in os.listdir("/proc"):
        try:
            if p.isdigit() and tag in Path(f"/proc/{p}/cmdline").read_bytes():
                out.append(int(p))
        except OSError:
            pass
    return out


def pids_with(marker: str) -> list[int]:
    found = []
    for p in os.listdir("/proc"):
        try:
            if p.isdigit() and marker.encode() in Path(f"/proc/{p}/cmdline").read_bytes():
                found.append(int(p))
        except OSError:
            pass
    return found


# --- ordinary programs ------------------------------------------------------------------------


def test_ok_program_with_stdin_and_stdout():
    r = run_program(
        "import sys\nprint(sum(int(x) for x in sys.stdin.read().split()))", stdin="1 2 3\n", limits=EASY
    )
    assert (r.status, r.returncode, r.stdout, r.stderr) == ("ok", 0, "6\n", "")
    assert r.wall_s > 0 and r.cpu_s is not None and not r.truncated


def test_exception_is_error_with_a_readable_traceback():
    r = run_program("def f(x):\n    return 1 / x\n\nf(0)\n", limits=EASY)
    assert (r.status, r.returncode) == ("error", 1)
    assert 'File "<solution>", line 2, in f' in r.stderr and r.stderr.rstrip().endswith(
        "ZeroDivisionError: division by zero"
    )


@pytest.mark.parametrize(
    "code, status, returncode",
    [
        ("import sys\nsys.exit(3)", "error", 3),
        ("exit(0)", "ok", 0),  # exit() and quit() exist although site.py is skipped
        ("quit(2)", "error", 2),
        ("raise SystemExit('bye')", "error", 1),
        ("if __name__ == '__main__':\n    print('main')", "ok", 0),
    ],
)
def test_exit_codes(code, status, returncode):
    r = run_program(code, limits=EASY)
    assert (r.status, r.returncode) == (status, returncode)


def test_environment_is_scrubbed_and_workdir_is_private(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_not_for_children")
    code = (
        "import os\n"
        "open('f.txt', 'w').write('kept')\n"
        "print(sorted(os.environ))\n"
        "print(os.environ['HOME'] == os.getcwd() == os.environ['TMPDIR'], open('f.txt').read())\n"
    )
    r = run_program(code, limits=EASY)
    assert r.stdout == "['HOME', 'LANG', 'PATH', 'TMPDIR']\nTrue kept\n", r.stderr


def test_threads_and_child_processes_within_limits_work():
    code = (
        "import subprocess, sys, threading\n"
        "out = []\n"
        "ts = [threading.Thread(target=out.append, args=(i,)) for i in range(4)]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]\n"
        "p = subprocess.run([sys.executable, '-I', '-S', '-c', 'print(5)'], capture_output=True, text=True)\n"
        "print(sorted(out), p.stdout.strip())\n"
    )
    r = run_program(code, limits=EASY)
    assert r.stdout == "[0, 1, 2, 3] 5\n", r.stderr


def test_output_is_capped():
    r = run_program("print('x' * 100_000)", limits=Limits(timeout_s=30, max_output_bytes=1000))
    assert r.status == "ok" and r.truncated and r.stdout == "x" * 1000


def test_cpu_limit_counts_as_timeout():
    r = run_program("while True:\n    pass", limits=Limits(timeout_s=20, cpu_s=1))
    assert r.status == "timeout" and "CPU-time limit" in r.detail and r.returncode in (-24, -9)


@pytest.mark.skipif(MODE == "basic", reason="basic isolation has no mount namespace: it hides no file")
def test_the_program_sees_the_interpreter_and_its_own_directories_only():
    code = """
    import os, sys, sqlite3, ssl, hashlib, decimal, ctypes, lzma, bz2, zlib, json, re, datetime
    print(sorted(os.listdir('/')), sorted(os.listdir('/dev')), sorted(os.listdir('/tmp')), os.getcwd())
    print(os.path.exists(sys.executable), open('/dev/null').read() == '', len(os.urandom(8)))
    print([p for p in sys.path if not os.path.isdir(p)] == [p for p in sys.path if p.endswith('.zip')])
    open('/tmp/sandbox/scratch', 'w').write('x')
    print(sorted(os.listdir('/usr/lib')), os.path.exists('/usr/share'))
    for path in ('/', '/usr/lib', sys.prefix):
        try:
            open(os.path.join(path, 'new'), 'w')
        except OSError as e:
            print(type(e).__name__)
    """
    r = run_program(textwrap.dedent(code), limits=EASY)
    assert r.ok, r
    lines = r.stdout.splitlines()
    top = {"dev", "etc", "proc", "tmp", "usr", Path(sys.base_prefix).resolve().parts[1]}
    top |= {p[1:] for p in ("/lib", "/lib64", "/lib32") if os.path.exists(p)}
    listing = eval(lines[0].split("] [")[0] + "]")
    assert set(listing) == top, lines[0]
    assert "['sandbox'] /tmp/sandbox" in lines[0] and "'null'" in lines[0] and "'sda'" not in lines[0]
    multiarch = sysconfig.get_config_var("MULTIARCH")
    only_multiarch = multiarch and os.path.isdir(f"/usr/lib/{multiarch}")  # not node_modules, jvm ...
    usr_lib = [multiarch] if only_multiarch else sorted(os.listdir("/usr/lib"))
    assert lines[1:] == ["True True 8", "True", f"{usr_lib} False", "OSError", "OSError", "OSError"], lines


def test_isolation_is_reported():
    assert MODE in ("namespaces", "basic")
    assert network_isolation() in ("netns+seccomp", "netns", "seccomp", "python-prelude")


def test_pool_runs_in_parallel_and_keeps_order():
    codes = [f"import time\ntime.sleep(1.5)\nprint({i})" for i in range(4)]
    start = time.monotonic()
    with Sandbox(max_workers=2, limits=EASY) as sb:
        results = sb.run_many(codes, stdins=[""] * 4)
    elapsed = time.monotonic() - start
    assert [r.stdout for r in results] == ["0\n", "1\n", "2\n", "3\n"]
    assert elapsed < 5.5, f"4 x 1.5 s on 2 workers took {elapsed:.1f} s (one after the other: 6 s)"


# --- unit-test scoring ------------------------------------------------------------------------

SOLUTION = "def add(a, b):\n    return a + b if a != 2 else 0\n"


def test_run_tests_counts_each_assert():
    rep = run_tests(
        SOLUTION, "assert add(1, 1) == 2\nassert add(2, 2) == 4\nassert add(3, 3) == 6\n", limits=EASY
    )
    assert (rep.passed, rep.total, rep.fraction) == (2, 3, 2 / 3)
    assert rep.result.status == "ok"


def test_a_crashing_assert_does_not_hide_the_others():
    tests = "assert add(1, 1) == 2\nassert add('a', 1) == 'a1'\nx = undefined_name\nassert add(3, 3) == 6\n"
    assert run_tests(SOLUTION, tests, limits=EASY).passed == 2


def test_humaneval_style_check_function_counts_inner_asserts():
    tests = (
        "def check(candidate):\n"
        "    assert candidate(1, 1) == 2\n"
        "    assert candidate(2, 2) == 4\n"
        "    for i in range(3, 6):\n"
        "        assert candidate(i, 0) == i\n"
        "\n"
        "check(add)\n"
    )
    rep = run_tests(SOLUTION, tests, limits=EASY)
    assert (rep.passed, rep.total) == (2, 3)  # an assert in a loop passes only if every round does


def test_solution_that_fails_to_load_scores_zero():
    rep = run_tests("def add(a, b) return a + b", "assert add(1, 1) == 2\nassert add(0, 0) == 0", limits=EASY)
    assert (rep.passed, rep.total) == (0, 2) and "SyntaxError" in rep.result.stderr


def test_legitimate_comparisons_still_pass():
    solution = (
        "from collections import namedtuple, OrderedDict, Counter\n"
        "P = namedtuple('P', 'x y')\n"
        "class V:\n"
        "    def __init__(self, v): self.v = v\n"
        "    def __eq__(self, o): return isinstance(o, V) and o.v == self.v\n"
        "def f():\n"
        "    return P(1, 2), OrderedDict(a=1), 0.1 + 0.2, [1, (2, {3})], V(4), Counter('aab')\n"
    )
    tests = (
        "p, od, fl, nested, v, c = f()\n"
        "assert p == (1, 2)\n"
        "assert od == {'a': 1}\n"
        "assert abs(fl - 0.3) < 1e-9\n"
        "assert nested == [1, (2, {3})]\n"
        "assert v == V(4)\n"
        "assert c == Counter({'a': 2, 'b': 1})\n"
        "assert 2 in p and 5 not in p\n"
        "assert not (p != (1, 2))\n"
        "assert isinstance(v, V)\n"
        "assert 1 < 2 < 3\n"
    )
    rep = run_tests(solution, tests, limits=EASY)
    assert (rep.passed, rep.total) == (10, 10), rep.result.stderr


def test_run_tests_keeps_credit_earned_before_a_hang():
    # the test code itself hangs, in the judge: the wall clock ends it, the verdicts so far count
    tests = "assert add(1, 1) == 2\nassert add(3, 3) == 6\nwhile True:\n    pass\nassert add(4, 4) == 8\n"
    rep = run_tests(SOLUTION, tests, limits=TIGHT)
    assert rep.result.status == "timeout" and (rep.passed, rep.total) == (2, 3) and not rep.judged


def test_an_assert_in_a_loop_counts_only_when_its_statement_completes():
    # An assert passes when every round of its loop passed, the program's errors that the tests
    # expect included; a round cut short before its assert, by the program or by the tests' own
    # error (as in one interpreter, where it would end the test), fails it. Other statements keep
    # their verdicts.
    solution = (
        "def double(x):\n    if x < 0:\n        raise ValueError(x)\n    return 2 * x if x < 3 else 0\n"
    )
    honest = (
        "for x in [1, 2]:\n    r = double(x)\n    assert r == 2 * x\n"
        "for x in [-1, 1]:\n    try:\n        r = double(x)\n    except ValueError:\n        r = 2 * x\n"
        "    assert r == 2 * x\n"
        "def check(candidate):\n    for x in [1, 2]:\n        r = candidate(x)\n        assert r == 2 * x\n"
        "check(double)\n"
    )
    rep = run_tests(solution, honest, limits=EASY)
    assert (rep.passed, rep.total) == (3, 3), rep.result
    tests = (
        "assert double(1) == 2\n"
        "for x in [1, 2, -1]:\n    r = double(x)\n    assert r == 2 * x\n"  # the program raises on -1
        "for x in [1, 2]:\n    assert double(x) == 2 * x\n    1 / (x - 2)\n"  # the tests raise on 2
        "for x in [1, 2, 3]:\n    assert double(x) == 2 * x\n"  # fails on 3
        "assert double(2) == 4\n"
    )
    rep = run_tests(solution, tests, limits=EASY)
    assert (rep.passed, rep.total, rep.judged) == (2, 5, True), rep.result


def test_a_pass_in_a_loop_the_judge_never_got_through_does_not_count():
    # The tests' own work on the program's answer (the sum of a range of 10**18) runs the judge past
    # its wall clock in the loop's second round: the first round's pass does not count, whether the
    # assert is written in the statement under way or in a function it calls; the asserts of the
    # statements done before keep their verdicts.
    solution = "def upto(x):\n    return [1] if x == 1 else range(10**18)\n"
    loop = "for x in [1, 2, 3]:\n    assert sum(upto(x)) == x * (x + 1) // 2\n"
    in_check = "def check(f):\n" + textwrap.indent(loop.replace("upto", "f"), "    ") + "check(upto)\n"
    for tests, passed in ((loop, 0), (in_check, 0), ("assert upto(1) == [1]\n" + loop, 1)):
        rep = run_tests(solution, tests, limits=TIGHT)
        assert (rep.passed, rep.judged, rep.result.status) == (passed, False, "timeout"), (tests, rep)


def test_values_travel_as_documented():
    solution = (
        "from collections import Counter, OrderedDict, defaultdict, deque, namedtuple\n"
        "P = namedtuple('P', 'x y')\n"
        "VALUES = {'counter': Counter('aab'), 'od': OrderedDict(b=1, a=2), 'dq': deque([1, 2], 2),\n"
        "          'dd': defaultdict(list, a=[1]), 'set': {1, 2}, 'fs': frozenset({3}),\n"
        "          'nan': float('nan'), 'p': P(1, 2), 'c': 1 + 2j, 'r': range(3), 'b': b'x', 'big': 2**100}\n"
        "def f(k):\n"
        "    return VALUES[k]\n"
    )
    tests = (
        "from collections import Counter, OrderedDict, defaultdict, deque\n"
        "import math\n"
        "assert type(f('counter')) is Counter and f('counter') == {'a': 2, 'b': 1}\n"
        "assert list(f('od')) == ['b', 'a'] and type(f('od')) is OrderedDict\n"
        "assert f('dq') == deque([1, 2]) and f('dq').maxlen == 2\n"
        "d = f('dd')\n"
        "assert type(d) is defaultdict and d['new'] == [] and d == {'a': [1], 'new': []}\n"
        "assert f('set') == {1, 2} and type(f('fs')) is frozenset\n"
        "assert math.isnan(f('nan')) and f('nan') != f('nan')\n"
        "assert f('p') == (1, 2) and f('p').y == 2\n"
        "assert f('c') == 1 + 2j and f('r') == range(3) and f('b') == b'x' and f('big') == 2**100\n"
    )
    rep = run_tests(solution, tests, limits=EASY)
    assert (rep.passed, rep.total) == (8, 8), rep.result


def test_program_objects_are_handles_in_the_judge():
    solution = (
        "class Stack:\n"
        "    def __init__(self):\n"
        "        self.items = []\n"
        "    def push(self, x):\n"
        "        self.items.append(x)\n"
        "        return self\n"
        "    def __len__(self):\n"
        "        return len(self.items)\n"
        "    def __eq__(self, other):\n"
        "        return isinstance(other, Stack) and other.items == self.items\n"
        "def evens(n):\n"
        "    return (i for i in range(n) if i % 2 == 0)\n"
    )
    tests = (
        "s = Stack().push(1).push(2)\n"
        "assert len(s) == 2 and s.items == [1, 2]\n"
        "assert isinstance(s, Stack) and not isinstance(5, Stack)\n"
        "assert s == Stack().push(1).push(2) and s != Stack()\n"
        "assert list(evens(7)) == [0, 2, 4, 6]\n"
        "s.items = [9]\n"
        "assert s.items == [9] and str(s).startswith('<')\n"
        "assert s == [9]\n"  # a handle compares only with a handle of its own class
        "assert s\n"  # its truth would be the program's word
    )
    rep = run_tests(solution, tests, limits=EASY)
    assert (rep.passed, rep.total) == (5, 7), rep.result


def test_program_exceptions_reach_the_tests_as_builtin_exceptions():
    solution = (
        "class Invalid(ValueError):\n"
        "    pass\n"
        "def parse(x):\n"
        "    if x < 0:\n"
        "        raise Invalid('negative')\n"
        "    return {1: 'one'}[x]\n"
    )
    tests = (
        "def raises(kind, *args):\n"
        "    try:\n"
        "        parse(*args)\n"
        "    except kind as e:\n"
        "        return type(e) is kind and str(e) in ('negative', '0')\n"
        "    return False\n"
        "assert raises(ValueError, -1)\n"  # the program's Invalid arrives as the builtin ValueError
        "assert raises(KeyError, 0)\n"
        "assert parse(1) == 'one'\n"
        "assert raises(TypeError, 1)\n"
    )
    rep = run_tests(solution, tests, limits=EASY)
    assert (rep.passed, rep.total) == (3, 4), rep.result


def test_asserts_not_decided_fail_when_the_program_dies_midway():
    solution = "import os\ndef inc(x):\n    if x == 3:\n        os._exit(0)\n    return x + 1\n"
    tests = (
        "assert inc(1) == 2\nassert inc(2) == 3\nassert inc(3) == 4\nassert inc(4) == 5\nassert 1 + 1 == 2\n"
    )
    rep = run_tests(solution, tests, limits=EASY)
    assert (rep.passed, rep.total, rep.judged) == (2, 5, True)
    assert rep.result.status == "error" and "exited before the tests were done" in rep.result.detail


def test_asserts_not_decided_fail_when_the_program_runs_out_of_time():
    solution = "import time\ndef inc(x):\n    if x == 2:\n        time.sleep(60)\n    return x + 1\n"
    tests = "assert inc(1) == 2\nassert inc(2) == 3\nassert inc(3) == 4\n"
    start = time.monotonic()
    rep = run_tests(solution, tests, limits=TIGHT)
    assert (rep.passed, rep.total, rep.judged, rep.result.status) == (1, 3, True, "timeout")
    assert time.monotonic() - start < TIGHT.timeout_s + SLACK_S


def test_a_result_that_is_not_data_fails_its_assert_only():
    solution = "def f(x):\n    return [len, 'x' * (2 << 20), x][x]\n"
    tests = "assert f(0) is not None\nassert len(f(1)) > 0\nassert f(2) == 2\n"
    rep = run_tests(solution, tests, limits=EASY)
    assert (rep.passed, rep.total) == (1, 3)
    assert "refused a function (len) is not data" in rep.result.detail and "larger than" in rep.result.detail


def test_the_tests_builtins_are_the_judges_own_except_when_called_on_literals():
    # A function named like a builtin is the program's where an assert compares its call on
    # literals with a literal (MBPP 126: sum(10, 15) == 6), and the builtin everywhere else.
    solution = "def sum(a, b):\n    return a - b\ndef abs(x):\n    return 0\ndef inc(x):\n    return x\n"
    tests = "assert sum(10, 4) == 6\nassert sum(range(3)) == 3\nassert abs(inc(1) - 2) < 0.5\n"
    rep = run_tests(solution, tests, limits=EASY)
    assert (rep.passed, rep.total) == (2, 3)


def test_an_entry_point_named_like_a_builtin_is_the_programs():
    # As in one interpreter, where the program's def shadows the builtin for the tests run after it:
    # when the tests name no other function of the program (or hand the name to check()), their
    # calls of it are the program's, while the builtins they call as helpers stay the judge's.
    cases = [
        ("def pow(a, b):\n    return a ** b", "assert pow(2, 3) == 2**3\nassert pow(3, 2) == 9"),
        ("def max(xs):\n    return xs[0] if len(xs) < 2 else xs[0] if xs[0] > max(xs[1:]) else max(xs[1:])",
         "nums = [1, 5, 2]\nassert max(nums) == 5\nassert max([7]) == 7"),
        ("def sum(a, b):\n    return a // b", "assert sum(12, 4) == 3\nassert sum(7, 7) == 1"),
        ("def sum(a, b):\n    return a // b",  # an exception class the tests catch is no candidate
         "try:\n    sum(1, 0)\nexcept ZeroDivisionError:\n    ok = True\nassert ok\nassert sum(7, 7) == 1"),
        ("def round(x):\n    return int(x + 0.5) if x >= 0 else -int(-x + 0.5)",
         "def check(candidate):\n    assert candidate(2.6) == 3\n    assert abs(candidate(-1.7) + 2) < 1e-9\n"
         "check(round)"),
    ]  # fmt: skip
    for solution, tests in cases:
        rep = run_tests(solution, tests, limits=EASY)
        assert (rep.passed, rep.total) == (2, 2), (solution, rep)
    # the helpers stay the judge's: a program's abs does not answer the tests' abs(...)
    rep = run_tests("def abs(x):\n    return 99\n" + cases[-1][0], cases[-1][1], limits=EASY)
    assert (rep.passed, rep.total) == (2, 2), rep


def test_names_the_tests_bind_are_theirs_and_the_others_the_programs():
    # A module the tests import wins over a function of the program with its name; a module whose
    # attribute the tests read is the judge's import even unimported; every other name the tests
    # use is the program's, called in its process, whatever the program says its object is.
    solution = (
        "import collections\n"
        "def math(x):\n    return 'mine'\n"
        "def statistics(xs):\n    return sum(xs) / len(xs)\n"
        "def heapq(x):\n    return 'mine'\n"
        "def gcd(a, b):\n    return -1\n"
        "gcd.__module__ = 'math'\n"
        "Counter = collections.Counter\n"
    )
    tests = (
        "import math\n"
        "assert math.sqrt(16) == 4\n"  # the tests' import
        "assert statistics([1, 2, 3]) == 2\n"  # the program's function, named like a module
        "assert heapq.nsmallest(1, [3, 1]) == [1]\n"  # read as a module: the judge's heapq
        "assert gcd(4, 6) == -1\n"  # the program's, though it says it is math.gcd
        "assert Counter('aab') == {'a': 2, 'b': 1} and type(Counter('a')).__name__ == 'Counter'\n"
        "assert type(Counter).__name__ == 'Remote'\n"  # the program's class, as a handle
    )
    rep = run_tests(solution, tests, limits=EASY)
    assert (rep.passed, rep.total) == (6, 6), rep.result
    # names that judge_code binds (a stub prompt's imports) are never the program's either
    rep = run_tests(solution, "assert gcd(4, 6) == 2\n", limits=EASY, judge_code="from math import gcd\n")
    assert rep.passed == 1


STDLIB_NAMES = sorted(n for n in sys.stdlib_module_names if n.isidentifier() and not keyword.iskeyword(n))


@pytest.fixture(scope="module")
def stdlib_named_failures() -> set[str]:
    """The standard-library names under which an honest function loses an assert: one judged run
    for all of them (MBPP-style calls and a HumanEval-style ``check``), halved where one fails."""

    def failing(names: list[str]) -> set[str]:
        solution = "".join(f"def {n}(x):\n    return x + 1\n" for n in names)
        tests = "".join(f"assert {n}(1) == 2\n" for n in names)
        tests += "def check(candidate):\n    assert candidate(2) == 3\n"
        tests += "".join(f"check({n})\n" for n in names)
        rep = run_tests(solution, tests, limits=EASY)
        if rep.passed == rep.total:
            return set()
        if len(names) == 1:
            return set(names)
        return failing(names[: len(names) // 2]) | failing(names[len(names) // 2 :])

    return failing(STDLIB_NAMES)


@pytest.mark.parametrize("name", STDLIB_NAMES)
def test_a_function_named_like_a_standard_library_module_is_the_programs(name, stdlib_named_failures):
    assert name not in stdlib_named_failures


def test_whatever_an_assert_raises_fails_it_and_is_counted():
    # The program's data or objects can make the tests' own work raise anything in the judge: a
    # MemoryError, a RecursionError, SystemExit from a helper. Each fails its assert, the judge
    # goes on, and the report says what was raised; SIGINT (which a program that shares the
    # judge's uid could send) is ignored.
    solution = (
        "class Node:\n    def __init__(self):\n        self.next = self\n"
        "def loop():\n    return Node()\n"
        "def many():\n    return range(10**12)\n"
        "def inc(x):\n    return x + 1\n"
    )
    tests = (
        "import os, signal\n"
        "def length(node):\n    return 1 + length(node.next)\n"
        "def stop(x):\n    raise SystemExit(x)\n"
        "def interrupt():\n    os.kill(os.getpid(), signal.SIGINT)\n"
        "assert length(loop()) > 0\n"
        "assert len(list(many())) > 0\n"
        "assert stop(inc(1))\n"
        "assert interrupt() is None and inc(1) == 2\n"
        "assert inc(2) == 3\n"
    )
    rep = run_tests(solution, tests, limits=EASY)
    assert (rep.passed, rep.total, rep.judged) == (2, 5, True), rep.result
    assert "raised in the tests: MemoryError x1, RecursionError x1, SystemExit x1" in rep.result.detail


def test_judge_code_runs_in_the_judge():
    helper = "def double(x):\n    return 2 * x\n"
    tests = "assert half(double(3)) == 3\nassert half(8) == 4\n"
    rep = run_tests("def half(x):\n    return x // 2\n", tests, limits=EASY, judge_code=helper)
    assert (rep.passed, rep.total) == (2, 2)
    # the program's own double is not the one the tests call
    rep = run_tests(
        "def double(x):\n    return 0\ndef half(x):\n    return 3\n", tests, limits=EASY, judge_code=helper
    )
    assert rep.passed == 1


def test_the_program_cannot_see_the_judge_and_the_judge_is_not_dumpable():
    solution = (
        "import ctypes, os\n"
        "def pids():\n"
        "    return sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n"
        "def uid():\n"
        "    return os.getuid()\n"
        "def dumpable():\n"
        "    return ctypes.CDLL(None).prctl(3, 0, 0, 0, 0)\n"
        "def peek(path):\n"
        "    return os.listdir(path)\n"
    )
    tests = (
        "import ctypes, os\n"
        "assert len(pids()) <= 2\n"  # in its PID namespace: init2 and itself
        "assert uid() != os.getuid()\n"
        "assert ctypes.CDLL(None).prctl(3, 0, 0, 0, 0) == 0 and dumpable() == 1\n"  # PR_GET_DUMPABLE
        "open('note', 'w').close()\n"
        "assert 'note' in os.listdir() and peek(os.getcwd()) == []\n"  # the judge's directory
    )
    rep = run_tests(solution, tests, limits=EASY)
    namespaces, root = MODE == "namespaces", os.geteuid() == 0
    assert rep.passed == 2 * namespaces + root + 1, rep.result


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: run_program(b"print(1)"), TypeError, "code must be str, got bytes"),
        (lambda: run_program("print(1)", stdin=None), TypeError, "stdin must be str"),
        (lambda: run_program("print(1)", limits={"timeout_s": 1}), TypeError, "limits must be a Limits"),
        (lambda: run_program("print(1)", isolation="docker"), ValueError, "isolation must be one of"),
        (lambda: Limits(timeout_s=-1), ValueError, "Limits.timeout_s must be a positive finite number"),
        (lambda: Limits(cpu_s=float("inf")), ValueError, "Limits.cpu_s"),
        (lambda: Limits(memory_mb=1.5), TypeError, "Limits.memory_mb must be int"),
        (lambda: Limits(max_processes=True), TypeError, "Limits.max_processes"),
        (lambda: run_tests("x = 1", "print(x)"), ValueError, "no assert statements"),
        (lambda: run_tests("x = 1", "assert x ==="), ValueError, "test_code is not valid Python (line 1"),
        (lambda: run_tests(None, "assert 1"), TypeError, "solution_code must be str"),
        (lambda: run_tests("x = 1", "assert x", judge_code=None), TypeError, "judge_code must be str"),
        (
            lambda: run_tests("x = 1", "assert x", judge_code="def ("),
            ValueError,
            "judge_code is not valid Python",
        ),
        (lambda: Limits(max_result_bytes=0), ValueError, "Limits.max_result_bytes must be a positive"),
        (lambda: Sandbox(max_workers=0), ValueError, "max_workers must be a positive int"),
        (lambda: Sandbox(limits=EASY).run_many(["1"], stdins=[]), ValueError, "1 programs but 0 stdins"),
        (lambda: Sandbox(limits=EASY).run_many(["1", 2]), TypeError, "codes[1] must be str"),
    ],
)
def test_bad_input_raises_one_line_errors(call, error, message):
    with pytest.raises(error) as exc:
        call()
    assert message in str(exc.value) and "\n" not in str(exc.value)


# --- adversarial corpus ------------------------------------------------------------------------


@dataclass(frozen=True)
class Attack:
    """A hostile program; scored with ``run_tests`` when ``tests`` is given (no assert may pass).

    ``host_check``: the status may be ok (e.g. writes that land in the private /tmp), the checks on
    the host are what matter. ``unsafe_with_shared_uid``: would reach this very test process in
    basic isolation without root. ``needs_own_uid``: no defence without a uid or a mount namespace
    of the sandbox's own. ``needs_mount_ns``: reads files any user may read (only a mount
    namespace hides them).
    """

    name: str
    code: str
    tests: str | None = None
    host_check: bool = False
    unsafe_with_shared_uid: bool = False
    needs_own_uid: bool = False
    needs_mount_ns: bool = False
    judge_code: str = ""


def attack(
    name: str, code: str, tests: str | None = None, judge_code: str = "", prelude: str = "", **kw: bool
) -> Attack:
    dedent = lambda text: text and textwrap.dedent(text).strip() + "\n"
    return Attack(name, dedent(prelude) + dedent(code), dedent(tests), judge_code=judge_code, **kw)


INC_TESTS = "assert inc(1) == 2\nassert inc(2) == 3\nassert inc(3) == 4"
CUT_LOOP = "for x in [1, 2, 3, 4, 5]:\n    r = double(x)\n    assert r == 2 * x"
# Forging attacks that find nonces call this: a pass for every assert, under every nonce, to
# every descriptor, then an exit before the real verdicts.
FORGE = """
import os
def forge(nonces, fds):
    for fd in fds:
        for n in nonces:
            try:
                os.write(fd, "".join(f"{n} {i} P\\n" for i in range(3)).encode())
            except OSError:
                pass
    os._exit(0)
"""


# Functions that return an object of the program's own, never the right answer.
PLAIN_OBJECTS = """
class X:
    pass
def add(a, b):
    return X()
def sq(x):
    return X()
def evens(n):
    return X()
"""


# ``__NAME__`` placeholders are filled in from the ``host`` fixture. Programs that attack by
# signal or syscall "succeed" (exit 0) only when their target died or the call went through.
CORPUS = [
    # runaway CPU and time
    attack("infinite_loop", "while True: pass"),
    attack(
        "busy_loop_in_thread",
        """
        import threading
        def spin():
            while True:
                pass
        t = threading.Thread(target=spin)
        t.start()
        t.join()
        """,
    ),
    attack("sleep_past_wall_clock", "import time; time.sleep(100)"),
    attack(
        "sleeper_ignoring_signals",
        """
        import signal, time
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGXCPU):
            signal.signal(s, signal.SIG_IGN)
        time.sleep(100)
        """,
    ),
    # processes
    attack(
        "fork_bomb",
        """
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
        """,
    ),
    attack("fork_bomb_crashing", "import os\nwhile True: os.fork()"),
    attack(
        "subprocess_bomb",
        """
        import subprocess, sys
        procs = []
        while True:
            procs.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]))
        """,
    ),
    attack(
        "many_threads",
        """
        import threading, time
        for _ in range(10_000):
            threading.Thread(target=time.sleep, args=(0.2,)).start()
        """,
    ),
    # memory
    attack("memory_bomb_list", "x = []\nwhile True: x.append(bytearray(10**7))"),
    attack("memory_bomb_one_allocation", "b = bytearray(8 * 1024**3)"),
    attack(
        "zip_bomb_cpu_and_memory",
        """
        import zlib
        bomb = zlib.compress(bytes(64 * 2**20), 9)
        out = [zlib.decompress(bomb) for _ in range(64)]
        """,
    ),
    attack(
        "deep_recursion",
        """
        import sys
        sys.setrecursionlimit(10**9)
        def f(n):
            return f(n + 1)
        f(0)
        """,
    ),
    attack(
        "c_stack_overflow_segfault",
        """
        import sys
        sys.setrecursionlimit(10**9)
        class A:
            def __repr__(self):
                return repr(self)
        repr(A())
        """,
    ),
    attack("ctypes_null_dereference", "import ctypes; ctypes.string_at(0)"),
    # files and output
    attack(
        "disk_fill_one_file",
        """
        with open("big", "wb") as f:
            while True:
                f.write(bytes(2**20))
        """,
    ),
    attack(
        "disk_fill_many_files",
        """
        i = 0
        while True:
            with open(f"f{i}", "wb") as f:
                f.write(bytes(4 * 2**20))
            i += 1
        """,
    ),
    attack("huge_stdout", "while True: print('x' * 1000)"),
    attack("huge_stderr", "import sys\nwhile True: sys.stderr.write('y' * 10_000)"),
    attack("fd_exhaustion", "files = [open('/dev/null') for _ in range(100_000)]"),
    attack("write_into_repo", "open('__REPO__/__MARKER__', 'w').write('pwned')"),
    attack("write_next_to_sandbox_module", "open('__MODULE_DIR__/__MARKER__', 'w').write('pwned')"),
    attack(
        "write_world_writable_dirs",
        """
        for d in ("/tmp", "/var/tmp", "/dev/shm"):
            open(f"{d}/__MARKER__", "w").write("pwned")
        """,
        host_check=True,
        needs_own_uid=True,
    ),
    attack("overwrite_host_file", "open('__CANARY__', 'w').write('pwned')", needs_own_uid=True),
    attack("delete_host_file", "import os; os.remove('__CANARY__')", needs_own_uid=True),
    # privileges and escapes
    attack("setuid_root", "import os; os.setuid(0)"),
    attack(
        "unshare_user_namespace",
        """
        import ctypes, sys
        sys.exit(0 if ctypes.CDLL(None).unshare(0x10000000) == 0 else "refused")
        """,
    ),
    attack(
        "ptrace_attach_parent",
        """
        import ctypes, os, sys
        sys.exit(0 if ctypes.CDLL(None).ptrace(16, os.getppid(), 0, 0) == 0 else "refused")
        """,
    ),
    # signals
    attack(
        "kill_parent",
        """
        import os, signal, sys, time
        target = os.getppid()
        os.kill(target, signal.SIGKILL)
        time.sleep(0.2)
        os.kill(target, 0)
        sys.exit("parent survived")
        """,
        unsafe_with_shared_uid=True,
    ),
    attack(
        "terminate_parent",
        """
        import os, signal, sys, time
        target = os.getppid()
        os.kill(target, signal.SIGTERM)
        time.sleep(0.2)
        os.kill(target, 0)
        sys.exit("parent survived")
        """,
        unsafe_with_shared_uid=True,
    ),
    attack(
        "kill_test_process_by_pid",
        """
        import os, signal, sys, time
        os.kill(__TEST_PID__, signal.SIGKILL)
        time.sleep(0.2)
        os.kill(__TEST_PID__, 0)
        sys.exit("test process survived")
        """,
        unsafe_with_shared_uid=True,
    ),
    attack(
        "kill_every_ancestor",
        """
        import os, signal, sys
        p = os.getppid()
        while p > 1:
            os.kill(p, signal.SIGKILL)
            p = int(open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1])
        os.kill(1, signal.SIGKILL)
        sys.exit("ancestors survived")
        """,
        unsafe_with_shared_uid=True,
    ),
    attack(
        "killpg_parent_group",
        """
        import os, signal, sys
        os.killpg(os.getpgid(os.getppid()), signal.SIGKILL)
        sys.exit("group survived")
        """,
        unsafe_with_shared_uid=True,
    ),
    attack(
        "kill_everything",
        """
        import os, signal, sys, time
        os.kill(-1, signal.SIGKILL)
        time.sleep(0.2)
        sys.exit("still here")
        """,
        unsafe_with_shared_uid=True,
    ),
    attack(
        "daemon_left_running",
        """
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.execv("/bin/sleep", ["sleep", "__DAEMON_SECONDS__"])
            os._exit(0)

        def daemon_running():
            for p in filter(str.isdigit, os.listdir("/proc")):
                try:
                    if b"__DAEMON_SECONDS__" in open(f"/proc/{p}/cmdline", "rb").read():
                        return True
                except OSError:
                    pass

        for _ in range(100):  # exit only once the daemon is up
            if daemon_running():
                print("daemon up")
                break
            time.sleep(0.01)
        """,
        host_check=True,
    ),
    # network
    attack("network_external", "import socket; socket.create_connection(('1.1.1.1', 53), timeout=1)"),
    attack(
        "network_local_tcp_listener",
        "import socket; socket.create_connection(('127.0.0.1', __PORT__), timeout=1)",
    ),
    attack(
        "network_abstract_unix_socket",
        """
        import socket
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(1)
        s.connect("\\0__ABSTRACT__")
        """,
    ),
    attack(
        "network_raw_syscall",
        """
        import ctypes, sys
        sys.exit(0 if ctypes.CDLL(None).socket(2, 1, 0) >= 0 else "refused")
        """,
    ),
    attack(
        "network_connect_scored",
        """
        import socket
        def connect(addr):
            socket.create_connection(addr, timeout=1).close()
            return True
        """,
        tests="assert connect(('1.1.1.1', 53))\nassert connect(('127.0.0.1', __PORT__))",
    ),
    # broken programs
    attack("missing_module", "import r1rl_no_such_module_anywhere"),
    attack("syntax_error", "def f(:\n    pass"),
    attack("tamper_sys_modules_os", "import sys\nsys.modules['os'] = None\nimport os\nprint(os.getcwd())"),
    # secrets and host files: each assert passes only if the secret was read
    attack(
        "read_environment_secrets",
        "import os\ndef leaked():\n    return list(os.environ.values())",
        tests="assert '__SECRET__' in leaked()",
    ),
    attack(
        "read_proc_environ",
        "import os\ndef leaked(pid):\n    return open(f'/proc/{pid}/environ', 'rb').read().decode()",
        tests="""
        assert '__SECRET__' in leaked('self')
        assert '__SECRET__' in leaked(1)
        assert '__SECRET__' in leaked(os.getppid())
        assert '__SECRET__' in leaked(__TEST_PID__)
        """,
    ),
    attack(
        "read_home_credentials",
        "import os\ndef read(p):\n    return open(os.path.expanduser(p)).read()",
        tests="""
        assert read('~/.ssh/id_rsa') == 'PRIVATE KEY'
        assert read('__HOME__/.ssh/id_rsa') == 'PRIVATE KEY'
        assert read('__HOME__/.cache/huggingface/token') == '__SECRET__'
        assert read('/etc/shadow')
        """,
        needs_mount_ns=True,
    ),
    # the answers: a data set on the host holds the reference solution; a program that finds it
    # execs it and passes (each scored 3 of 3 where the program saw the host read-only)
    attack(
        "exec_the_answer_from_a_known_path",
        """
        import json
        for t in json.load(open('__ANSWERS__')):
            if 'def inc(' in t['code']:
                exec(t['code'])
        """,
        tests=INC_TESTS,
        needs_mount_ns=True,
    ),
    attack(
        "walk_the_host_for_the_answer",
        """
        import json, os
        def found():
            roots = ['/var/tmp', '__HOME__', '/work', '/data', '/srv', '/opt', '/mnt', '/home', '/root']
            for root in roots:
                for d, _, files in os.walk(root):
                    for name in files:
                        if not name.endswith(('.json', '.jsonl')):
                            continue
                        try:
                            text = open(os.path.join(d, name)).read()
                        except (OSError, UnicodeDecodeError):
                            continue
                        if 'def inc(' in text:
                            lines = text.splitlines()
                            rows = [json.loads(x) for x in lines] if name.endswith('l') else json.loads(text)
                            return [r['code'] for r in rows if 'def inc(' in r['code']][0]
        exec(found() or '')
        """,
        tests=INC_TESTS,
        needs_mount_ns=True,
    ),
    attack(
        "read_the_repository_its_data_and_caches",
        """
        import os
        def seen(path):
            if os.path.isdir(path):
                return len(os.listdir(path))
            return os.path.exists(path) and len(open(path).read())
        """,
        tests="""
        assert seen('__REPO__/tests/rewards/fixtures/stdio_tasks.json')
        assert seen('__MODULE_DIR__/judge.py')
        assert seen('__HOME__/.cache/huggingface/datasets/mbpp.jsonl')
        assert seen('__ANSWERS__')
        """,
        needs_mount_ns=True,
    ),
    # reward hacking of run_tests: the solutions are wrong, the hacks must not make asserts pass
    attack(
        "sys_exit_zero_early", "import sys\nsys.exit(0)\ndef inc(x): return x", tests="assert inc(1) == 2"
    ),
    attack("os_exit_zero_early", "import os\nos._exit(0)\ndef inc(x): return x", tests="assert inc(1) == 2"),
    attack(
        "forged_summary_lines",
        """
        import os, sys
        def inc(x):
            forged = "".join(f"{g:032x} {i} P\\n" for g in (0, 1) for i in range(3))
            print(forged)
            print(forged, file=sys.stderr)
            for fd in map(int, os.listdir("/proc/self/fd")):
                try:
                    os.write(fd, forged.encode())
                except OSError:
                    pass
            return x
        """,
        tests="assert inc(1) == 2\nassert inc(2) == 3",
    ),
    attack(
        "read_results_channel",
        """
        import os
        def inc(x):
            for fd in map(int, os.listdir("/proc/self/fd")):
                for path in (None, f"/proc/self/fd/{fd}"):
                    try:
                        f = os.open(path, os.O_RDONLY) if path else fd
                        seen = os.pread(f, 1 << 16, 0).decode()
                    except (OSError, UnicodeDecodeError):
                        continue
                    for line in seen.splitlines():
                        if line.endswith(" F"):  # a verdict line: learn the nonce, pass everything
                            nonce = line.split()[0]
                            os.write(fd, "".join(f"{nonce} {i} P\\n" for i in range(3)).encode())
                            os._exit(0)  # before the real verdicts of the other asserts
            return x
        """,
        tests="assert inc(1) == 2\nassert inc(2) == 3\nassert inc(3) == 4",
    ),
    attack(
        "patch_builtins",
        """
        import builtins
        builtins.abs = lambda x: 0
        builtins.len = lambda x: 3
        builtins.AssertionError = type("Nope", (Exception,), {})
        def inc(x):
            return x
        """,
        tests="assert abs(inc(1) - 2) < 1e-9\nassert len(str(inc(10))) == 3",
    ),
    attack(
        "patch_builtins_during_the_test",
        """
        import builtins
        class Liar(int):
            __eq__ = lambda self, other: True
            __hash__ = int.__hash__
        def inc(x):
            for name in ("all", "any", "isinstance", "issubclass", "getattr", "type", "bool", "len"):
                setattr(builtins, name, lambda *a, **k: True)
            return Liar(x)
        """,
        tests="assert inc(1) == 2\nassert inc(2) == 3",
    ),
    attack(
        "always_equal_object",
        """
        class Any:
            __eq__ = __lt__ = __gt__ = lambda self, other: True
            __ne__ = lambda self, other: False
            __bool__ = lambda self: True
            __hash__ = object.__hash__
            __sub__ = __abs__ = lambda self, *other: self
        def inc(x):
            return Any()
        """,
        tests="""
        assert inc(1) == 2
        assert inc(2) != 2
        assert abs(inc(3) - 4) < 1e-9
        assert inc(4)
        assert inc(5) in [6]
        """,
    ),
    attack(
        "hijack_the_recorder",
        """
        def inc(x):
            g = globals()
            real = g.get("__r1rl_check__")
            if real is not None:
                g["__r1rl_check__"] = lambda i, fn: real(i, lambda h: True)
            return x
        """,
        tests="assert inc(1) == 2\nassert inc(2) == 3\nassert inc(3) == 4",
    ),
    attack(
        "fake_os_module",
        """
        import sys
        class FakeOS:
            def __getattr__(self, name):
                return lambda *a, **k: None
        sys.modules["os"] = FakeOS()
        def inc(x):
            return x
        """,
        tests="assert inc(1) == 2",
    ),
    # forging verdicts: wrong solutions that attack the judge, its channel or their own process to
    # make asserts pass. The first three score 3 of 3 where the tests run in the program's own
    # interpreter (walking frames, gc or the job up to the recorder).
    attack(
        "frames_up_to_the_recorder",
        """
        import re, sys
        def inc(x):
            nonces = set()
            f = sys._getframe()
            while f is not None:  # the recorder's frame holds the nonce and the verdict fd
                for v in list(f.f_locals.values()):
                    if isinstance(v, str) and re.fullmatch(r"[0-9a-f]{32}", v):
                        nonces.add(v)
                f = f.f_back
            if nonces:
                forge(nonces, range(3, 256))
            return x
        """,
        tests=INC_TESTS,
        prelude=FORGE,
    ),
    attack(
        "gc_closure_cells_of_the_recorder",
        """
        import gc, re, types
        def inc(x):
            nonces, fds = set(), set()
            for o in gc.get_objects():  # the recorder's closure cells
                if isinstance(o, types.FunctionType) and o.__closure__:
                    for c in o.__closure__:
                        try:
                            v = c.cell_contents
                        except ValueError:
                            continue
                        if isinstance(v, str) and re.fullmatch(r"[0-9a-f]{32}", v):
                            nonces.add(v)
                        elif type(v) is int and 2 < v < 1024:
                            fds.add(v)
            if nonces:
                forge(nonces, fds | set(range(3, 64)))
            return x
        """,
        tests=INC_TESTS,
        prelude=FORGE,
    ),
    attack(
        "job_memoises_expected_values",
        """
        import ast, sys
        def inc(x):
            memo, texts = {}, []
            f = sys._getframe()
            while f is not None:  # the frame's job holds the test statements
                for v in list(f.f_locals.values()):
                    if isinstance(v, dict):
                        texts += [s for s in v.get("tests", []) if isinstance(s, str)]
                f = f.f_back
            for node in (n for t in texts for n in ast.walk(ast.parse(t))):
                if isinstance(node, ast.Call) and len(node.args) == 3:
                    a, b = node.args[1], node.args[2]
                    if isinstance(a, ast.Call) and getattr(a.func, "id", "") == "inc":
                        memo[ast.literal_eval(a.args[0])] = ast.literal_eval(b)
            return memo.get(x, x)
        """,
        tests=INC_TESTS,
    ),
    attack(
        "scan_own_memory_for_expected_values",
        """
        import re
        def secret():
            found = set()
            with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb", 0) as mem:
                for line in maps:
                    addr, perms = line.split()[:2]
                    lo, hi = (int(x, 16) for x in addr.split("-"))
                    try:
                        mem.seek(lo)
                        found |= set(re.findall(rb"EXPECTED-[0-9a-f]{16}", mem.read(min(hi - lo, 1 << 26))))
                    except (OSError, OverflowError, ValueError):
                        pass
            found.discard(b"EXPECTED-" + b"0" * 16)
            return found.pop().decode() if found else "not found"
        """,
        tests="assert secret() == 'EXPECTED-__TOKEN__'\nassert secret() == 'EXPECTED-__TOKEN__'",
    ),
    attack(
        "ctypes_reads_the_heap_for_expected_values",
        """
        import ctypes, gc
        def secret():
            for o in gc.get_objects():
                for v in o.values() if isinstance(o, dict) else o if isinstance(o, (list, tuple)) else ():
                    if isinstance(v, str) and v.startswith("EXPECTED-") and len(v) == 25:
                        return ctypes.string_at(id(v) + 48, 25).decode()
            return "not found"
        """,
        tests="assert secret() == 'EXPECTED-__TOKEN__'",
    ),
    attack(
        "ctypes_raw_writes_to_every_descriptor",
        """
        import ctypes, gc, re
        libc = ctypes.CDLL(None)
        def inc(x):
            nonces = {v for o in gc.get_objects() if isinstance(o, dict) for v in list(o.values())
                      if isinstance(v, str) and re.fullmatch(r"[0-9a-f]{32}", v)} or {"0" * 32}
            forged = "".join(f"{n} {i} P\\n" for n in nonces for i in range(3)).encode()
            for fd in range(1024):
                libc.write(fd, forged, len(forged))
                libc.pwrite(fd, forged, len(forged), 0)
            return x
        """,
        tests=INC_TESTS,
    ),
    attack(
        "read_and_write_every_process_through_proc",
        """
        import os, re
        def inc(x):
            loot = {b"0" * 32}
            pids = [p for p in os.listdir("/proc") if p.isdigit()] + [str(p) for p in range(1, 64)]
            for pid in pids:
                for leaf in ("environ", "cmdline", "mem", "maps"):
                    try:
                        with open(f"/proc/{pid}/{leaf}", "rb") as f:
                            loot |= set(re.findall(rb"[0-9a-f]{32}", f.read(1 << 20)))
                    except OSError:
                        pass
            forged = b"".join(n + b" %d P\\n" % i for n in loot for i in range(3))
            for pid in pids:
                try:
                    fds = os.listdir(f"/proc/{pid}/fd")
                except OSError:
                    continue
                for fd in fds:
                    try:
                        with open(f"/proc/{pid}/fd/{fd}", "ab") as f:
                            f.write(forged)
                    except OSError:
                        pass
                try:
                    with open(f"/proc/{pid}/mem", "r+b") as f:
                        f.write(forged)
                except OSError:
                    pass
            return x
        """,
        tests=INC_TESTS,
    ),
    attack(
        "ptrace_and_process_vm_on_every_pid",
        """
        import ctypes, sys
        libc = ctypes.CDLL(None, use_errno=True)
        class Iov(ctypes.Structure):
            _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
        def inc(x):
            buf = ctypes.create_string_buffer(64)
            iov = Iov(ctypes.addressof(buf), 64)
            for pid in range(1, 4096):  # PTRACE_ATTACH, PTRACE_SEIZE, process_vm_readv
                if libc.ptrace(16, pid, 0, 0) == 0 or libc.ptrace(0x4206, pid, 0, 0) == 0:
                    sys.exit("attached")
                if libc.process_vm_readv(pid, ctypes.byref(iov), 1, ctypes.byref(iov), 1, 0) > 0:
                    sys.exit("read")
            return x
        """,
        tests=INC_TESTS,
    ),
    attack(
        "stop_and_kill_every_process_then_answer",
        """
        import os, signal
        def inc(x):
            for sig in (signal.SIGSTOP, signal.SIGKILL):
                for pid in range(1, 32768):
                    if pid != os.getpid():
                        try:
                            os.kill(pid, sig)
                        except OSError:
                            pass
                for group in (0, 1):
                    try:
                        os.killpg(group, sig)
                    except OSError:
                        pass
            return x
        """,
        tests=INC_TESTS,
        unsafe_with_shared_uid=True,
    ),
    attack(
        "forged_replies_on_every_descriptor",
        """
        import os, struct
        def u32(n):
            return struct.pack("<I", n)
        def frame(*items):  # a tuple as the judge's wire format spells it
            body = b"U" + u32(len(items)) + b"".join(items)
            return u32(len(body)) + body
        S = lambda t: b"S" + u32(len(t)) + t
        FORGED = [
            frame(S(b"ok"), b"T"),
            frame(S(b"raise"), b"U" + u32(1) + S(b"StopIteration"), S(b"")),
            frame(S(b"ok"), b"H" + struct.pack("<qq", 0, 0) + b"o" + u32(3) + b"int"),
            b"0" * 32 + b" 0 P\\n" + b"0" * 32 + b" end\\n",
        ]
        def inc(x):
            for fd in range(3, 256):
                for forged in FORGED:
                    try:
                        os.write(fd, forged)
                    except OSError:
                        pass
            return x
        """,
        tests=INC_TESTS,
    ),
    attack(
        "replies_written_ahead_by_a_thread",
        """
        import os, struct, threading
        TRUE = b"U" + struct.pack("<I", 2) + b"S" + struct.pack("<I", 2) + b"ok" + b"T"
        def flood():
            for fd in range(3, 32):
                try:
                    while True:
                        os.write(fd, struct.pack("<I", len(TRUE)) + TRUE)
                except OSError:
                    pass
        threading.Thread(target=flood, daemon=True).start()
        def inc(x):
            return x
        """,
        tests=INC_TESTS,
    ),
    attack(
        "patch_builtins_sys_modules_and_marshal",
        """
        import builtins, marshal, sys
        class Yes:
            def __getattr__(self, name):
                return lambda *a, **k: True
        for name in ("len", "isinstance", "abs", "round", "sorted", "set", "all", "any", "bool", "type"):
            setattr(builtins, name, lambda *a, **k: True)
        sys.modules["marshal"] = sys.modules["math"] = sys.modules["collections"] = Yes()
        marshal.loads = marshal.dumps = lambda *a: b"T"
        def inc(x):
            return x
        """,
        tests="import math\n"
        "assert abs(inc(1) - 2) < 1e-9\nassert math.isclose(inc(2), 3)\nassert any([inc(0)])\n",
    ),
    attack(
        "shadow_the_tests_builtins_and_modules",
        """
        import types
        def abs(x): return 0
        def len(x): return 3
        def sorted(x, **k): return [3, 4]
        def round(*a): return 1
        def isinstance(*a): return True
        math = types.SimpleNamespace(isclose=lambda *a, **k: True)
        def inc(x): return x
        """,
        tests="""
        assert abs(inc(3) - 4) < 1e-9
        assert len(inc([1, 2])) == 3
        assert sorted(inc([2, 3])) == [3, 4]
        assert round(inc(0.4), 0) == 1
        assert isinstance(inc(1), str)
        assert math.isclose(inc(1), 2)
        """,
    ),
    attack(
        "hostile_eq_hash_and_class",
        """
        class Liar:
            __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = lambda self, other: True
            __hash__ = lambda self: 2
            __bool__ = lambda self: True
            __class__ = property(lambda self: int)
            __index__ = __int__ = lambda self: 2
            __sub__ = __rsub__ = __add__ = __radd__ = __abs__ = lambda self, *o: 0.0
        def inc(x):
            return Liar()
        """,
        tests="""
        assert inc(1) == 2
        assert inc(2) != 2
        assert abs(inc(3) - 4) < 1e-9
        assert inc(4)
        assert {inc(5)} == {6}
        assert isinstance(inc(6), int) and inc(6) + 0 == 7
        """,
    ),
    attack(
        "builtin_subclasses_that_always_equal",
        """
        class L(list):
            __eq__ = lambda self, other: True
        class S(str):
            __eq__ = lambda self, other: True
            __hash__ = str.__hash__
        class I(int):
            __eq__ = lambda self, other: True
            __hash__ = int.__hash__
        def f(x):
            return [L(), S("no"), I(0)][x]
        """,
        tests="assert f(0) == [1, 2]\nassert f(1) == 'yes'\nassert f(2) == 3\nassert [f(2)] == [3]",
    ),
    attack(
        "proxy_that_pretends_to_be_anything",
        """
        class Proxy:
            __class__ = property(lambda self: list)
            def __getattr__(self, name): return self
            def __call__(self, *a, **k): return self
            def __eq__(self, other): return True
            def __iter__(self): return iter([2, 3, 4])
            __hash__ = object.__hash__
        def f(x):
            return Proxy()
        """,
        tests="assert f(1) == [2, 3, 4, 5]\nassert f(1).count(2) == 5\nassert sorted(f(1)) == [2, 3, 4, 5]",
    ),
    attack(
        "function_and_class_valued_results",
        "def inc(x):\n    return [print, lambda: True, int, inc, __import__('math')][x]",
        tests="assert inc(0)\nassert inc(1)\nassert inc(2)\nassert inc(3)\nassert inc(4)",
    ),
    attack(
        "enormous_results",
        "def f(x):\n    return ['x' * (8 << 20), list(range(3 << 20)), 1 << 30_000_000, bytes(64 << 20)][x]",
        tests="assert f(0) == 'y'\nassert f(1) == [0]\nassert f(2) == 1\nassert f(3) == b''",
    ),
    attack(
        "infinitely_deep_results",
        """
        def f(x):
            a = []
            a.append(a)
            d = {}
            d["d"] = d
            deep = []
            for _ in range(10_000):
                deep = [deep]
            return [a, d, deep][x]
        """,
        tests="assert f(0) == [[]]\nassert f(1) == {'d': {}}\nassert f(2) == [[[]]]",
    ),
    attack(
        "handcrafted_deep_oversized_and_colliding_frames",
        """
        import os, struct, sys
        def u32(n):
            return struct.pack("<I", n)
        def f(x):
            fr = sys._getframe()
            while "replies_fd" not in fr.f_locals:
                fr = fr.f_back
            fd = fr.f_locals["replies_fd"]
            ok = b"U" + u32(2) + b"S" + u32(2) + b"ok"
            M = (1 << 61) - 1
            if x == 0:  # a list nested 100,000 deep
                body = ok + (b"L" + u32(1)) * 100_000 + b"N"
            elif x == 1:  # 20,000 ints that all hash alike: quadratic to put in a set
                ints = b"".join(b"I" + u32(16) + (M * i).to_bytes(16, "little") for i in range(1, 20_001))
                body = ok + b"E" + u32(20_000) + ints
            else:  # a frame that claims 2 GiB
                body = None
            os.write(fd, u32(len(body)) + body if body else u32(2**31))
            return x
        """,
        tests="assert f(0) == [[]]\nassert f(1) == {1}\nassert f(2) == 1",
    ),
    attack(
        "exit_early_from_a_call",
        """
        import os, sys
        def inc(x):
            if x == 3:
                sys.exit(0)
            if x == 2:
                os._exit(0)
            return x
        """,
        tests="assert inc(1) == 2\nassert inc(3) == 4\nassert inc(2) == 3\nassert inc(4) == 5",
    ),
    attack(
        "fork_before_answering",
        """
        import os
        def inc(x):
            if os.fork() == 0:
                return x - 1  # the child answers too, on the same pipe
            return x
        """,
        tests=INC_TESTS,
    ),
    attack(
        "infinite_generator_result",
        "import itertools\ndef f(x):\n    return itertools.count()",
        tests="assert list(f(1)) == [1, 2]\nassert sum(f(2)) == 3",
    ),
    attack(
        "slow_drip_reply",
        """
        import os, struct, sys, time
        def f(x):
            fr = sys._getframe()
            while "replies_fd" not in fr.f_locals:
                fr = fr.f_back
            os.write(fr.f_locals["replies_fd"], struct.pack("<I", 100))
            while True:
                os.write(fr.f_locals["replies_fd"], b"T")
                time.sleep(0.2)
        """,
        tests="assert f(1) == 1",
    ),
    attack(
        "impersonate_the_standard_library",  # what a program says of its objects is never believed
        """
        def inc(x):
            return x
        inc.__module__, inc.__qualname__ = "os", "_exit"  # the judge calling os._exit(1) would die
        class isclose:
            __module__ = "math"
            def __new__(cls, *a, **k):
                return True
        """,
        # the tests' import is theirs: a name the tests do not bind is the program's, as in one
        # interpreter, so isclose must come from their own import to be the standard library's
        tests="from math import isclose\nassert inc(1) == 2\nassert inc(2) == 3\nassert isclose(inc(3), 4)",
    ),
    attack(
        "redefine_a_trusted_helper",  # HumanEval 32: the tests judge find_zero with the prompt's poly
        """
        import math
        def poly(xs, x):
            return 0
        def find_zero(xs):
            return 0.0
        """,
        tests="""
        def check(candidate):
            for coeffs in ([1, 2], [-6, 11, -6, 1], [2, -3]):
                assert abs(poly(coeffs, candidate(coeffs))) < 1e-4
        check(find_zero)
        """,
        judge_code="def poly(xs, x):\n    return sum(c * x**i for i, c in enumerate(xs))\n",
    ),
    attack(
        "memoise_a_trusted_helper",  # HumanEval 38: decode(encode(s)) == s, with encode the prompt's
        """
        MEMO = {}
        def encode_cyclic(s):
            MEMO[s[1:] + s[:1]] = s
            return s[1:] + s[:1]
        def decode_cyclic(s):
            return MEMO.get(s, s)
        """,
        tests="""
        def check(candidate):
            for s in ("abcdef", "hello", "xyz"):
                assert candidate(encode_cyclic(s)) == s
        check(decode_cyclic)
        """,
        judge_code="def encode_cyclic(s):\n    return s[1:] + s[:1]\n",
    ),
    # Steering the judge: what the program's process says about its objects (kind, module, name,
    # the raw bytes on the channel) must never choose an object on the judge's side, nor stop it.
    # The first three score full marks, and the next two stop the judge (a SandboxError), where the
    # judge trusted the program's ``module:qualname`` of its functions, classes and modules.
    attack(
        "describe_a_function_as_the_standard_librarys",  # the judge would compute math.gcd itself
        """
        def gcd(a, b):
            return 0
        gcd.__module__ = "math"
        """,
        tests="assert gcd(4, 6) == 2\nassert gcd(9, 6) == 3\nassert gcd(7, 5) == 1",
    ),
    attack(
        "describe_a_class_as_the_standard_librarys",
        """
        class Counter:
            __module__ = "collections"
            def __init__(self, items):
                pass
            def __getitem__(self, key):
                return 0
        """,
        tests="assert Counter('aab')['a'] == 2\nassert Counter('abc')['c'] == 1",
    ),
    attack(
        "walk_a_qualname_to_a_nested_function",  # os:path.join, reached through the module's attributes
        """
        def join(*parts):
            return ""
        join.__module__, join.__qualname__ = "os", "path.join"
        """,
        tests="assert join('a', 'b') == 'a/b'\nassert join('/x', 'y', 'z') == '/x/y/z'",
    ),
    attack(
        "describe_a_module_whose_import_exits",  # importing unittest.__main__ raises SystemExit
        """
        import types
        inc = types.ModuleType("unittest.__main__")
        """,
        tests=INC_TESTS,
    ),
    attack(
        "raw_handle_descriptions_on_the_channel",  # a load reply in the old wire format, bytes by hand
        """
        import struct, sys
        server = sys.modules["r1rl_sandbox.program"]
        answer = server._answer
        def u32(n):
            return struct.pack("<I", n)
        def text(tag, b):
            return tag + u32(len(b)) + b
        def forged(request, ns, objects, cap):
            if request[0] != "load":
                return answer(request, ns, objects, cap)
            handle = b"H" + struct.pack("<qq", 0, 0) + text(b"m", b"unittest.__main__:")
            return b"U" + u32(2) + text(b"S", b"ok") + b"M" + u32(1) + text(b"S", b"inc") + handle
        server._answer = forged
        def inc(x):
            return x
        """,
        tests=INC_TESTS,
    ),
    attack(
        "stop_iteration_ends_the_tests_map",  # all(map(f, ...)) of an empty map is True
        """
        def is_prime(n):
            raise StopIteration
        """,
        tests="assert all(map(is_prime, [2, 3, 5, 7]))\nassert not any(map(is_prime, [4, 6, 8]))",
    ),
    attack(
        "stop_iteration_ends_the_tests_zip",  # a generator over zip(map(f, ...), expected) stops at once
        """
        def sq(x):
            raise StopIteration
        """,
        tests="""
        assert all(a == b for a, b in zip(map(sq, [1, 2, 3]), [1, 4, 9]))
        assert sum(1 for a, b in zip(map(sq, [1, 2]), [1, 4]) if a != b) == 0
        """,
    ),
    attack(
        "namedtuple_fields_python_refuses",  # 'ﬁ' and 'fi' are one identifier to the compiler (NFKC)
        """
        class P(tuple):
            _fields = ("\ufb01", "fi")
            _make = classmethod(lambda cls, items: cls(items))
        def inc(x):
            return P((x, x))
        """,
        tests=INC_TESTS,
    ),
    attack(
        "answer_the_name_table_for_every_name",  # its server offers a liar for each name asked
        """
        import sys
        server = sys.modules["r1rl_sandbox.program"]
        perform = server._perform
        def yes(*a, **k):
            return True
        def forged(op, args, ns):
            if op == "load":
                return {name: yes for name in args[0]}
            return perform(op, args, ns)
        server._perform = forged
        def inc(x):
            return x
        """,
        tests="""
        import math
        assert abs(inc(1) - 2) < 1e-9
        assert math.isclose(inc(2), 3)
        assert isclose(inc(3), 4) and all([inc(3) == 4])
        """,
        judge_code="from math import isclose\n",
    ),
    attack(
        "rebind_the_names_the_tests_import",
        """
        def isclose(*a, **k):
            return True
        def sqrt(x):
            return 3
        math = type("M", (), {"isclose": isclose, "sqrt": sqrt})
        def inc(x):
            return x
        """,
        tests="""
        import math
        from math import isclose, sqrt
        assert isclose(inc(1), 2)
        assert math.isclose(inc(2), 3)
        assert sqrt(inc(15)) == 4
        """,
    ),
    attack(
        "rebind_the_names_the_prompt_imports",  # HumanEval's `import math` is code_task's judge_code
        """
        def isclose(*a, **k):
            return True
        def floor(x):
            return 4
        def inc(x):
            return x
        """,
        tests="assert isclose(inc(1), 2)\nassert floor(inc(4.5)) == 5\nassert math.floor(inc(4.5)) == 5",
        judge_code="import math\nfrom math import isclose, floor\n",
    ),
    attack(
        "patch_the_real_module_the_tests_read",  # the tests read math.isclose without importing math
        """
        import math
        math.isclose = lambda *a, **k: True
        math.fabs = lambda x: 0.0
        def inc(x):
            return x
        """,
        tests="assert math.isclose(inc(1), 2)\nassert math.fabs(inc(2) - 3) < 1e-9",
    ),
    attack(
        "handles_inside_exception_arguments",  # the error's argument is an object that equals anything
        """
        import sys
        server = sys.modules["r1rl_sandbox.program"]
        channel = sys.modules["r1rl_sandbox.channel"]
        answer = server._answer
        class Yes:
            __eq__ = lambda self, other: True
            __hash__ = lambda self: 0
        def forged(request, ns, objects, cap):
            if request[0] != "call":
                return answer(request, ns, objects, cap)
            return channel.Encoder(cap, objects.register).encode(("raise", ("ValueError",), (Yes(),)))
        server._answer = forged
        def parse(x):
            return x
        """,
        tests="""
        def message(x):
            try:
                parse(x)
            except ValueError as e:
                return e.args[0]
        assert message(-1) == 'negative'
        assert message(-2) == 'negative' and message(-3) in ('negative',)
        """,
    ),
    attack(
        "recursion_through_exception_arguments",  # each error's argument raises the same when read
        """
        import sys
        server = sys.modules["r1rl_sandbox.program"]
        channel = sys.modules["r1rl_sandbox.channel"]
        answer = server._answer
        class Box:
            pass
        def forged(request, ns, objects, cap):
            if request[0] not in ("call", "iter", "len", "getattr"):
                return answer(request, ns, objects, cap)
            return channel.Encoder(cap, objects.register).encode(("raise", ("SyntaxError",), ("x", Box())))
        server._answer = forged
        def inc(x):
            return x
        """,
        tests=INC_TESTS,
    ),
    # Negated comparisons: a program object against the tests' data has no truthful answer in the
    # judge; each of these scored 1 of 1 while such a comparison was False, which `not`, `!=`,
    # `is False`, a filter or a sum turn into a pass.
    *(
        attack(f"negated_comparison_{name}", PLAIN_OBJECTS, tests=tests)
        for name, tests in (
            ("not_ne", "assert not (add(2, 3) != 5)"),
            ("ne_is_false", "assert (add(2, 3) != 5) is False"),
            ("not_in", "assert not (3 in evens(6))"),
            (
                "filter_of_mismatches",
                "cases = [(1, 1), (2, 4)]\nassert [x for x, y in cases if sq(x) != y] == []",
            ),
            ("sum_of_mismatches", "assert sum(sq(x) != x * x for x in range(10)) == 0"),
            ("neither_less_nor_greater", "assert not (add(2, 3) < 5) and not (add(2, 3) > 5)"),
            ("eq_outside_the_assert", "wrong = add(2, 3) == 6\nassert not wrong"),
            ("list_eq_to_a_wrong_value", "assert not ([add(2, 3)] == [6])"),
        )
    ),
    # An entry point named like a builtin: the tests' calls of it are the program's (each scored 1 of
    # 1 while the judge's builtin answered them), and when the tests cannot tell it from the
    # builtins they call as helpers, neither is trusted.
    attack("entry_point_pow", "def pow(a, b):\n    return 0", tests="assert pow(2, 3) == 2**3"),
    attack("entry_point_max", "def max(xs):\n    return -1", tests="nums = [1, 5, 2]\nassert max(nums) == 5"),
    attack(
        "entry_point_sorted_with_a_key",
        "def sorted(xs, key=None):\n    return []",
        tests="assert sorted([3, 1, 2], key=lambda x: x) == [1, 2, 3]",
    ),
    attack(
        "entry_point_round_through_check",
        "def round(x):\n    return 0",
        tests="""
        def check(candidate):
            assert candidate(2.6) == 3
            assert abs(candidate(-1.7) + 2) < 1e-9
        check(round)
        """,
    ),
    attack("entry_point_left_undefined", "def helper():\n    pass", tests="assert pow(2, 3) == 8"),
    attack(
        "entry_point_or_helper_both_defined",
        "def pow(a, b):\n    return 0\ndef abs(x):\n    return 0",
        tests="r = pow(2, 0.5)\nassert abs(r - 1.4142) < 1e-4",
    ),
    attack(
        "entry_point_or_helper_only_the_helper_defined",
        "def abs(x):\n    return 0",
        tests="r = pow(2, 0.5)\nassert abs(r - 1.4142) < 1e-4",
    ),
    # Cut short outside the assert: an assert in a loop passes on the first round, then a later
    # round ends before its assert (the program raises, exits, runs out of time, answers with a
    # function, or its object is compared outside the assert; the tests' own `except:` swallows
    # its end or the undecidable comparison). Each scored 1 of 1 while the first round's pass stood
    # for the rounds never decided; the last has HumanEval 32's shape (`solution = candidate(...)`
    # before the assert, in check's loop).
    *(
        attack(f"cut_short_in_a_loop_{name}", code, tests=tests)
        for name, code, tests in (
            ("raises", "def double(x):\n    if x > 1:\n        raise ValueError(x)\n    return 2", CUT_LOOP),
            (
                "exits",
                "import os\ndef double(x):\n    if x > 1:\n        os._exit(0)\n    return 2",
                CUT_LOOP,
            ),
            (
                "sleeps",
                "import time\ndef double(x):\n    if x > 1:\n        time.sleep(60)\n    return 2",
                CUT_LOOP,
            ),
            ("answers_a_function", "def double(x):\n    return 2 if x == 1 else len", CUT_LOOP),
            (
                "object_compared_outside_the_assert",
                "class X:\n    pass\ndef double(x):\n    return 2 if x == 1 else X()",
                "for x in [1, 2, 3]:\n    ok = double(x) == 2 * x\n    assert ok",
            ),
            (
                "end_swallowed_by_the_tests",
                "import os\ndef double(x):\n    if x > 1:\n        os._exit(0)\n    return 2",
                "for x in [1, 2, 3]:\n    try:\n        r = double(x)\n    except:\n        continue\n"
                "    assert r == 2 * x",
            ),
            (
                "undecidable_swallowed_by_the_tests",
                "class X:\n    pass\ndef double(x):\n    return 2 if x == 1 else X()",
                "for x in [1, 2, 3]:\n    try:\n        ok = double(x) == 2 * x\n    except:\n"
                "        continue\n    assert ok",
            ),
            (
                "in_a_check_function",
                "CALLS = []\ndef double(x):\n    if CALLS:\n        raise ValueError(x)\n"
                "    CALLS.append(x)\n    return 2 * x",
                "def check(candidate):\n    for x in range(1, 6):\n        r = candidate(x)\n"
                "        assert r == 2 * x\ncheck(double)",
            ),
        )
    ),
]
FORGING = CORPUS[[a.name for a in CORPUS].index("frames_up_to_the_recorder") :]


@pytest.fixture(scope="module")
def host():
    """Bait on the host (secrets, listeners, files) and the values substituted into the corpus."""
    secret = "hf_" + secrets.token_hex(12)
    marker = f"r1rl-sandbox-marker-{secrets.token_hex(6)}"
    home = Path(f"/var/tmp/r1rl-sandbox-home-{secrets.token_hex(6)}")  # outside /tmp, world-readable
    (home / ".ssh").mkdir(parents=True)
    (home / ".cache/huggingface").mkdir(parents=True)
    (home / ".ssh/id_rsa").write_text("PRIVATE KEY")
    (home / ".cache/huggingface/token").write_text(secret)
    for p in (home, home / ".ssh", home / ".cache", home / ".cache/huggingface"):
        p.chmod(0o755)
    for p in (home / ".ssh/id_rsa", home / ".cache/huggingface/token"):
        p.chmod(0o644)
    answer = {"task_id": 1, "code": "def inc(x):\n    return x + 1\n"}  # a data set's solution
    answers = Path(f"/var/tmp/r1rl-sandbox-answers-{secrets.token_hex(6)}.json")
    answers.write_text(json.dumps([answer]))
    (home / ".cache/huggingface/datasets").mkdir()
    (home / ".cache/huggingface/datasets/mbpp.jsonl").write_text(json.dumps(answer) + "\n")
    for p in (answers, home / ".cache/huggingface/datasets", home / ".cache/huggingface/datasets/mbpp.jsonl"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    canary = Path(f"/var/tmp/r1rl-sandbox-canary-{secrets.token_hex(6)}")
    canary.write_text("intact")
    canary.chmod(0o644)
    tcp = socket.create_server(("127.0.0.1", 0))
    tcp.setblocking(False)
    abstract = f"r1rl-sandbox-test-{secrets.token_hex(6)}"
    unix = socket.socket(socket.AF_UNIX)
    unix.bind("\0" + abstract)
    unix.listen()
    unix.setblocking(False)
    saved = {k: os.environ.get(k) for k in ("HF_TOKEN", "AWS_SECRET_ACCESS_KEY", "HOME")}
    os.environ.update(HF_TOKEN=secret, AWS_SECRET_ACCESS_KEY=secret, HOME=str(home))
    values = {
        "__SECRET__": secret, "__MARKER__": marker, "__HOME__": str(home), "__CANARY__": str(canary),
        "__REPO__": str(REPO), "__MODULE_DIR__": str(REPO / "rewards" / "sandbox"),
        "__TEST_PID__": str(os.getpid()), "__PORT__": str(tcp.getsockname()[1]), "__ABSTRACT__": abstract,
        "__DAEMON_SECONDS__": f"{300 + secrets.randbelow(10**6) / 1000:.3f}",
        "__TOKEN__": secrets.token_hex(8), "__ANSWERS__": str(answers),
    }  # fmt: skip
    yield {"values": values, "tcp": tcp, "unix": unix, "canary": canary, "marker": marker}
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    tcp.close()
    unix.close()
    canary.unlink(missing_ok=True)
    answers.unlink(missing_ok=True)
    shutil.rmtree(home, ignore_errors=True)


def fill(text: str, values: dict[str, str]) -> str:
    for k, v in values.items():
        text = text.replace(k, v)
    return text


def assert_host_unharmed(host: dict) -> None:
    marker = host["marker"]
    for d in (REPO, REPO / "rewards" / "sandbox", Path("/tmp"), Path("/var/tmp"), Path("/dev/shm")):
        assert not (d / marker).exists(), f"the sandbox wrote {d / marker}"
    assert host["canary"].read_text() == "intact"
    for listener in (host["tcp"], host["unix"]):
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected
    assert not sandbox_pids(), "sandbox processes outlived their run"
    assert not pids_with(f"sleep\0{host['values']['__DAEMON_SECONDS__']}"), "the daemon survived"
    assert subprocess.run(["true"]).returncode == 0  # we can still start processes


@pytest.mark.parametrize("attack", CORPUS, ids=[a.name for a in CORPUS])
def test_adversarial_corpus(attack, host):
    if attack.unsafe_with_shared_uid and SHARED_UID:
        pytest.skip("basic isolation without root shares our uid and PID namespace: this would hit us")
    if attack.needs_own_uid and SHARED_UID:
        pytest.skip("basic isolation without root runs programs as our uid: our files are theirs")
    if attack.needs_mount_ns and MODE == "basic":
        pytest.skip("basic isolation has no mount namespace: world-readable files stay readable")
    code = fill(attack.code, host["values"])
    start = time.monotonic()
    if attack.tests is not None:
        rep = run_tests(code, fill(attack.tests, host["values"]), limits=TIGHT, judge_code=attack.judge_code)
        result = rep.result
        assert rep.passed == 0, f"{rep.passed}/{rep.total} asserts passed: {result}"
        assert rep.judged, f"the judge did not get through the tests: {result}"
    else:
        result = run_program(code, limits=TIGHT)
        if not attack.host_check:
            assert not result.ok, f"the attack exited cleanly: {result}"
    elapsed = time.monotonic() - start
    assert result.wall_s <= TIGHT.timeout_s + 0.5 and elapsed <= TIGHT.timeout_s + SLACK_S, result
    assert len(result.stdout) <= TIGHT.max_output_bytes and len(result.stderr) <= TIGHT.max_output_bytes
    assert_host_unharmed(host)


def test_corpus_is_large_and_distinct():
    assert len(CORPUS) >= 57 + 27 + 14 + 8 + 7 + 8 and all(a.tests for a in FORGING)
    assert len({a.name for a in CORPUS}) == len({(a.code, a.tests) for a in CORPUS}) == len(CORPUS)


def test_fork_bomb_is_contained_while_it_runs():
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    limits = Limits(timeout_s=3, cpu_s=3, max_processes=16)
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(run_program, bomb, limits=limits)
        time.sleep(1.0)
        running = len(sandbox_pids())
        assert subprocess.run(["true"]).returncode == 0
        result = future.result()
    assert result.status == "timeout"
    # supervisor and init (not the program's) plus at most max_processes tasks of the program
    assert 0 < running <= limits.max_processes + 2
    assert not sandbox_pids()


def test_huge_output_is_truncated_in_time():
    r = run_program("while True:\n    print('x' * 1000)", limits=TIGHT)
    # Python ignores SIGXFSZ: the write past RLIMIT_FSIZE fails with EFBIG and the program errors out.
    assert not r.ok and r.truncated and len(r.stdout) == TIGHT.max_output_bytes


def test_basic_mode_smoke():
    try:
        isolation_mode("basic")
    except SandboxError as e:
        pytest.skip(f"basic isolation is unavailable here: {e}")
    ok = run_program("print('hi')", limits=EASY, isolation="basic")
    connect = "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=1)"
    net = run_program(connect, limits=TIGHT, isolation="basic")
    bomb = run_program("import os\nwhile True:\n    os.fork()", limits=TIGHT, isolation="basic")
    assert (ok.stdout, net.status, bomb.status) == ("hi\n", "error", "error")
    assert not sandbox_pids()


@pytest.mark.parametrize("attack", FORGING, ids=[a.name for a in FORGING])
def test_forging_attacks_in_basic_mode(attack, host):
    """Without namespaces the judge still holds: as root under a uid of its own, and without root
    not dumpable (the attacks that would signal our own processes are skipped there)."""
    try:
        isolation_mode("basic")
    except SandboxError as e:
        pytest.skip(f"basic isolation is unavailable here: {e}")
    if attack.unsafe_with_shared_uid and os.geteuid() != 0:
        pytest.skip("basic isolation without root shares our uid and PID namespace: this would hit us")
    code, tests = fill(attack.code, host["values"]), fill(attack.tests, host["values"])
    rep = run_tests(code, tests, limits=TIGHT, isolation="basic", judge_code=attack.judge_code)
    assert rep.passed == 0 and rep.judged, rep
    assert_host_unharmed(host)


def test_parallel_timeouts_kill_every_tree():
    code = "import os, time\nfor _ in range(3):\n    os.fork()\ntime.sleep(100)"
    with Sandbox(max_workers=4, limits=TIGHT) as sb:
        results = sb.run_many([code] * 4)
    assert [r.status for r in results] == ["timeout"] * 4
    assert not sandbox_pids()


def test_parallel_judged_runs_keep_their_verdicts_apart():
    solutions = [
        f"import os, time\ndef f(x):\n    if x == {i}:\n        time.sleep(100)\n    return x"
        for i in range(4)
    ]
    tests = "\n".join(f"assert f({i}) == {i}" for i in range(4))
    with Sandbox(max_workers=4, limits=TIGHT) as sb:
        reports = sb.run_tests_many(solutions, [tests] * 4)
    assert [(r.passed, r.result.status, r.judged) for r in reports] == [
        (i, "timeout", True) for i in range(4)
    ]
    assert not sandbox_pids()


def test_host_unharmed_after_everything(host):
    assert_host_unharmed(host)
    os.kill(os.getpid(), 0)
    assert run_program("print(sum(range(10)))", limits=EASY).stdout == "45\n"
    with Sandbox(max_workers=2, limits=EASY) as sb:
        results = sb.run_many(["print(1)", "print(2)"])
    assert [r.stdout for r in results] == ["1\n", "2\n"]


def test_constant_true_asserts_do_not_cost_a_passing_solution():
    # CPython folds `assert True` away, so it cannot be instrumented; it checks nothing and is dropped
    tests = "def check(c):\n    assert True, 'debug'\n    assert c(1) == 1\ncheck(f)\n"
    rep = run_tests("def f(x): return x", tests)
    assert rep.passed == rep.total == 1
