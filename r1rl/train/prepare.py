"""What every stage does with its task: build it, build its reward hierarchy, encode its rows.

The functions take a task object and never its name (:mod:`r1rl.tasks.base`): the same code
serves the embedded arithmetic task, the built-in benchmark tasks and any ``data:`` section.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from r1rl.config import RewardsConfig, TierConfig
from r1rl.errors import UserError
from r1rl.models.encoding import encode_prompt, encode_sft, truncate
from r1rl.parallel.distributed import Parallel
from r1rl.records import Record, columns_of, first, is_conversation
from r1rl.rewards.hierarchy import RewardHierarchy
from r1rl.rundir import atomic_write_text
from r1rl.tasks import Task, build_task

Tools = list[dict[str, Any]] | None  # the tool schemas a multi-turn run's chat template lists

Example = tuple[list[int], list[int]]  # (input_ids, labels), both (S,)


def task_of(cfg: Any) -> Task:
    """The stage's task: ``cfg.task`` by name, or ``cfg.data``'s dataset when it names a path."""
    return build_task(cfg.task, getattr(cfg, "data", None), cfg.seed)


def describe(task: Task) -> str:
    """How error messages name where a task's rows come from."""
    path = getattr(getattr(task, "cfg", None), "path", None)  # a data: section's file
    return f"the data ({path})" if path else f"task {task.name!r}"


def resolved_config(cfg: Any, task: Task) -> Any:
    """The config as its stage writes it to ``config.yaml``: the reward tiers filled in from ``task``
    when the stage has rewards; with ``data.path``, ``task: null`` and ``data.name`` set — the data is
    the task (trained by the tiers filled in here), named as results and cards name it."""
    update: dict[str, Any] = {}
    if hasattr(cfg, "rewards"):
        update["rewards"] = resolved_rewards(cfg.rewards, task)
    data = getattr(cfg, "data", None)
    if data is not None and data.path is not None:
        update.update(task=None, data=data.model_copy(update={"name": task.name}))
    return cfg.model_copy(update=update)


def resolved_rewards(rewards: RewardsConfig | None, task: Task) -> RewardsConfig:
    """``rewards`` with its tiers filled in from the task when the recipe names none."""
    rewards = rewards or RewardsConfig()
    tiers = rewards.tiers or [TierConfig(**t) for t in task.rewards]
    return rewards.model_copy(update={"tiers": tiers})


def write_task_info(run_dir: Path, task: Task, rewards: RewardsConfig | None = None) -> None:
    """``task.json`` beside ``config.yaml``: the task's name and notes (model cards repeat the notes),
    the data file's name for a ``data:`` section, and the reward code (:func:`keep_reward_code`)."""
    if run_dir.is_dir():
        info: dict[str, Any] = {"name": task.name, "notes": list(task.notes)}
        path = getattr(getattr(task, "cfg", None), "path", None)
        if path is not None:  # the file's name, not where it lay on this machine (or a Hub id as it is)
            info["data"] = Path(path).name if Path(path).expanduser().exists() else str(path)
        code = keep_reward_code(run_dir, rewards)
        if code:
            info["reward_code"] = code
        atomic_write_text(run_dir / "task.json", json.dumps(info, indent=2) + "\n")


def keep_reward_code(run_dir: Path, rewards: RewardsConfig | None) -> dict[str, str]:
    """Copy each ``path/to/file.py:function`` reward's file into ``<run_dir>/rewards/`` — the code the
    run trained with, which ``r1rl push`` uploads beside the model — and return ``{file as the config
    names it: its copy, relative to run_dir}``."""
    specs = [t.reward for t in (rewards.tiers or []) if isinstance(t.reward, str)] if rewards else []
    kept: dict[str, str] = {}
    for spec in specs:
        target = spec.rpartition(":")[0]
        source = Path(target).expanduser()
        if not target.endswith(".py") or target in kept or not source.is_file():
            continue
        name, n = source.name, 1
        while f"rewards/{name}" in kept.values():  # two files of one name: the second is <stem>_2.py
            n += 1
            name = f"{source.stem}_{n}.py"
        (run_dir / "rewards").mkdir(exist_ok=True)
        shutil.copyfile(source, run_dir / "rewards" / name)
        kept[target] = f"rewards/{name}"
    return kept


def hierarchy_of(
    rewards: RewardsConfig | None,
    task: Task,
    splits: Sequence[str] = ("train", "test"),
    device: str = "cpu",
) -> RewardHierarchy:
    """The hierarchy ``rewards`` describes (its tiers default to the task's), checked against the columns.

    A reward that needs a column the rows lack is refused here, before the policy is loaded; a
    reward-model tier is loaded onto ``device`` (the policy's).
    """
    hierarchy = RewardHierarchy.from_config(resolved_rewards(rewards, task), device)
    for split in splits:
        have = columns_of(task.records(split))  # type: ignore[arg-type]
        hierarchy.check_columns(
            have, f"{describe(task)} ({'training' if split == 'train' else 'held-out'} rows)"
        )
    return hierarchy


def _map(records: Any, fn: Any, par: Parallel, desc: str, num_proc: int | None, **kwargs: Any) -> Any:
    """``fn(record, **kwargs) -> dict`` over ``records``: ``datasets.map`` (cached; the main process
    first under a launcher) for a dataset, a loop for a list."""
    if hasattr(records, "map"):
        with par.main_process_first():
            return records.map(fn, fn_kwargs=kwargs, num_proc=num_proc, desc=desc)
    return [{**r, **fn(r, **kwargs)} for r in records]


def _column(rows: Any, name: str) -> list[Any]:
    """One column of a ``datasets.Dataset`` or of a list of records, as a list."""
    return list(rows[name]) if hasattr(rows, "column_names") else [r[name] for r in rows]


def _prompt_length(record: Record, tokenizer: Any, system_prompt: str | None, tools: Tools) -> dict[str, int]:
    prompt = record["prompt"]
    if tools and not is_conversation(prompt):  # an episode's prompt: one user message
        prompt = [{"role": "user", "content": prompt}]
    return {"prompt_tokens": len(encode_prompt(tokenizer, prompt, system_prompt, tools))}


def drop_long_prompts(
    records: Any, tokenizer: Any, task: Task, stage: str, par: Parallel | None = None, tools: Tools = None
) -> Any:
    """``records`` less those whose prompt exceeds the task's ``max_prompt_length`` tokens (counted);
    ``tools``: the schemas a multi-turn run lists in its prompts."""
    limit = getattr(task, "max_prompt_length", None)
    if limit is None:
        return records
    par = par or Parallel()
    system = getattr(task, "system_prompt", None)
    sized = _map(records, _prompt_length, par, "prompt lengths", getattr(task, "num_proc", None),
                 tokenizer=tokenizer, system_prompt=system, tools=tools)  # fmt: skip
    keep = [i for i, n in enumerate(_column(sized, "prompt_tokens")) if n <= limit]
    dropped = len(records) - len(keep)
    if dropped and par.is_main:
        print(f"[{stage}] dropped {dropped} of {len(records)} rows with prompts over {limit} tokens")
    if hasattr(records, "select"):
        return records.select(keep)
    return [records[i] for i in keep]


def _encode_row(
    record: Record, tokenizer: Any, system_prompt: str | None, max_length: int | None, tools: Tools
) -> dict:
    ids, labels = encode_sft(tokenizer, record, system_prompt, tools=tools)
    ids, labels, cut = truncate(ids, labels, max_length)
    return {"input_ids": ids, "labels": labels, "truncated": cut}


def sft_examples(
    task: Task, tokenizer: Any, n: int | None, stage: str = "sft", par: Parallel | None = None,
    tools: Tools = None,
) -> list[Example]:  # fmt: skip
    """Token ids and labels of the first ``n`` training rows (long prompts dropped, long rows truncated).

    Fewer than ``n`` rows is a one-line :class:`UserError`. ``tools``: schemas the chat template lists.
    """
    par = par or Parallel()
    examples = encode_examples(first(task.records("train"), n), tokenizer, task, stage, par, tools)
    if n is not None and len(examples) < n:
        raise UserError(
            f"num_examples={n} but {task.name!r} has {len(examples)} training rows; ask for fewer"
        )
    return examples


def encode_examples(
    records: Any, tokenizer: Any, task: Task, stage: str = "sft", par: Parallel | None = None,
    tools: Tools = None,
) -> list[Example]:  # fmt: skip
    """Token ids and labels of any ``{"prompt", "completion"}`` records (the task's, or a teacher's
    traces), encoded as the task encodes its own: long prompts dropped, long rows truncated."""
    par = par or Parallel()
    records = drop_long_prompts(records, tokenizer, task, stage, par, tools)
    max_length = getattr(task, "max_length", None)
    encoded = _map(
        records, _encode_row, par, "tokenize", getattr(task, "num_proc", None), tokenizer=tokenizer,
        system_prompt=getattr(task, "system_prompt", None), max_length=max_length, tools=tools,
    )  # fmt: skip
    ids, labels = _column(encoded, "input_ids"), _column(encoded, "labels")
    cut = sum(_column(encoded, "truncated"))
    if cut and par.is_main:
        print(f"[{stage}] truncated {cut} of {len(ids)} rows to max_length={max_length} tokens")
    return [(list(i), list(lab)) for i, lab in zip(ids, labels)]
