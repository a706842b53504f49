"""Tasks: the records every stage trains and evaluates on, with the rewards that train on them.

A task is one file in this folder that registers itself with :func:`~r1rl.tasks.base.register_task`
(its options, records, reward suite and scorer together; see ``docs/tasks.md``). Adding a task is
adding a file here and its import below; an installed package adds one through the ``r1rl.tasks``
entry-point group. :func:`build_task` turns a stage's ``task:`` (a task by name) and ``data:`` (your
own dataset, whose rows then replace the task's, trained by the task's rewards unless the recipe
names others) into a :class:`~r1rl.records.Task`.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import cast

from r1rl.errors import UserError
from r1rl.tasks import arithmetic, cuad, gsm8k, mbpp  # noqa: F401  (importing a task registers it)
from r1rl.tasks.base import TASKS, Record, Split, Task, TaskOptions, TaskType, register_task, reward_columns
from r1rl.tasks.data import DataConfig, DatasetTask, data_name

__all__ = [
    "DEFAULT_TASK", "TASKS", "Record", "Split", "Task", "TaskType", "build_task", "register_task",
    "reward_columns", "task_name",
]  # fmt: skip

DEFAULT_TASK = "arithmetic"  # the task of a recipe that names none

for _entry in entry_points(group="r1rl.tasks"):  # installed task plug-ins (the built-in ones are above)
    if not _entry.value.startswith("r1rl."):
        try:
            _entry.load()
        except ImportError as e:
            raise UserError(f"task plug-in {_entry.name!r} ({_entry.value}) does not import: {e}") from None


def task_name(task: TaskOptions | None, data: DataConfig | None = None) -> str:
    """The name a stage's task goes by (in results, summaries and cards), without loading any row."""
    if data is not None and data.path is not None:
        return data_name(data)
    return str(task.name) if task is not None else DEFAULT_TASK


def build_task(task: TaskOptions | None, data: DataConfig | None = None, seed: int = 0) -> Task:
    """The task a stage runs: ``task`` (a task's options) or, when ``data.path`` is set, that dataset,
    trained by ``task``'s rewards (``None``: the default task's) unless the recipe names others."""
    task = task if task is not None else cast(TaskOptions, TASKS.get(DEFAULT_TASK).options())
    named = TASKS.get(task.name, "task.name").build(task, seed)
    if data is not None and data.path is not None:
        return DatasetTask(data, rewards=named.rewards, seed=seed)
    return named
