"""Throughput of the code-execution sandbox (``r1rl.rewards.sandbox``), in programs per second.

Two workloads, each with 1 and 2 workers (or ``--workers``):

- ``trivial``: ``print(1)``, which measures the fixed cost of one sandboxed execution (a fresh
  ``python -I -S`` process tree, namespaces, limits, seccomp, teardown);
- ``mbpp``: a small MBPP-style solution scored against three asserts with ``run_tests``;

and, for reference, ``bare``: ``print(1)`` in a plain ``python -I -S`` subprocess, no sandbox.

Each figure is the best of ``--repeats`` batches of ``--n`` programs, after a warm-up batch.
The machine's load average is printed too: other work on the same cores lowers the figures.

    python bench/sandbox_throughput.py [--n 40] [--repeats 3] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from r1rl.rewards.sandbox import Limits, Sandbox, isolation_mode, network_isolation

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


def best_rate(batch: Callable[[], list], n: int, repeats: int) -> float:
    batch()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        batch()
        best = min(best, time.perf_counter() - t0)
    return n / best


def trivial(sb: Sandbox, n: int) -> list:
    results = sb.run_many([TRIVIAL] * n)
    assert all(r.ok for r in results), results[0]
    return results


def mbpp(sb: Sandbox, n: int) -> list:
    reports = sb.run_tests_many([MBPP_SOLUTION] * n, [MBPP_TESTS] * n)
    assert all(r.fraction == 1.0 for r in reports), reports[0]
    return reports


def bare(sb: Sandbox, n: int) -> list:
    argv = [sys.executable, "-I", "-S", "-c", TRIVIAL]
    with ThreadPoolExecutor(sb.max_workers) as pool:
        return list(pool.map(lambda _: subprocess.run(argv, capture_output=True, check=True), range(n)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40, help="programs per batch")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()

    print(
        f"isolation={isolation_mode()} network={network_isolation()} python={platform.python_version()} "
        f"cpus={os.cpu_count()} load_avg={os.getloadavg()[0]:.2f} euid={os.geteuid()}"
    )
    print(f"{'workload':<10} {'workers':>7} {'programs/s':>11}")
    for workers in args.workers:
        with Sandbox(max_workers=workers, limits=Limits(timeout_s=30)) as sb:
            for workload in (trivial, mbpp, bare):
                rate = best_rate(functools.partial(workload, sb, args.n), args.n, args.repeats)
                print(f"{workload.__name__:<10} {workers:>7} {rate:>11.1f}", flush=True)
    print(f"load_avg after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
