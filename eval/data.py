"""Documents for benchmark tasks: GLUE-layout TSV files or JSON records on disk, or the Hugging Face Hub copy.

A *document* is a plain dict with the column names of the Hub dataset (``nyu-mll/glue``:
``sentence``, ``sentence1``, ``label``, ``idx`` …), whatever the layout of the file it came from,
so one prompt template serves both sources and matches lm-evaluation-harness's.

Reading the local files follows ``shared/data/glue/README.md``:

- tab-separated, ``encoding="utf-8-sig"`` (MRPC starts with a byte-order mark);
- quoting **disabled** (``csv.QUOTE_NONE``: quote characters are part of the text), except files
  exported from the Hub such as this copy's ``RTE/dev.tsv``, which use CSV quoting (``""`` escapes)
  — a split's ``quoting: csv`` says so;
- CoLA has no header row: its columns are addressed by position;
- string labels (``entailment`` …) are mapped to the Hub's integers by the task's ``label_map``;
  integer labels (the Hub export of RTE) pass through;
- ``idx`` is the 0-based row number unless the file has its own ``idx`` column, as the Hub's.

The domain benchmarks (GSM8K, HumanEval, MBPP, SciTLDR, CUAD) are JSON: one object per line
(``jsonl``) or one array of objects (``json``), read by :func:`read_records` with the fields as
they are (nested lists kept), so a record looks like the Hub's row of the same dataset.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from r1rl.errors import UserError

DATA_ENV = "R1RL_DATA_DIR"


# spec.quoting -> csv's constant, typed as the literals csv.reader takes
_QUOTING: dict[str, Literal[0, 1, 2, 3]] = {"none": csv.QUOTE_NONE, "csv": csv.QUOTE_MINIMAL}


def default_data_dir() -> Path:
    """``$R1RL_DATA_DIR``, else ``../shared/data`` beside the repository (DESIGN.md, "Eval")."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass(frozen=True)
class TableSpec:
    """How to read one delimited file into documents.

    ``columns`` maps each document field to a header name, or to a 0-based position when the
    file has no header. ``label_field`` is converted with ``label_map`` (strings → ints) and then
    to ``label_type``.
    """

    path: Path
    columns: dict[str, str | int]
    header: bool = True
    quoting: str = "none"  # "none": csv.QUOTE_NONE; "csv": standard CSV quoting
    delimiter: str = "\t"
    label_field: str = "label"
    label_type: str = "int"  # "int" or "float"
    label_map: dict[str, int] = field(default_factory=dict)


def read_table(spec: TableSpec, task: str = "") -> list[dict[str, Any]]:
    """Documents from a GLUE-layout file; every problem is a one-line :class:`UserError`.

    Returns one dict per data row with the fields of ``spec.columns`` plus ``idx``.
    """
    where = f"task {task!r}: " if task else ""
    if not spec.path.is_file():
        raise UserError(f"{where}data file not found: {spec.path}")
    with spec.path.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f, delimiter=spec.delimiter, quoting=_QUOTING[spec.quoting]))
    rows = [r for r in rows if r]  # a final newline leaves no empty row, but stray blank lines might
    if spec.header:
        if not rows:
            raise UserError(f"{where}{spec.path}: empty file (expected a header row)")
        head, rows, first_line = rows[0], rows[1:], 2
        index = _column_index(spec, head, where)
    else:
        head, first_line = [], 1
        index = {}
        for name, col in spec.columns.items():
            if not isinstance(col, int):
                raise UserError(
                    f"{where}{spec.path}: column {col!r} for {name!r} must be a position (no header)"
                )
            index[name] = col
    width = len(head) if spec.header else (max(index.values()) + 1 if index else 0)
    docs = []
    for i, row in enumerate(rows):
        line = first_line + i
        if len(row) < width or (spec.header and len(row) != width):
            raise UserError(
                f"{where}{spec.path}:{line}: expected {width} tab-separated fields, found {len(row)}"
                + (" (is quoting right for this file?)" if spec.quoting == "none" else "")
            )
        doc: dict[str, Any] = {name: row[col] for name, col in index.items()}
        if spec.label_field in doc:
            doc[spec.label_field] = _label(doc[spec.label_field], spec, f"{spec.path}:{line}", where)
        if "idx" not in doc:
            doc["idx"] = i
        else:
            doc["idx"] = int(doc["idx"])
        docs.append(doc)
    return docs


def _column_index(spec: TableSpec, head: list[str], where: str) -> dict[str, int]:
    index = {}
    for name, col in spec.columns.items():
        if isinstance(col, int):
            if not 0 <= col < len(head):
                raise UserError(f"{where}{spec.path}: no column at position {col} for {name!r}")
            index[name] = col
        elif col in head:
            index[name] = head.index(col)
        else:
            raise UserError(
                f"{where}{spec.path}: no column {col!r} (for field {name!r}); the header has {head}"
            )
    return index


def _label(raw: str, spec: TableSpec, at: str, where: str) -> int | float:
    raw = raw.strip()
    if raw in spec.label_map:
        return spec.label_map[raw]
    try:
        return float(raw) if spec.label_type == "float" else int(raw)
    except ValueError:
        kind = "an integer" if spec.label_type == "int" else "a number"
        known = f" or one of {sorted(spec.label_map)}" if spec.label_map else ""
        raise UserError(f"{where}{at}: label {raw!r} is not {kind}{known}") from None


def read_records(
    path: Path, fmt: str = "jsonl", columns: dict[str, str] | None = None, task: str = ""
) -> list[dict[str, Any]]:
    """Documents from a JSON Lines file (``fmt="jsonl"``) or a JSON array of objects (``"json"``).

    ``columns`` (document field -> record key) renames and selects fields; without it every
    field is kept. ``idx`` is the record's 0-based position unless it has its own. Every problem
    is a one-line :class:`UserError` naming the file (and line).
    """
    where = f"task {task!r}: " if task else ""
    if not path.is_file():
        raise UserError(f"{where}data file not found: {path}")
    text = path.read_text(encoding="utf-8-sig")
    if fmt == "jsonl":
        records, lines = [], []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError as e:
                raise UserError(f"{where}{path}:{n}: not valid JSON ({e})") from None
            lines.append(n)
    elif fmt == "json":
        try:
            records = json.loads(text)
        except ValueError as e:
            raise UserError(f"{where}{path}: not valid JSON ({e})") from None
        if not isinstance(records, list):
            raise UserError(
                f"{where}{path}: expected a JSON array of objects, found {type(records).__name__}"
            )
        lines = list(range(1, len(records) + 1))
    else:
        raise UserError(f"{where}{path}: unknown format {fmt!r} (valid: json, jsonl, tsv)")
    docs = []
    for i, (rec, n) in enumerate(zip(records, lines)):
        at = f"{path}:{n}" if fmt == "jsonl" else f"{path} record {i}"
        if not isinstance(rec, dict):
            raise UserError(f"{where}{at}: expected a JSON object, found {type(rec).__name__}")
        if columns is not None:
            missing = [key for key in columns.values() if key not in rec]
            if missing:
                raise UserError(f"{where}{at}: no field {missing[0]!r} (fields: {sorted(rec)})")
            rec = {name: rec[key] for name, key in columns.items()}
        docs.append({**rec, "idx": rec.get("idx", i)})
    return docs


def load_hub(path: str, name: str | None, split: str, task: str = "") -> list[dict[str, Any]]:
    """Documents of ``path``/``name`` ``split`` through ``datasets``; any failure is one line."""
    where = f"task {task!r}: " if task else ""
    try:
        from datasets import load_dataset

        ds = load_dataset(path, name, split=split)
    except Exception as e:  # offline, unknown split, missing config: all reach the user the same way
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise UserError(
            f"{where}could not load {path}{'/' + name if name else ''} split {split!r} from the Hugging Face "
            f"Hub ({type(e).__name__}: {msg[:200]}); use source: local with files under {default_data_dir()}"
        ) from None
    return [dict(row) for row in ds]


def check_fields(docs: list[dict[str, Any]], fields: set[str], source: str, task: str = "") -> None:
    """Raise a one-line :class:`UserError` if the documents lack a field the task's templates use."""
    if not docs:
        raise UserError(f"task {task!r}: {source} has no examples")
    missing = sorted(fields - set(docs[0]))
    if missing:
        raise UserError(f"task {task!r}: {source} has no column {missing[0]!r} (columns: {sorted(docs[0])})")
