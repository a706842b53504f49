"""Benchmarks and evaluation (imported as ``r1rl.eval``).

- :func:`evaluate` / :func:`write_results`: the harness — GLUE-style log-likelihood tasks and
  generation tasks (GSM8K, HumanEval, MBPP, SciTLDR, CUAD) from flat YAML in ``eval/tasks``,
  prompts as lm-evaluation-harness's where it has the task;
- :func:`evaluate_arithmetic`: greedy held-out accuracy and tier pass rates on the embedded task.
"""

from r1rl.eval.embedded import evaluate_arithmetic
from r1rl.eval.harness import evaluate, write_results

__all__ = ["evaluate", "evaluate_arithmetic", "write_results"]
