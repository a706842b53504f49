"""A task on your own data: a ``data:`` section loaded with ``datasets``.

::

    data:
      path: my_prompts.jsonl     # a local json/jsonl/parquet/csv file or folder, or a Hub dataset id
      prompt_column: question    # default "prompt"; or messages_column for chat data
      eval_fraction: 0.1         # or eval_split: test

Loading: a file by its suffix (``json``/``jsonl``, ``parquet``, ``csv``, ``tsv``), a folder by
``datasets``' own inference (``train.jsonl`` and ``test.jsonl`` become two splits), anything else
as a Hub dataset (``subset``, ``split``, ``data_files``). Columns arrive as written: a text format
(CSV, TSV) keeps every value a string — ``00042`` stays ``"00042"``, ``NA`` and an empty cell stay
``"NA"`` and ``""`` — where pandas would guess an integer, a float or a missing value per column;
JSON Lines and Parquet keep their own types. ``column_types`` declares the types a reward
needs (``{answer: int}``), in any format. Then, in this order: the columns are
renamed into the record layout (``prompt_column`` → ``prompt``, ``completion_column`` →
``completion``, ``answer_column`` → ``answer``, ``columns``' reward names), ``prompt_template``
renders the prompt from the row (Jinja, as the eval tasks' templates), the held-out split is
``eval_split`` or a seeded ``eval_fraction`` (seed ``split_seed``, the same for every stage and
run), rows are shuffled if asked (seeded) and cut to ``limit``/``eval_limit``. Every other column
reaches the rewards. ``datasets`` is imported only here: a machine without it can still train the
built-in tasks.

With ``messages_column`` (one conversation per row) the prompt is every message before the last
assistant reply and the completion is that reply; SFT trains on every assistant turn. Pretraining
renders a conversation through the from-scratch tokenizer's chat template
(:data:`r1rl.models.chat.CHAT_TEMPLATE`), as SFT and generation will show it to the model.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from r1rl.errors import UserError, did_you_mean
from r1rl.eval.registry import template_fields, template_renderer  # the eval tasks' Jinja environment
from r1rl.models.chat import render_chat
from r1rl.models.encoding import with_system
from r1rl.records import Split, check_prompt, is_conversation
from r1rl.strict import Strict

SUFFIXES = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv", ".tsv": "csv"}
TEXT_SUFFIXES = {".csv": ",", ".tsv": "\t"}  # formats whose values are all text: their separator
TYPES = {"str": "string", "int": "int64", "float": "float64", "bool": "bool"}  # column_types -> a Value


class DataConfig(Strict):
    """Your own dataset, loaded with ``datasets``: a local file or folder, or a Hub dataset.

    Every column other than the prompt (and the SFT completion) reaches every reward function as
    a keyword argument, as in TRL.
    """

    path: str | None = Field(
        None,
        description="a local json/jsonl/parquet/csv/tsv file, a folder (train.jsonl, test.jsonl: 2 splits), "
        "or a Hub dataset id",
    )
    subset: str | None = Field(None, description="the Hub dataset's configuration (load_dataset's name)")
    split: str = Field("train", description="the split trained on")
    data_files: str | list[str] | dict[str, str | list[str]] | None = Field(
        None, description="files per split, as load_dataset's data_files"
    )
    name: str | None = Field(
        None, description="the task's name in results and cards (default: the file's stem)"
    )
    prompt_column: str = Field(
        "prompt", description="the prompt: text, or a list of {role, content} chat messages"
    )
    completion_column: str = Field(
        "completion", description="SFT: the target, text or messages (loss on it and the EOS only)"
    )
    messages_column: str | None = Field(
        None,
        description="chat data: one conversation per row; the prompt is every turn before the last reply",
    )
    answer_column: str | None = Field(None, description="a column the rewards read as 'answer'")
    column_types: dict[str, Literal["str", "int", "float", "bool"]] = Field(
        default_factory=dict,
        description="cast these columns, e.g. {answer: int}; else CSV/TSV values stay strings, as written",
    )
    columns: dict[str, str] = Field(
        default_factory=dict, description="reward column -> dataset column, e.g. {answer: target}"
    )
    prompt_template: str | None = Field(
        None,
        description="Jinja template over the row's columns: the prompt, e.g. 'Q: {{question}}\\nA:'",
    )
    system_prompt: str | None = Field(None, description="chat data: a system message put before every prompt")
    stop: list[str] = Field(
        default_factory=list,
        description="stop sequences that end a completion (the text is cut before them for the rewards)",
    )
    eval_split: str | None = Field(None, description="the held-out split; null = a seeded eval_fraction")
    eval_fraction: float = Field(0.1, gt=0, lt=1, description="held-out share of split, when no eval_split")
    split_seed: int = Field(
        0, ge=0, description="seed of that split; fixed, so every stage and run holds out the same rows"
    )
    shuffle: bool = Field(False, description="shuffle the training rows (the stage's seed) before limit")
    limit: int | None = Field(None, ge=1, description="train on the first N rows")
    eval_limit: int | None = Field(None, ge=1, description="evaluate on the first N held-out rows")
    max_prompt_length: int | None = Field(
        None, ge=1, description="drop rows whose prompt is longer than this many tokens (counted)"
    )
    max_length: int | None = Field(
        None, ge=2, description="SFT: truncate prompt + completion to this many tokens"
    )
    num_proc: int | None = Field(
        None,
        ge=1,
        description="processes for datasets.map; tokens are cached (the main process first under a launcher)",
    )


def data_name(cfg: DataConfig) -> str:
    """The name a ``data:`` section's task goes by: ``name``, else the file's stem."""
    return cfg.name or Path(str(cfg.path)).stem.replace(".", "_") or "data"


class DatasetTask:
    """Records from ``cfg`` (a :class:`DataConfig`), trained with ``rewards`` (tier mappings)."""

    def __init__(self, cfg: DataConfig, rewards: list[dict[str, Any]], seed: int = 0) -> None:
        self.cfg = cfg
        self.rewards = rewards
        self.stop = tuple(cfg.stop)
        self.notes: tuple[str, ...] = ()
        self.system_prompt = cfg.system_prompt
        self.max_prompt_length, self.max_length, self.num_proc = (
            cfg.max_prompt_length,
            cfg.max_length,
            cfg.num_proc,
        )
        self.name = data_name(cfg)
        self._seed = seed
        self._splits: dict[str, Any] | None = None

    def records(self, split: Split) -> Any:
        """The training rows or the held-out rows, as a ``datasets.Dataset`` of records."""
        if self._splits is None:
            self._splits = load_splits(self.cfg, self._seed)
        return self._splits["train" if split == "train" else "test"]

    def corpus(self, n: int, seed: int, formatted_fraction: float = 1.0) -> list[str]:
        """Pretraining documents: the first ``n`` training rows, text as prompt + completion, a
        conversation (with the system prompt) rendered through the chat template of the tokenizer
        pretraining trains, so its turn markers and tool-call markup are trained too."""
        docs = []
        for rec in self.records("train").select(range(min(n, len(self.records("train"))))):
            prompt, completion = rec["prompt"], rec.get("completion") or ""
            if is_conversation(prompt):
                reply = [{"role": "assistant", "content": completion}] if completion else []
                turns = list(prompt) + (list(completion) if is_conversation(completion) else reply)
                docs.append(render_chat(with_system(turns, self.system_prompt)))
            else:
                docs.append(str(prompt) + str(completion))
        return docs


def _datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise UserError("data.path needs the datasets package: pip install datasets") from None
    return datasets


def load_raw(cfg: DataConfig) -> Any:
    """The ``datasets.DatasetDict`` ``data.path`` names; every failure is a one-line :class:`UserError`."""
    datasets = _datasets()
    path = str(cfg.path)
    local = Path(path).expanduser()
    kwargs: dict[str, Any] = {}
    if cfg.data_files is not None:
        kwargs["data_files"] = cfg.data_files
    if local.is_file():
        builder = SUFFIXES.get(local.suffix.lower())
        if builder is None:
            raise UserError(
                f"data.path: {local}: unknown file type {local.suffix!r} (use {', '.join(SUFFIXES)})"
            )
        check_file(local)
        kwargs.update(_as_text(local, TEXT_SUFFIXES.get(local.suffix.lower())))
        args: tuple[Any, ...] = (builder,)
        kwargs.setdefault("data_files", {"train": str(local)})  # one file: one split, "train"
    elif local.is_dir():
        files = [p for p in sorted(local.rglob("*")) if p.suffix.lower() in SUFFIXES]
        if files and all(p.suffix.lower() == ".csv" for p in files):  # datasets reads the folder as CSV
            kwargs.update(_as_text(files[0], ","))
        args = (str(local),)
    elif path.startswith((".", "/", "~")) or Path(path).suffix.lower() in SUFFIXES or path.count("/") != 1:
        raise UserError(f"data.path: no such file or folder: {path}")
    else:
        args = (path, cfg.subset)
    try:
        dd = datasets.load_dataset(*args, **kwargs)
    except Exception as e:  # a dataset that cannot be read is bad input: say which and why, on one line
        first = " ".join(str(e).split())[:300] or type(e).__name__
        raise UserError(f"data.path: cannot load {path} ({type(e).__name__}: {first})") from None
    return _cast(dd, cfg.column_types, path)


def _as_text(path: Path, sep: str | None) -> dict[str, Any]:
    """``load_dataset`` options that read a CSV/TSV file's values as the strings they are (pandas would
    turn ``00042`` into 42, a column of numbers and text into floats or NaN, ``NA`` into None)."""
    if sep is None:
        return {}
    datasets = _datasets()
    with path.open(newline="", errors="replace") as f:
        header = next(csv.reader(f, delimiter=sep), [])
    features = datasets.Features({name: datasets.Value("string") for name in header})
    return {"sep": sep, "features": features, "keep_default_na": False}


def _cast(dd: Any, types: Mapping[str, str], where: str) -> Any:
    """``dd`` with the columns ``column_types`` names cast; one line naming a column that is absent or
    whose values do not convert."""
    datasets = _datasets()
    for name, kind in types.items():
        have = next(iter(dd.values())).column_names
        if name not in have:
            raise UserError(f"data.column_types: {where} has no column {name!r}{did_you_mean(name, have)}")
        try:
            dd = dd.cast_column(name, datasets.Value(TYPES[kind]))
        except (ValueError, TypeError) as e:  # pyarrow's ArrowInvalid is a ValueError
            first = " ".join(str(e).split())[:200]
            raise UserError(
                f"data.column_types: column {name!r} of {where} is not all {kind} ({first})"
            ) from None
    return dd


def check_file(path: Path) -> None:
    """An empty file, or a JSON Lines file with a line that is not JSON, is a one-line error naming the
    file and the line (``datasets`` would say ``StopIteration`` or ``DatasetGenerationError``)."""
    if path.stat().st_size == 0 or not path.read_text(errors="replace").strip():
        raise UserError(f"data.path: {path} is empty")
    if path.suffix.lower() != ".jsonl":
        return
    with path.open(errors="replace") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                json.loads(line)
            except ValueError as e:
                raise UserError(f"data.path: {path} line {n} is not valid JSON ({e})") from None


def load_splits(cfg: DataConfig, seed: int = 0) -> dict[str, Any]:
    """``{"train": Dataset, "test": Dataset}`` of records, checked (see the module docstring)."""
    dd = load_raw(cfg)
    where = str(cfg.path)
    train = _split(dd, cfg.split, where)
    if cfg.eval_split is not None:
        test = _split(dd, cfg.eval_split, where)
        train, test = _to_records(train, cfg, where), _to_records(test, cfg, where)
    else:
        train = _to_records(train, cfg, where)
        n_test = round(len(train) * cfg.eval_fraction)
        if n_test == 0 or n_test == len(train):
            raise UserError(
                f"data.eval_fraction={cfg.eval_fraction} of {len(train)} rows of {where} leaves "
                f"{'no held-out' if n_test == 0 else 'no training'} rows; give more rows or an eval_split"
            )
        parts = train.train_test_split(test_size=n_test, seed=cfg.split_seed, shuffle=True)
        train, test = parts["train"], parts["test"]
    if cfg.shuffle:
        train = train.shuffle(seed=seed)
    if cfg.limit is not None:
        train = train.select(range(min(cfg.limit, len(train))))
    if cfg.eval_limit is not None:
        test = test.select(range(min(cfg.eval_limit, len(test))))
    for name, part in (("training", train), ("held-out", test)):
        if len(part) == 0:
            raise UserError(f"data: the {name} split of {where} is empty")
    return {"train": train, "test": test}


def _split(dd: Any, name: str, where: str) -> Any:
    if name not in dd:
        raise UserError(f"data: {where} has no split {name!r}{did_you_mean(name, list(dd))}")
    ds = dd[name]
    if len(ds) == 0:
        raise UserError(f"data: split {name!r} of {where} is empty")
    return ds


def _to_records(ds: Any, cfg: DataConfig, where: str) -> Any:
    """Rename columns into the record layout, render templates, check every prompt."""
    have = list(ds.column_names)

    def need(column: str, key: str) -> None:
        if column not in have:
            raise UserError(f"data.{key}: {where} has no column {column!r}{did_you_mean(column, have)}")

    renames: dict[str, str] = {}
    for new, old in cfg.columns.items():
        need(old, f"columns.{new}")
        renames[old] = new
    if cfg.answer_column is not None:
        need(cfg.answer_column, "answer_column")
        renames[cfg.answer_column] = "answer"
    if cfg.messages_column is not None:
        need(cfg.messages_column, "messages_column")
        ds = _split_conversations(ds, cfg.messages_column, where)
        have = list(ds.column_names)
    elif cfg.prompt_template is not None:
        ds = _render_prompts(ds, cfg.prompt_template, have, where, cfg.num_proc)
        have = list(ds.column_names)
    else:
        need(cfg.prompt_column, "prompt_column")
        renames[cfg.prompt_column] = "prompt"
    if cfg.completion_column in have and cfg.messages_column is None:
        renames[cfg.completion_column] = "completion"
    renames = {old: new for old, new in renames.items() if old != new}
    clash = sorted({new for new in renames.values() if new in have and new not in renames})
    if clash:
        raise UserError(
            f"data: renaming would overwrite the existing column {clash[0]!r} of {where}; "
            "drop it or map it elsewhere with data.columns"
        )
    ds = ds.rename_columns(renames) if renames else ds
    for i, prompt in enumerate(ds["prompt"]):
        check_prompt(prompt, f"data: {where} row {i}")
    return ds


def _render_prompts(ds: Any, template: str, have: list[str], where: str, num_proc: int | None) -> Any:

    try:
        fields = template_fields(template)
    except UserError as e:
        raise UserError(f"data.prompt_template: {e}") from None
    for f in sorted(fields):
        if f not in have:
            raise UserError(f"data.prompt_template: {where} has no column {f!r}{did_you_mean(f, have)}")
    if "prompt" in have:
        raise UserError(
            f"data.prompt_template: {where} already has a 'prompt' column; rename it with data.columns"
        )
    template_renderer(template)  # compiles: a syntax error is reported before any row is mapped
    return ds.map(_render_row, fn_kwargs={"template": template}, num_proc=num_proc, desc="prompt template")


def _render_row(row: dict[str, Any], template: str) -> dict[str, Any]:

    return {"prompt": template_renderer(template)(row)}


def _split_conversations(ds: Any, column: str, where: str) -> Any:
    """A conversation per row -> prompt (the turns before the last assistant reply) + completion (it)."""

    def split(row: dict[str, Any]) -> dict[str, Any]:
        messages = row[column]
        if not is_conversation(messages):
            raise UserError(
                f"data.messages_column: a row of {where} is not a list of {{'role', 'content'}} messages"
            )
        last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
        if last is None:
            return {"prompt": list(messages), "completion": None}
        return {"prompt": list(messages[:last]), "completion": [messages[last]]}

    if "prompt" in ds.column_names or "completion" in ds.column_names:
        raise UserError(f"data.messages_column: {where} also has a 'prompt' or 'completion' column; drop it")
    return ds.map(split, remove_columns=[column], desc="conversations")
