"""The task registry: a task type is one file under ``r1rl/tasks/`` that registers itself::

    @register_task("arithmetic", options=ArithmeticTaskConfig)
    def arithmetic(options: ArithmeticTaskConfig, seed: int) -> Task: ...

``options`` is the strict model of a recipe's ``task:`` section (its ``name`` field is the literal
task name); the configs' task union, the CLI and the eval harness read :data:`TASKS`. What a task
object holds is the :class:`~r1rl.records.Task` protocol (see ``docs/tasks.md``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from r1rl.records import NOT_COLUMNS, Record, Split, Task, columns_of, first, reward_columns  # noqa: F401
from r1rl.registry import Registry
from r1rl.strict import Strict


class TaskOptions(Protocol):
    """A task's options (the ``task:`` section): a strict model whose ``name`` is the task's."""

    @property
    def name(self) -> str: ...


Builder = Callable[[Any, int], Task]  # (the task's options, seed) -> the task


@dataclass(frozen=True)
class TaskType:
    """A registered task: the model of its ``task:`` options and the builder of the task."""

    name: str
    options: type[Strict]
    build: Builder

    @property
    def fn(self) -> Builder:  # what the registry names in a duplicate-name error
        return self.build


TASKS: Registry[TaskType] = Registry("task")


def register_task(name: str, options: type[Strict]) -> Callable[[Builder], TaskType]:
    """Register ``build(options, seed) -> Task`` as task ``name``, configured by ``options``."""

    def add(build: Builder) -> TaskType:
        return TASKS.add(name, TaskType(name, options, build))

    return add
