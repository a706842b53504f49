"""Every option of a config type, from its fields' descriptions: ``--help``, ``r1rl config``, docs/options.md.

One description per field, written once in the config classes; these functions only walk them:

- :func:`options` — ``(key, type, default, description)`` for every leaf, sections flattened
  into dotted keys (``optim.lr``);
- :func:`markdown_table` — docs/options.md's option tables (a test fails when they drift);
- :func:`commented_yaml` — a complete default recipe with each option's description beside it;
- :func:`with_tables` — a page with its ``<!-- options:NAME -->`` tables regenerated
  (``python -m r1rl.config.docs docs/options.md``).
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from r1rl.config import DataConfig, DistillConfig, PPOSettings, TrainSettings
from r1rl.config.rewards import RewardModelSpec
from r1rl.tasks import TASKS
from r1rl.tasks.benchmark import BenchmarkOptions


@dataclass(frozen=True)
class Option:
    key: str
    type: str
    default: Any  # PydanticUndefined: required
    description: str

    @property
    def required(self) -> bool:
        return self.default is PydanticUndefined


def _section(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds as a section (``X``, or ``X | None``), or ``None`` for a leaf or a union."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _type_name(annotation: Any) -> str:
    """A short name: ``int``, ``float | null``, ``one of a|b``, ``list[str]``, the model's name."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return "one of " + "|".join(str(a) for a in args)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(_type_name(a) for a in args)}]"
    if annotation is type(None):
        return "null"
    name = getattr(annotation, "__name__", str(annotation))
    return name.removesuffix("Config") if name.endswith("TaskConfig") else name


def _default(field: Any) -> Any:
    if field.default_factory is not None:
        value = field.default_factory()
        return value.model_dump(mode="json") if isinstance(value, BaseModel) else value
    return field.default


FIRST = ("output_dir", "model_path", "teacher_path", "seed", "threads", "task", "data", "rewards")
LAST = ("report_to", "push_to_hub", "hub_repo_id", "hub_private")


def fields(cls: type[BaseModel]) -> list[tuple[str, Any]]:
    """``cls``'s fields, where to write and what to train on first, trackers and the Hub last."""
    items = list(cls.model_fields.items())
    rank = {n: i for i, n in enumerate(FIRST)}
    late = {n: i for i, n in enumerate(LAST)}
    return sorted(items, key=lambda kv: (kv[0] in late, rank.get(kv[0], len(rank)), late.get(kv[0], 0)))


def options(cls: type[BaseModel], prefix: str = "") -> Iterator[Option]:
    """Every option of ``cls``: sections recursed into (with their own fields' defaults)."""
    for name, field in fields(cls):
        key = f"{prefix}{name}"
        section = _section(field.annotation)
        default = _default(field)
        if section is not None and default is None:  # an optional section: show what setting it gives
            default = _defaults(section)
        if section is not None and isinstance(default, dict):
            if field.description:
                yield Option(key, "section", None, field.description)
            for sub in options(section, key + "."):
                # a stage may set different defaults for a shared section (PPO logs every step)
                value = _lookup(default, sub.key[len(key) + 1 :])
                yield Option(sub.key, sub.type, sub.default if value is _MISSING else value, sub.description)
            continue
        yield Option(key, _type_name(field.annotation), default, field.description or "")


_MISSING = object()


def _lookup(tree: dict[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _shown(value: Any) -> str:
    if value is PydanticUndefined:
        return "required"
    text = yaml.safe_dump(value, default_flow_style=True, width=1_000, sort_keys=False, allow_unicode=True)
    return text.strip().removesuffix("...").strip()


def markdown_table(cls: type[BaseModel], skip: tuple[str, ...] = ()) -> str:
    """The markdown table of ``cls``'s options (those under a ``skip`` prefix left out)."""
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for opt in options(cls):
        if opt.type == "section" or opt.key.startswith(skip):
            continue
        lines.append(f"| `{opt.key}` | `{_shown(opt.default)}` | {opt.description} |")
    return "\n".join(lines) + "\n"


def help_text(cls: type[BaseModel]) -> str:
    """``--help``'s option list: ``key (type, default) description`` per line."""
    lines = []
    for opt in options(cls):
        if opt.type == "section":
            lines.append(f"\n{opt.key}: {opt.description}")
            continue
        lines.append(f"  {opt.key} ({opt.type}, default {_shown(opt.default)}): {opt.description}")
    return "\n".join(lines).lstrip("\n")


def commented_yaml(cls: type[BaseModel], title: str = "") -> str:
    """A complete recipe of defaults, each option's description as a comment above it."""
    out = [f"# {title}" if title else "", f"# every option of {cls.__name__}, at its default", ""]
    out += _yaml_lines(cls, _defaults(cls), indent=0)
    return "\n".join(line for line in out if line is not None).lstrip("\n") + "\n"


def _first_line(doc: str | None) -> str:
    return doc.strip().splitlines()[0] if doc and doc.strip() else ""


def _defaults(cls: type[BaseModel]) -> dict[str, Any]:
    return {name: _default(f) for name, f in cls.model_fields.items()}


def _yaml_lines(cls: type[BaseModel], values: dict[str, Any], indent: int) -> list[str]:
    pad = "  " * indent
    lines: list[str] = []
    for name, field in fields(cls):
        value = values.get(name, _default(field))
        section = _section(field.annotation)
        if section is not None and value is None:
            value = _defaults(section)
        doc = field.description or _first_line(section.__doc__ if section else None)
        if doc:
            lines.append(f"{pad}# {doc}")
        if section is not None and isinstance(value, dict):
            lines.append(f"{pad}{name}:")
            lines += _yaml_lines(section, value, indent + 1)
        else:
            shown = "null  # required: set it" if value is PydanticUndefined else _shown(value)
            lines.append(f"{pad}{name}: {shown}")
    return lines


# The distill table: the stage's own options (the supervised sections, task and Hub keys have theirs)
DISTILL_SKIP = ("output_dir", "seed", "threads", "task", "data.", "steps", "batch_size", "optim.",
                "checkpoint.", "log.", "comm.", "rewards.", "report_to", "push_to_hub", "hub_")  # fmt: skip


def _readme_tables() -> dict[str, tuple[type[BaseModel], tuple[str, ...]]]:
    return {
        "data": (DataConfig, ()),
        **{name: (task.options, ("name",)) for name, task in TASKS.items()},
        "benchmark": (BenchmarkOptions, ("name",)),  # what gsm8k, mbpp and cuad share
        "reward_model": (RewardModelSpec, ("type",)),
        "train": (TrainSettings, ()),
        "ppo": (PPOSettings, ()),
        "distill": (DistillConfig, DISTILL_SKIP),
    }


MARKER = re.compile(r"(<!-- options:(\w+) -->\n)(.*?)(<!-- /options -->)", re.S)


def with_tables(readme: str) -> str:
    """``readme`` with every ``<!-- options:NAME -->`` … ``<!-- /options -->`` block regenerated."""
    tables = _readme_tables()

    def fill(m: re.Match[str]) -> str:
        cls, skip = tables[m.group(2)]
        return m.group(1) + markdown_table(cls, skip) + m.group(4)

    return MARKER.sub(fill, readme)


if __name__ == "__main__":  # python -m r1rl.config.docs docs/options.md: regenerate its option tables
    import sys
    from pathlib import Path

    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/options.md")
    target.write_text(with_tables(target.read_text()))
    print(f"[docs] option tables of {target} regenerated")
