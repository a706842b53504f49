"""Benchmark tasks from flat YAML: where the data is, how a document becomes a prompt, how it is scored.

One file per task under ``eval/tasks/`` (the built-in GLUE tasks), or any file passed to
:func:`load_task_file`. Keys follow lm-evaluation-harness's task YAML where they mean the same
thing (``task``, ``doc_to_text``, ``doc_to_target``, ``doc_to_choice``, ``metric_list``,
``target_delimiter``, ``fewshot_delimiter``, ``fewshot_split``); templates are Jinja rendered in
lm-eval's environment (``StrictUndefined``, trailing newlines kept), so a prompt copied from
lm-eval renders to the same string.

Output types:

- ``multiple_choice``: each choice is scored as ``target_delimiter + choice`` after the prompt; the
  prediction is the choice with the highest summed log-likelihood (lm-eval's ``acc``, not length
  normalised); ``doc_to_target`` gives the gold choice index.
- ``choice_expectation`` (regression, e.g. STS-B, which lm-eval does not have): the choices are the
  numbers ``choice_values``; the prediction is their expectation under the softmax of the choices'
  log-likelihoods, ``sum_k v_k * exp(ll_k) / sum_j exp(ll_j)``, compared with the real-valued gold
  ``doc_to_score`` by Pearson/Spearman. ``doc_to_target`` (e.g. the rounded score) picks the
  answer shown in few-shot examples.

Few-shot examples are drawn as lm-eval draws them for GLUE (``api/samplers.py``
``ContextSampler``): one ``random.Random(seed)`` per task, consumed in document order; each
document takes ``rnd.sample(pool, k + 1)``, drops any copy of itself, and keeps the first ``k``.
"""

from __future__ import annotations

import random
from functools import cache
from pathlib import Path
from typing import Any, Literal

import jinja2
import jinja2.meta
from pydantic import Field
from r1rl.eval.data import TableSpec, check_fields, default_data_dir, load_hub, read_table
from r1rl.eval.metrics import get_metric

from r1rl.config import Strict, load_yaml, validate
from r1rl.errors import UserError, did_you_mean

TASKS_DIR = Path(__file__).parent / "tasks"

# lm-eval's template environment (lm_eval/utils.py): undefined fields are errors, newlines are kept.
_ENV = jinja2.Environment(
    loader=jinja2.BaseLoader(), undefined=jinja2.StrictUndefined, keep_trailing_newline=True
)

Quoting = Literal["none", "csv"]


class LocalSplit(Strict):
    """One split's file, with any reading option that differs from the task's defaults."""

    file: str
    header: bool | None = None
    quoting: Quoting | None = None
    columns: dict[str, str | int] | None = None


class LocalSource(Strict):
    """Files in GLUE's layout under the data directory (see :mod:`r1rl.eval.data`)."""

    dir: str = Field(description="folder relative to the data directory, e.g. glue/SST-2")
    splits: dict[str, str | LocalSplit] = Field(description="split name -> file name (or LocalSplit)")
    header: bool = True
    quoting: Quoting = Field("none", description="'none': csv.QUOTE_NONE; 'csv': standard quoting")
    columns: dict[str, str | int] = Field(description="document field -> header name or position")
    label_map: dict[str, int] = Field(default_factory=dict, description="string label -> Hub integer")


class HubSource(Strict):
    path: str
    name: str | None = None


class TaskSpec(Strict):
    """A task as written in its YAML file."""

    task: str
    reference: str = Field("", description="where the prompt format comes from")
    output_type: Literal["multiple_choice", "choice_expectation"] = "multiple_choice"
    source: Literal["local", "hub"] = "local"
    local: LocalSource | None = None
    hub: HubSource | None = None
    validation_split: str = "validation"
    fewshot_split: str = "train"
    doc_to_text: str
    doc_to_target: str = Field(description="field or template giving the gold choice index")
    doc_to_choice: list[str]
    doc_to_score: str | None = Field(None, description="choice_expectation: field with the real gold")
    choice_values: list[float] | None = None
    label_type: Literal["int", "float"] = "int"
    metric_list: list[str]
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"


class Task:
    """A loaded task: renders prompts, reads gold labels, loads its documents."""

    def __init__(self, spec: TaskSpec) -> None:
        self.spec = spec
        self.name = spec.task
        _check_spec(spec)
        self._text = _ENV.from_string(spec.doc_to_text)
        self._target = _ENV.from_string(spec.doc_to_target)

    def __repr__(self) -> str:
        return f"Task({self.name!r}, {self.spec.output_type}, metrics={self.spec.metric_list})"

    @property
    def fields(self) -> set[str]:
        """Document fields the templates use (checked against the data when it is loaded)."""
        s = self.spec
        out = {s.doc_to_text} if _is_field(s.doc_to_text) else _variables(s.doc_to_text)
        out |= {s.doc_to_target} if _is_field(s.doc_to_target) else _variables(s.doc_to_target)
        if s.doc_to_score:
            out.add(s.doc_to_score)
        return out

    def doc_to_text(self, doc: dict[str, Any]) -> str:
        """The prompt for ``doc`` (no answer, no trailing delimiter)."""
        if _is_field(self.spec.doc_to_text) and self.spec.doc_to_text in doc:
            return str(doc[self.spec.doc_to_text])
        return self._text.render(**doc)

    def doc_to_target(self, doc: dict[str, Any]) -> int:
        """The gold choice index (lm-eval: a field's value, or a template rendering to digits)."""
        t = self.spec.doc_to_target
        value = doc[t] if t in doc else self._target.render(**doc)
        if isinstance(value, str):
            if not value.strip().isdigit():
                raise UserError(f"task {self.name!r}: doc_to_target gave {value!r}, not a choice index")
            value = int(value)
        return int(value)

    def doc_to_score(self, doc: dict[str, Any]) -> float:
        return float(doc[self.spec.doc_to_score])  # type: ignore[index]

    def choices(self, doc: dict[str, Any] | None = None) -> list[str]:
        return list(self.spec.doc_to_choice)

    def fewshot_context(self, doc: dict[str, Any], shots: list[dict[str, Any]]) -> str:
        """``shots`` rendered with their answers, then ``doc``'s prompt (lm-eval's ``fewshot_context``).

        Each shot is ``prompt + target_delimiter + answer + fewshot_delimiter``.
        """
        s = self.spec
        parts = [
            self.doc_to_text(d)
            + s.target_delimiter
            + self.choices(d)[self.doc_to_target(d)]
            + s.fewshot_delimiter
            for d in shots
        ]
        return "".join(parts) + self.doc_to_text(doc)

    def requests(self, context: str, doc: dict[str, Any]) -> list[tuple[str, str]]:
        """One ``(context, target_delimiter + choice)`` pair per choice."""
        return [(context, self.spec.target_delimiter + c) for c in self.choices(doc)]

    def load(
        self, split: str, data_dir: str | Path | None = None, source: str | None = None
    ) -> list[dict[str, Any]]:
        """The documents of ``split``, from local files or the Hub (``source`` overrides the YAML's)."""
        s = self.spec
        source = source or s.source
        if source == "hub":
            if s.hub is None:
                raise UserError(f"task {self.name!r}: no hub source is defined for it")
            docs = load_hub(s.hub.path, s.hub.name, split, task=self.name)
            where = f"{s.hub.path}/{s.hub.name} {split}"
        elif source == "local":
            table = self.table(split, data_dir)
            docs = read_table(table, task=self.name)
            where = str(table.path)
        else:
            raise UserError(
                f"task {self.name!r}: unknown source {source!r}{did_you_mean(source, ['hub', 'local'])}"
            )
        check_fields(docs, self.fields, where, task=self.name)
        self._check_labels(docs, where)
        return docs

    def table(self, split: str, data_dir: str | Path | None = None) -> TableSpec:
        """How to read ``split``'s local file."""
        s = self.spec
        if s.local is None:
            raise UserError(f"task {self.name!r}: no local source is defined for it")
        if split not in s.local.splits:
            raise UserError(
                f"task {self.name!r}: no local file for split {split!r}{did_you_mean(split, s.local.splits)}"
            )
        entry = s.local.splits[split]
        sp = entry if isinstance(entry, LocalSplit) else LocalSplit(file=entry)
        root = Path(data_dir) if data_dir is not None else default_data_dir()
        return TableSpec(
            path=root / s.local.dir / sp.file,
            columns=sp.columns if sp.columns is not None else s.local.columns,
            header=sp.header if sp.header is not None else s.local.header,
            quoting=sp.quoting or s.local.quoting,
            label_field=s.doc_to_score or "label",
            label_type=s.label_type,
            label_map=s.local.label_map,
        )

    def _check_labels(self, docs: list[dict[str, Any]], where: str) -> None:
        if self.spec.output_type != "multiple_choice":
            return
        n = len(self.spec.doc_to_choice)
        for i, d in enumerate(docs):
            g = self.doc_to_target(d)
            if not 0 <= g < n:
                raise UserError(
                    f"task {self.name!r}: {where} example {i}: gold index {g} is not in 0..{n - 1}"
                )


class FewshotSampler:
    """lm-eval's default ``ContextSampler``: ``random.Random(seed)`` shared across one task's documents."""

    def __init__(self, docs: list[dict[str, Any]], seed: int) -> None:
        self.docs = docs
        self.rnd = random.Random(seed)

    def sample(self, k: int, eval_doc: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """``k`` documents, never ``eval_doc`` itself (it matters when few-shot and eval split coincide)."""
        if k == 0:
            return []
        if len(self.docs) < k + 1:
            raise UserError(
                f"num_fewshot={k} needs at least {k + 1} few-shot documents; there are {len(self.docs)}"
            )
        res = [d for d in self.rnd.sample(self.docs, k + 1) if d != eval_doc][:k]
        if len(res) < k:  # duplicates of eval_doc were drawn: resample from the pool without it
            res = self.rnd.sample([d for d in self.docs if d != eval_doc], k)
        return res


def _check_spec(s: TaskSpec) -> None:
    """What the schema cannot say: metrics exist and fit the output type, templates parse."""
    where = f"task {s.task!r}"
    for name in s.metric_list:
        metric = get_metric(name)
        fits = ("score_pair",) if s.output_type == "choice_expectation" else ("correct", "class_pair")
        if metric.item not in fits:
            raise UserError(f"{where}: metric {name!r} does not apply to output_type {s.output_type!r}")
    if s.output_type == "choice_expectation":
        if s.choice_values is None or len(s.choice_values) != len(s.doc_to_choice):
            raise UserError(f"{where}: choice_expectation needs one choice_values entry per choice")
        if s.doc_to_score is None:
            raise UserError(f"{where}: choice_expectation needs doc_to_score (the gold field)")
    for key in ("doc_to_text", "doc_to_target"):
        try:
            _ENV.parse(getattr(s, key))
        except jinja2.TemplateSyntaxError as e:
            raise UserError(f"{where}: {key} is not a valid template ({e.message})") from None
    if not s.doc_to_choice:
        raise UserError(f"{where}: doc_to_choice is empty")


def _is_field(template: str) -> bool:
    return template.isidentifier()


def _variables(template: str) -> set[str]:
    return set(jinja2.meta.find_undeclared_variables(_ENV.parse(template)))


def load_task_file(path: str | Path) -> Task:
    """A :class:`Task` from one YAML file; a bad key or value is a one-line :class:`UserError`."""
    spec = validate(TaskSpec, load_yaml(path), source=str(path))
    try:
        return Task(spec)
    except UserError as e:
        raise UserError(f"{path}: {e}") from None


@cache
def _builtin() -> dict[str, Task]:
    tasks: dict[str, Task] = {}
    for path in sorted(TASKS_DIR.glob("*.yaml")):
        task = load_task_file(path)
        if task.name in tasks:
            raise ValueError(f"{path}: task {task.name!r} is already defined")
        tasks[task.name] = task
    return tasks


_EXTRA: dict[str, Task] = {}


def register_task(task: Task | TaskSpec | str | Path) -> Task:
    """Add a task (object, spec or YAML path) to the registry; a duplicate name raises."""
    if isinstance(task, (str, Path)):
        task = load_task_file(task)
    elif isinstance(task, TaskSpec):
        task = Task(task)
    if task.name in _builtin() or task.name in _EXTRA:
        raise ValueError(f"task {task.name!r} is already registered")
    _EXTRA[task.name] = task
    return task


def list_tasks() -> list[str]:
    return sorted({**_builtin(), **_EXTRA})


def get_task(name: str | Task) -> Task:
    """The registered task ``name``; an unknown name is a :class:`UserError` with a did-you-mean."""
    if isinstance(name, Task):
        return name
    tasks = {**_builtin(), **_EXTRA}
    if name not in tasks:
        raise UserError(f"unknown eval task {name!r}{did_you_mean(name, tasks)}")
    return tasks[name]
