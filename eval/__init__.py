"""Benchmarks and evaluation (imported as ``r1rl.eval``).

- :func:`evaluate` / :func:`write_results`: the log-likelihood harness (GLUE-style tasks from
  flat YAML in ``eval/tasks``, prompts as lm-evaluation-harness's);
- :func:`evaluate_arithmetic`: greedy held-out accuracy and tier pass rates on the embedded task.
"""

from r1rl.eval.embedded import evaluate_arithmetic
from r1rl.eval.harness import evaluate, write_results

__all__ = ["evaluate", "evaluate_arithmetic", "write_results"]
