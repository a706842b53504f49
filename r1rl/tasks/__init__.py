"""Tasks: the records every stage trains and evaluates on, with the rewards that train on them.

:func:`build_task` turns a stage's ``task:`` (a built-in task by name) and ``data:`` (your own
dataset, whose rows then replace the task's, trained by the task's rewards unless the recipe
names others) into a :class:`~r1rl.tasks.base.Task`. See :mod:`r1rl.tasks.base` for the protocol.
"""

from __future__ import annotations

from typing import Any

from r1rl.registry import Registry
from r1rl.tasks.base import Record, Split, Task, reward_columns

__all__ = ["TASKS", "Record", "Split", "Task", "build_task", "reward_columns", "task_name"]

TASKS: Registry[Task] = Registry("task")


@TASKS.register("arithmetic")
def _arithmetic(cfg: Any, seed: int) -> Task:
    from r1rl.tasks.arithmetic import ArithmeticTask

    return ArithmeticTask(**cfg.model_dump(exclude={"name"}), seed=seed)


def _benchmark(cfg: Any, seed: int) -> Task:
    from r1rl.tasks.benchmark import build_benchmark_task

    return build_benchmark_task(cfg)


for _name in ("gsm8k", "mbpp", "cuad"):
    TASKS.register(_name)(_benchmark)


def task_name(task: Any, data: Any = None) -> str:
    """The name a stage's task goes by (in results, summaries and cards), without loading any row."""
    if data is not None and data.path is not None:
        from pathlib import Path

        return data.name or Path(str(data.path)).stem.replace(".", "_") or "data"
    return str(task.name)


def build_task(task: Any, data: Any = None, seed: int = 0) -> Task:
    """The task a stage runs: ``task`` (a task config) or, when ``data.path`` is set, that dataset."""
    named = TASKS.get(task.name, "task.name")(task, seed)
    if data is not None and data.path is not None:
        from r1rl.tasks.dataset import DatasetTask

        return DatasetTask(data, rewards=named.rewards, seed=seed)
    return named
