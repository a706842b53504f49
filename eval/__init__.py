"""Benchmarks and evaluation (imported as ``r1rl.eval``).

- :func:`evaluate` / :func:`write_results`: the harness — GLUE-style log-likelihood tasks and
  generation tasks (GSM8K, HumanEval, MBPP, SciTLDR, CUAD) from flat YAML in ``eval/tasks``,
  prompts as lm-evaluation-harness's where it has the task;
- :func:`evaluate_heldout`: greedy held-out accuracy and tier pass rates of a training task.
"""

from r1rl.eval.harness import evaluate, write_results
from r1rl.eval.heldout import evaluate_heldout

__all__ = ["evaluate", "evaluate_heldout", "write_results"]
