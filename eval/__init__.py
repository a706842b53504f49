"""Benchmarks and evaluation (imported as ``r1rl.eval``)."""

from r1rl.eval.embedded import evaluate_arithmetic

__all__ = ["evaluate_arithmetic"]
