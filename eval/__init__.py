"""Benchmarks and evaluation (imported as ``r1rl.eval``).

- :func:`evaluate` / :func:`write_results`: the harness — GLUE-style log-likelihood tasks and
  generation tasks (HumanEval, SciTLDR) from flat YAML in ``eval/tasks``, and the specs the
  training tasks register from their own files (GSM8K, MBPP, CUAD in ``r1rl/tasks/``), prompts as
  lm-evaluation-harness's where it has the task;
- :func:`evaluate_heldout`: greedy held-out accuracy and tier pass rates of a training task.
"""

from r1rl.eval.harness import evaluate, write_results
from r1rl.eval.heldout import evaluate_heldout

__all__ = ["evaluate", "evaluate_heldout", "write_results"]
