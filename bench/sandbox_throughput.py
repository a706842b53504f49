"""Throughput of the code-execution sandbox (``r1rl.rewards.sandbox``), in programs per second.

Three workloads, each with 1 and 2 workers (or ``--workers``):

- ``trivial``: ``print(1)``, which measures the fixed cost of one sandboxed execution (a fresh
  ``python -I -S`` process tree, namespaces, limits, seccomp, teardown);
- ``mbpp``: a small MBPP-style solution scored against three asserts with ``run_tests``;
- ``humaneval``: a HumanEval-style ``check(candidate)`` of seven asserts, one call each;

and, for reference, ``bare``: ``print(1)`` in a plain ``python -I -S`` subprocess, no sandbox.

With ``--baseline PATH`` (a checkout of another revision, e.g. ``git worktree add /tmp/base
df6e730``), the same workloads run on that revision's sandbox too, interleaved with this one
round by round (the order alternating), so that load from other work on the machine falls on
both alike; the table gives medians over the rounds and this revision's rate as a fraction of
the baseline's. The machine's load average is printed before and after: other work on the same
cores lowers the figures.

    python bench/sandbox_throughput.py [--baseline PATH] [--n 40] [--rounds 5] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

import r1rl.rewards.sandbox as current

TRIVIAL = "print(1)\n"
MBPP_SOLUTION = """
def remove_odd(l):
    return [x for x in l if x % 2 == 0]
"""
MBPP_TESTS = """
assert remove_odd([1, 2, 3]) == [2]
assert remove_odd([2, 4, 6]) == [2, 4, 6]
assert remove_odd([10, 20, 3]) == [10, 20]
"""
HUMANEVAL_SOLUTION = """
def has_close_elements(numbers, threshold):
    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])
"""
HUMANEVAL_TESTS = """
def check(candidate):
    assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3) == True
    assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.05) == False
    assert candidate([1.0, 2.0, 5.9, 4.0, 5.0], 0.95) == True
    assert candidate([1.0, 2.0, 5.9, 4.0, 5.0], 0.8) == False
    assert candidate([1.0, 2.0, 3.0, 4.0, 5.0, 2.0], 0.1) == True
    assert candidate([1.1, 2.2, 3.1, 4.1, 5.1], 1.0) == True
    assert candidate([1.1, 2.2, 3.1, 4.1, 5.1], 0.5) == False

check(has_close_elements)
"""


def trivial(sb, n: int) -> None:
    results = sb.run_many([TRIVIAL] * n)
    assert all(r.ok for r in results), results[0]


def mbpp(sb, n: int) -> None:
    reports = sb.run_tests_many([MBPP_SOLUTION] * n, [MBPP_TESTS] * n)
    assert all(r.fraction == 1.0 for r in reports), reports[0]


def humaneval(sb, n: int) -> None:
    reports = sb.run_tests_many([HUMANEVAL_SOLUTION] * n, [HUMANEVAL_TESTS] * n)
    assert all(r.fraction == 1.0 for r in reports), reports[0]


def bare(workers: int, n: int) -> None:
    argv = [sys.executable, "-I", "-S", "-c", TRIVIAL]
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda _: subprocess.run(argv, capture_output=True, check=True), range(n)))


WORKLOADS = (trivial, mbpp, humaneval)


def load_sandbox(checkout: Path) -> ModuleType:
    """The sandbox of another checkout, loaded under a name of its own (a module or a package)."""
    single, package = checkout / "rewards" / "sandbox.py", checkout / "rewards" / "sandbox" / "__init__.py"
    name = "r1rl_baseline_sandbox"
    if single.is_file():
        spec = importlib.util.spec_from_file_location(name, single)
    elif package.is_file():
        spec = importlib.util.spec_from_file_location(
            name, package, submodule_search_locations=[str(package.parent)]
        )
    else:
        raise SystemExit(f"--baseline: no rewards/sandbox.py or rewards/sandbox/ under {checkout}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


def rate(workload, target, n: int) -> float:
    """Programs per second of one batch of ``n``."""
    t0 = time.perf_counter()
    workload(target, n)
    return n / (time.perf_counter() - t0)


def measure(
    impls: dict[str, ModuleType], workers: list[int], n: int, rounds: int
) -> dict[tuple, list[float]]:
    """Rates per (workload, workers, implementation), round by round, the order alternating."""
    pools = {
        (label, w): mod.Sandbox(max_workers=w, limits=mod.Limits(timeout_s=30))
        for label, mod in impls.items()
        for w in workers
    }
    rates: dict[tuple, list[float]] = {}
    try:
        for pool in pools.values():  # warm-up: the mode probe, the child code, the caches
            for workload in WORKLOADS:
                workload(pool, 4)
        for r in range(rounds):
            order = list(impls) if r % 2 == 0 else list(reversed(impls))
            for w in workers:
                for workload in WORKLOADS:
                    for label in order:
                        value = rate(workload, pools[label, w], n)
                        rates.setdefault((workload.__name__, w, label), []).append(value)
                rates.setdefault(("bare", w, "-"), []).append(rate(bare, w, n))
            print(
                f"round {r + 1}/{rounds} done, load_avg={os.getloadavg()[0]:.2f}", file=sys.stderr, flush=True
            )
    finally:
        for pool in pools.values():
            pool.close()
    return rates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", type=Path, help="a checkout of the revision to compare against")
    ap.add_argument("--n", type=int, default=40, help="programs per batch")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (the table gives medians)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()

    impls = {"current": current}
    if args.baseline is not None:
        impls["baseline"] = load_sandbox(args.baseline.resolve())
    print(
        f"isolation={current.isolation_mode()} network={current.network_isolation()} "
        f"python={platform.python_version()} cpus={os.cpu_count()} euid={os.geteuid()} "
        f"n={args.n} rounds={args.rounds} load_avg={os.getloadavg()[0]:.2f}"
    )
    rates = measure(impls, args.workers, args.n, args.rounds)
    header = f"{'workload':<10} {'workers':>7} {'current/s':>10}"
    if "baseline" in impls:
        header += f" {'baseline/s':>11} {'ratio':>6}"
    print(header)
    for w in args.workers:
        for workload in [*(f.__name__ for f in WORKLOADS), "bare"]:
            label = "-" if workload == "bare" else "current"
            now = statistics.median(rates[workload, w, label])
            line = f"{workload:<10} {w:>7} {now:>10.1f}"
            if "baseline" in impls and workload != "bare":
                before = statistics.median(rates[workload, w, "baseline"])
                line += f" {before:>11.1f} {now / before:>6.2f}"
            print(line)
    print(f"load_avg after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
