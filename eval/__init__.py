"""Benchmarks and evaluation (imported as ``r1rl.eval``).

- :func:`evaluate` / :func:`write_results`: the harness — GLUE-style log-likelihood tasks and
  generation tasks (HumanEval, SciTLDR) from flat YAML in ``eval/tasks``, and the specs the
  training tasks register from their own files (GSM8K, MBPP, CUAD in ``r1rl/tasks/``), prompts as
  lm-evaluation-harness's where it has the task;
- :func:`evaluate_heldout`: greedy held-out accuracy and tier pass rates of a training task.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from r1rl.eval.harness import evaluate, write_results
    from r1rl.eval.heldout import evaluate_heldout

__all__ = ["evaluate", "evaluate_heldout", "write_results"]

# The harness loads torch and transformers; the registry (which every config reads through the tasks)
# must not, so these load on first use (PEP 562).
_HOME = {
    "evaluate": "r1rl.eval.harness",
    "write_results": "r1rl.eval.harness",
    "evaluate_heldout": "r1rl.eval.heldout",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module 'r1rl.eval' has no attribute {name!r}")
