"""Benchmark tasks from flat YAML: where the data is, how a document becomes a prompt, how it is scored.

One file per task under ``eval/tasks/`` (the built-in GLUE and domain tasks), or any file passed
to :func:`load_task_file`. Keys follow lm-evaluation-harness's task YAML where they mean the same
thing (``task``, ``doc_to_text``, ``doc_to_target``, ``doc_to_choice``, ``metric_list``,
``target_delimiter``, ``fewshot_delimiter``, ``fewshot_split``, ``test_split``, ``num_fewshot``,
``generation_kwargs``, ``repeats``); templates are Jinja rendered in lm-eval's environment
(``StrictUndefined``, trailing newlines kept), so a prompt copied from lm-eval renders to the
same string. One filter is added, ``json`` (``json.dumps``), for JSON answers in few-shot targets.

Output types:

- ``multiple_choice``: each choice is scored as ``target_delimiter + choice`` after the prompt; the
  prediction is the choice with the highest summed log-likelihood (lm-eval's ``acc``, not length
  normalised); ``doc_to_target`` gives the gold choice index.
- ``choice_expectation`` (regression, e.g. STS-B, which lm-eval does not have): the choices are the
  numbers ``choice_values``; the prediction is their expectation under the softmax of the choices'
  log-likelihoods, ``sum_k v_k * exp(ll_k) / sum_j exp(ll_j)``, compared with the real-valued gold
  ``doc_to_score`` by Pearson/Spearman. ``doc_to_target`` (e.g. the rounded score) picks the
  answer shown in few-shot examples.
- ``generate_until``: the model writes a continuation of the prompt until a stop sequence
  (``generation_kwargs``: ``until``, ``max_gen_toks``, ``do_sample``, ``temperature``,
  ``top_p``), ``repeats`` times per document; a ``scorer`` (:mod:`r1rl.eval.scorers`, the
  task-tier rewards) gives per-sample values; ``metric_list`` names a scorer output (its mean
  over the samples) or ``<output>@<k>`` (the unbiased pass@k over the samples).
  ``doc_to_target`` renders the answer shown in few-shot examples. ``scorer_columns`` renames
  document fields into the columns the scorer reads (``answer: answers``).

Few-shot examples are drawn as lm-eval draws them for GLUE (``api/samplers.py``
``ContextSampler``): one ``random.Random(seed)`` per task, consumed in document order; each
document takes ``rnd.sample(pool, k + 1)``, drops any copy of itself, and keeps the first ``k``.
Examples written into the YAML (``fewshot_samples``) are taken in order, the first ``k``, as
lm-eval's ``first_n`` sampler takes MBPP's.

Local data is GLUE-layout TSV (:func:`r1rl.eval.data.read_table`) or JSON records
(``format: jsonl`` / ``json``, :func:`r1rl.eval.data.read_records`); a split's ``filter`` keeps
the documents for which a Jinja expression is true, e.g. MBPP's test split
``11 <= task_id <= 510`` out of one file.
"""

from __future__ import annotations

import functools
import json
import random
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, Literal

import jinja2
import jinja2.meta
from pydantic import Field
from r1rl.eval.data import TableSpec, check_fields, default_data_dir, load_hub, read_records, read_table
from r1rl.eval.metrics import get_metric, split_at_k
from r1rl.eval.scorers import SCORERS, get_scorer

from r1rl.config import Strict, load_yaml, validate
from r1rl.errors import UserError, did_you_mean
from r1rl.registry import Registry

TASKS_DIR = Path(__file__).parent / "tasks"

# lm-eval's template environment (lm_eval/utils.py): undefined fields are errors, newlines are kept.
_ENV = jinja2.Environment(
    loader=jinja2.BaseLoader(), undefined=jinja2.StrictUndefined, keep_trailing_newline=True
)
# Jinja's own ``tojson`` escapes <, >, & and ' for HTML; few-shot JSON answers want plain JSON.
_ENV.filters["json"] = lambda value: json.dumps(value, ensure_ascii=False)

Quoting = Literal["none", "csv"]


class LocalSplit(Strict):
    """One split's file, with any reading option that differs from the task's defaults."""

    file: str
    header: bool | None = None
    quoting: Quoting | None = None
    columns: dict[str, str | int] | None = None
    filter: str | None = Field(None, description="Jinja expression; keep the documents where it is true")


class LocalSource(Strict):
    """Files under the data directory: GLUE-layout TSV or JSON records (see :mod:`r1rl.eval.data`)."""

    dir: str = Field(description="folder relative to the data directory, e.g. glue/SST-2")
    format: Literal["tsv", "jsonl", "json"] = "tsv"
    splits: dict[str, str | LocalSplit] = Field(description="split name -> file name (or LocalSplit)")
    header: bool = True
    quoting: Quoting = Field("none", description="'none': csv.QUOTE_NONE; 'csv': standard quoting")
    columns: dict[str, str | int] | None = Field(
        None, description="document field -> header name or position (TSV); JSON: rename/select"
    )
    label_map: dict[str, int] = Field(default_factory=dict, description="string label -> Hub integer")


class HubSource(Strict):
    path: str
    name: str | None = None


class GenerationKwargs(Strict):
    """lm-eval's ``generation_kwargs``: stop sequences, length and sampling of a generation task."""

    until: list[str] | None = Field(None, description="stop sequences (default: [fewshot_delimiter])")
    max_gen_toks: int = Field(256, ge=1, description="most tokens generated (lm-eval's default 256)")
    do_sample: bool = False
    temperature: float = Field(0.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)


class TaskSpec(Strict):
    """A task as written in its YAML file."""

    task: str
    reference: str = Field("", description="where the prompt format comes from")
    output_type: Literal["multiple_choice", "choice_expectation", "generate_until"] = "multiple_choice"
    source: Literal["local", "hub"] = "local"
    local: LocalSource | None = None
    hub: HubSource | None = None
    test_split: str | None = Field(None, description="the split scored; default validation_split")
    validation_split: str = "validation"
    fewshot_split: str = "train"
    num_fewshot: int | None = Field(None, ge=0, description="used when the caller gives no num_fewshot")
    fewshot_samples: list[dict[str, Any]] | None = Field(
        None, description="few-shot documents written out, taken in order (lm-eval's first_n)"
    )
    doc_to_text: str
    doc_to_target: str | None = Field(
        None, description="field or template: the gold choice index, or a generation task's few-shot answer"
    )
    doc_to_choice: list[str] | None = None
    doc_to_score: str | None = Field(None, description="choice_expectation: field with the real gold")
    choice_values: list[float] | None = None
    label_type: Literal["int", "float"] = "int"
    metric_list: list[str]
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    generation_kwargs: GenerationKwargs | None = None
    repeats: int = Field(1, ge=1, description="generate_until: samples per document (n of pass@k)")
    scorer: str | None = Field(None, description="generate_until: a scorer of r1rl.eval.scorers")
    scorer_columns: dict[str, str] = Field(
        default_factory=dict, description="scorer column -> document field it is read from"
    )


class Task:
    """A loaded task: renders prompts, reads gold labels, loads its documents."""

    def __init__(self, spec: TaskSpec) -> None:
        self.spec = spec
        self.name = spec.task
        _check_spec(spec)
        self._text = _ENV.from_string(spec.doc_to_text)
        self._target = _ENV.from_string(spec.doc_to_target or "")
        self._filters = _split_filters(spec)
        if spec.fewshot_samples is not None:
            check_fields(spec.fewshot_samples, self._template_fields, "fewshot_samples", task=self.name)

    def __repr__(self) -> str:
        return f"Task({self.name!r}, {self.spec.output_type}, metrics={self.spec.metric_list})"

    @property
    def is_generation(self) -> bool:
        return self.spec.output_type == "generate_until"

    @property
    def eval_split(self) -> str:
        """The split scored: ``test_split`` if set, else ``validation_split`` (as lm-eval)."""
        return self.spec.test_split or self.spec.validation_split

    @property
    def generation(self) -> GenerationKwargs:
        """Generation settings; ``until`` defaults to the few-shot delimiter, as in lm-eval."""
        gen = self.spec.generation_kwargs or GenerationKwargs()
        if gen.until is None:
            gen = gen.model_copy(update={"until": [self.spec.fewshot_delimiter]})
        return gen

    @property
    def _template_fields(self) -> set[str]:
        s = self.spec
        out = {s.doc_to_text} if _is_field(s.doc_to_text) else _variables(s.doc_to_text)
        if s.doc_to_target is not None:
            out |= {s.doc_to_target} if _is_field(s.doc_to_target) else _variables(s.doc_to_target)
        return out

    @property
    def fields(self) -> set[str]:
        """Document fields the templates and the scorer use (checked against the data when it is loaded)."""
        s = self.spec
        out = self._template_fields | set(s.scorer_columns.values())
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
        t = self.spec.doc_to_target or ""
        value = doc[t] if t in doc else self._target.render(**doc)
        if isinstance(value, str):
            if not value.strip().isdigit():
                raise UserError(f"task {self.name!r}: doc_to_target gave {value!r}, not a choice index")
            value = int(value)
        return int(value)

    def target_text(self, doc: dict[str, Any]) -> str:
        """The answer a few-shot example shows: the gold choice, or a generation task's rendered target."""
        if not self.is_generation:
            return self.choices(doc)[self.doc_to_target(doc)]
        t = self.spec.doc_to_target or ""
        return str(doc[t]) if _is_field(t) and t in doc else self._target.render(**doc)

    def doc_to_score(self, doc: dict[str, Any]) -> float:
        return float(doc[self.spec.doc_to_score])  # type: ignore[index]

    def choices(self, doc: dict[str, Any] | None = None) -> list[str]:
        return list(self.spec.doc_to_choice or [])

    def fewshot_context(self, doc: dict[str, Any], shots: list[dict[str, Any]]) -> str:
        """``shots`` rendered with their answers, then ``doc``'s prompt (lm-eval's ``fewshot_context``).

        Each shot is ``prompt + target_delimiter + answer + fewshot_delimiter``.
        """
        s = self.spec
        parts = [
            self.doc_to_text(d) + s.target_delimiter + self.target_text(d) + s.fewshot_delimiter
            for d in shots
        ]
        return "".join(parts) + self.doc_to_text(doc)

    def requests(self, context: str, doc: dict[str, Any]) -> list[tuple[str, str]]:
        """One ``(context, target_delimiter + choice)`` pair per choice."""
        return [(context, self.spec.target_delimiter + c) for c in self.choices(doc)]

    def scorer_columns(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The columns a scorer sees for ``doc``: its fields, plus those ``scorer_columns`` renames."""
        cols = {k: v for k, v in doc.items() if k not in ("prompts", "completions")}
        cols.update({col: doc[field] for col, field in self.spec.scorer_columns.items()})
        return cols

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
            docs, where = self._load_local(split, data_dir)
        else:
            raise UserError(
                f"task {self.name!r}: unknown source {source!r}{did_you_mean(source, ['hub', 'local'])}"
            )
        check_fields(docs, self.fields, where, task=self.name)
        self._check_scorer_columns(docs, where)
        self._check_labels(docs, where)
        return docs

    def fewshot_docs(
        self, split: str, data_dir: str | Path | None = None, source: str | None = None
    ) -> list[dict[str, Any]]:
        """The few-shot pool: the YAML's ``fewshot_samples`` if any, else the documents of ``split``."""
        if self.spec.fewshot_samples is not None:
            return [dict(d) for d in self.spec.fewshot_samples]
        return self.load(split, data_dir, source)

    def _load_local(self, split: str, data_dir: str | Path | None) -> tuple[list[dict[str, Any]], str]:
        table = self.table(split, data_dir)
        if self.spec.local.format == "tsv":  # type: ignore[union-attr]
            docs = read_table(table, task=self.name)
        else:
            columns = {k: str(v) for k, v in table.columns.items()} if table.columns else None
            docs = read_records(table.path, self.spec.local.format, columns, task=self.name)  # type: ignore[union-attr]
        where = str(table.path)
        expr = self._filters.get(split)
        if expr is not None:
            try:
                docs = [d for d in docs if expr(**d)]
            except (jinja2.UndefinedError, TypeError) as e:
                raise UserError(
                    f"task {self.name!r}: split {split!r} filter failed on {where} ({e})"
                ) from None
            where = f"{where} ({split}: {self._split(split).filter})"
        return docs, where

    def _split(self, split: str) -> LocalSplit:
        s = self.spec
        if s.local is None:
            raise UserError(f"task {self.name!r}: no local source is defined for it")
        if split not in s.local.splits:
            raise UserError(
                f"task {self.name!r}: no local file for split {split!r}{did_you_mean(split, s.local.splits)}"
            )
        entry = s.local.splits[split]
        return entry if isinstance(entry, LocalSplit) else LocalSplit(file=entry)

    def table(self, split: str, data_dir: str | Path | None = None) -> TableSpec:
        """How to read ``split``'s local file."""
        s = self.spec
        sp = self._split(split)
        root = Path(data_dir) if data_dir is not None else default_data_dir()
        return TableSpec(
            path=root / s.local.dir / sp.file,  # type: ignore[union-attr]
            columns=(sp.columns if sp.columns is not None else s.local.columns) or {},  # type: ignore[union-attr]
            header=sp.header if sp.header is not None else s.local.header,  # type: ignore[union-attr]
            quoting=sp.quoting or s.local.quoting,  # type: ignore[union-attr]
            label_field=s.doc_to_score or "label",
            label_type=s.label_type,
            label_map=s.local.label_map,  # type: ignore[union-attr]
        )

    def _check_scorer_columns(self, docs: list[dict[str, Any]], where: str) -> None:
        if not self.is_generation:
            return
        scorer = get_scorer(self.spec.scorer)  # type: ignore[arg-type]
        have = set(self.scorer_columns(docs[0]))
        for group in scorer.columns:
            if not have & set(group):
                need = " or ".join(repr(c) for c in group)
                raise UserError(
                    f"task {self.name!r}: {where}: scorer {scorer.name!r} needs a column {need} "
                    f"(columns: {sorted(have)}; map one with scorer_columns)"
                )

    def _check_labels(self, docs: list[dict[str, Any]], where: str) -> None:
        if self.spec.output_type != "multiple_choice":
            return
        n = len(self.choices())
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
    if s.output_type == "generate_until":
        _check_generation_spec(s, where)
    else:
        for name in s.metric_list:
            metric = get_metric(name)
            fits = ("score_pair",) if s.output_type == "choice_expectation" else ("correct", "class_pair")
            if metric.item not in fits:
                raise UserError(f"{where}: metric {name!r} does not apply to output_type {s.output_type!r}")
        if not s.doc_to_choice:
            raise UserError(f"{where}: doc_to_choice is empty")
        if s.doc_to_target is None:
            raise UserError(f"{where}: {s.output_type} needs doc_to_target (the gold choice index)")
    if s.output_type == "choice_expectation":
        if s.choice_values is None or len(s.choice_values) != len(s.doc_to_choice or []):
            raise UserError(f"{where}: choice_expectation needs one choice_values entry per choice")
        if s.doc_to_score is None:
            raise UserError(f"{where}: choice_expectation needs doc_to_score (the gold field)")
    for key in ("doc_to_text", "doc_to_target"):
        try:
            _ENV.parse(getattr(s, key) or "")
        except jinja2.TemplateSyntaxError as e:
            raise UserError(f"{where}: {key} is not a valid template ({e.message})") from None
    if s.local is not None and s.local.format == "tsv" and s.local.columns is None:
        if any(isinstance(v, str) or v.columns is None for v in s.local.splits.values()):
            raise UserError(f"{where}: local TSV files need columns (document field -> header or position)")


def _check_generation_spec(s: TaskSpec, where: str) -> None:
    """A generation task names a scorer, metrics among its outputs, and a k no larger than repeats."""
    if s.scorer is None:
        raise UserError(f"{where}: generate_until needs a scorer{did_you_mean('', SCORERS)}")
    scorer = get_scorer(s.scorer)
    for name in s.metric_list:
        base, k = split_at_k(name)
        if base not in scorer.outputs:
            raise UserError(
                f"{where}: metric {name!r}: scorer {s.scorer!r} has no output {base!r} "
                f"(outputs: {', '.join(scorer.outputs)}; pass@k is written <output>@<k>)"
            )
        if k is not None and not 1 <= k <= s.repeats:
            raise UserError(f"{where}: metric {name!r} needs 1 <= k <= repeats ({s.repeats})")
    gen = s.generation_kwargs or GenerationKwargs()
    if s.repeats > 1 and not gen.do_sample:
        raise UserError(
            f"{where}: repeats: {s.repeats} with greedy decoding gives identical samples; set do_sample"
        )
    if gen.do_sample and gen.temperature <= 0:
        raise UserError(f"{where}: do_sample needs temperature > 0")


def _split_filters(s: TaskSpec) -> dict[str, Any]:
    """Each local split's compiled ``filter`` expression; a syntax error names the split."""
    out = {}
    for split, entry in (s.local.splits if s.local else {}).items():
        if isinstance(entry, LocalSplit) and entry.filter:
            try:
                out[split] = _ENV.compile_expression(entry.filter)
            except jinja2.TemplateSyntaxError as e:
                raise UserError(
                    f"task {s.task!r}: split {split!r}: filter is not a valid expression ({e.message})"
                ) from None
    return out


@functools.lru_cache(maxsize=64)
def template_renderer(template: str) -> Callable[[dict[str, Any]], str]:
    """``template`` compiled in lm-eval's environment: ``render(row) -> str``; a syntax error is a UserError.

    A bare identifier is a field name (lm-eval's rule): it renders to that field's value.
    """
    if _is_field(template):
        return lambda row: str(row[template])
    try:
        compiled = _ENV.from_string(template)
    except jinja2.TemplateSyntaxError as e:
        raise UserError(f"not a valid template ({e.message})") from None

    def render(row: dict[str, Any]) -> str:
        try:
            return compiled.render(**row)
        except jinja2.UndefinedError as e:
            raise UserError(f"template: {e.message}") from None

    return render


def template_fields(template: str) -> set[str]:
    """The row fields a template reads (a bare identifier is a field name itself)."""
    if _is_field(template):
        return {template}
    try:
        return _variables(template)
    except jinja2.TemplateSyntaxError as e:
        raise UserError(f"not a valid template ({e.message})") from None


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


TASKS: Registry[Task] = Registry("eval task")


@cache
def _load_builtin() -> None:
    """Register every ``eval/tasks/*.yaml`` once, on first use (reading YAML costs time at import)."""
    for path in sorted(TASKS_DIR.glob("*.yaml")):
        task = load_task_file(path)
        if task.name in TASKS:
            raise ValueError(f"{path}: task {task.name!r} is already defined")
        TASKS.add(task.name, task)


def register_task(task: Task | TaskSpec | str | Path) -> Task:
    """Add a task (object, spec or YAML path) to the registry; a duplicate name raises."""
    _load_builtin()
    if isinstance(task, (str, Path)):
        task = load_task_file(task)
    elif isinstance(task, TaskSpec):
        task = Task(task)
    if task.name in TASKS:
        raise ValueError(f"task {task.name!r} is already registered")
    return TASKS.add(task.name, task)


def list_tasks() -> list[str]:
    _load_builtin()
    return TASKS.names()


def get_task(name: str | Task) -> Task:
    """The registered task ``name``; an unknown name is a :class:`UserError` with a did-you-mean."""
    if isinstance(name, Task):
        return name
    _load_builtin()
    return TASKS.get(name)
