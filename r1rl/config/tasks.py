"""What a stage trains on: a registered task by name (``r1rl/tasks/``), or your own ``data:`` section.

The task union is read from the task registry: each task file's options model is one member,
told apart by its ``name``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, TypeAlias, Union, cast

from pydantic import BeforeValidator, Field

from r1rl.tasks import DEFAULT_TASK, TASKS
from r1rl.tasks.base import TaskOptions
from r1rl.tasks.data import DataConfig


def _task_by_name(value: Any) -> Any:
    """``task: gsm8k`` means ``task: {name: gsm8k}``; a mapping without a name is the default task."""
    if isinstance(value, str):
        return {"name": value}
    if isinstance(value, dict) and "name" not in value:
        return {"name": DEFAULT_TASK, **value}
    return value


def default_task() -> TaskOptions:
    """The options of the default task, all at their defaults."""
    return cast(TaskOptions, TASKS.get(DEFAULT_TASK).options())  # every options model has its name


TASK_OPTIONS = tuple(task.options for _, task in TASKS.items())
if TYPE_CHECKING:  # the members are known once the tasks have registered, not to a type checker
    TaskConfig: TypeAlias = TaskOptions
else:
    TaskConfig = Annotated[
        Union[TASK_OPTIONS],  # noqa: UP007  (a union built from the registry)
        Field(discriminator="name"),
        BeforeValidator(_task_by_name),
    ]


class PretrainDataConfig(DataConfig):
    """The pretraining corpus: the task's documents (or ``data.path``'s rows), or ``r1rl.data`` sources."""

    num_problems: int = Field(60_000, ge=10, description="documents in the corpus (the task's first N)")
    seq_len: int = Field(128, ge=16, description="packed sequence length")
    formatted_fraction: float = Field(
        0.0, ge=0, le=1, description="share of documents written in the answer format rather than plain steps"
    )
    sources: list[dict[str, Any]] = Field(
        default_factory=list,
        description="r1rl.data sources ({type: file|hf|arithmetic|stdlib, ...}); empty = the task's problems",
    )
    weights: list[float] | None = Field(None, description="mixture weight per source")
    temperature: float = Field(1.0, gt=0, description="mixture temperature: p_i ∝ w_i^(1/T)")
    filters: list[dict[str, Any]] = Field(
        default_factory=list, description="quality filters ({type: length|symbol_ratio|repetition|...})"
    )
    dedup: dict[str, Any] | None = Field(None, description="exact/near dedup options, e.g. {threshold: 0.8}")
    val_fraction: float = Field(0.0, ge=0, lt=1, description="held-out share, scored as val/loss at the end")
