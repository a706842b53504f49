"""Benchmark tasks from flat YAML: where the data is, how a document becomes a prompt, how it is scored.

One file per eval-only task under ``eval/tasks/`` (GLUE, HumanEval, SciTLDR), any file passed to
:func:`load_task_file`, or a spec a training task registers from its own file (:func:`register_spec`;
GSM8K, MBPP and CUAD live in ``r1rl/tasks/``). Tasks installed through the ``r1rl.tasks``
entry-point group are found on first use, the built-in ones as any third-party plug-in.

Keys follow lm-evaluation-harness's task YAML where they mean the same
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

import random
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import jinja2
from r1rl.eval.data import TableSpec, check_fields, default_data_dir, load_hub, read_records, read_table
from r1rl.eval.scorers import get_scorer
from r1rl.eval.spec import (  # noqa: F401  (re-exported: the YAML schema and templates, as before)
    _ENV,
    GenerationKwargs,
    HubSource,
    LocalSource,
    LocalSplit,
    TaskSpec,
    _check_spec,
    _is_field,
    _variables,
    template_fields,
    template_renderer,
)

from r1rl.errors import UserError, did_you_mean
from r1rl.registry import Registry
from r1rl.strict import load_yaml, validate

TASKS_DIR = Path(__file__).parent / "tasks"


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
    """Register every ``eval/tasks/*.yaml`` and the installed task plug-ins once, on first use
    (reading YAML costs time at import). A plug-in is a module that registers its specs on import."""
    for path in sorted(TASKS_DIR.glob("*.yaml")):
        task = load_task_file(path)
        if task.name in TASKS:
            raise ValueError(f"{path}: task {task.name!r} is already defined")
        TASKS.add(task.name, task)
    for entry in entry_points(group="r1rl.tasks"):
        try:
            entry.load()
        except ImportError as e:  # a broken installed plug-in is bad input, not a crash
            raise UserError(f"task plug-in {entry.name!r} ({entry.value}) does not import: {e}") from None


def register_spec(spec: dict[str, Any]) -> Task:
    """Add the task a spec mapping (the keys of a task YAML) describes; a duplicate name raises."""
    task = Task(validate(TaskSpec, spec, source=f"task {spec.get('task')!r}"))
    if task.name in TASKS:
        raise ValueError(f"task {task.name!r} is already registered")
    return TASKS.add(task.name, task)


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
