"""Tiered rewards for structured extraction into JSON (CUAD-style contract fields).

The completion holds a JSON object mapping field -> value (in a ```json fence or bare).
Columns, per sample:

- ``schema``: the fields to extract, as a dict ``field -> type`` (``str``, ``int``, ``float``/
  ``number``, ``bool``, ``list``, ``dict``, ``date``, ``any``, or a list of these) or a list of
  field names; a JSON string of either also works. ``null`` is allowed for every field
  ("not in the document");
- ``context``: the source text the values come from;
- ``answer`` or ``reference``: the reference, a dict ``field -> value`` (a list = several
  values). With a one-field schema, a bare value (or list of values) is that field's.

Tiers:

- syntax: valid JSON object whose fields match the schema: the fraction of schema fields
  present with the right type, out of schema fields plus unexpected keys;
- logic: the fraction of extracted values that occur in the context (whitespace and case
  normalised), or agree with it (the same date or number written differently, or every word
  of the value found in it); not applicable with nothing extracted or no context;
- task: field-level F1 against the reference (:func:`field_f1`), with values normalised by
  :func:`normalize_value` (``October 1, 2019`` == ``10/1/2019``, ``2.50`` == ``2.5``).
"""

from __future__ import annotations

import datetime
import functools
import json
import re
from fractions import Fraction
from typing import Any

from r1rl.rewards.math import parse_number
from r1rl.rewards.protocol import as_text, columns
from r1rl.rewards.registry import register

_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)
_MONTH_NAMES = """january jan|february feb|march mar|april apr|may|june jun|july jul|august aug|
september sep sept|october oct|november nov|december dec""".replace("\n", "").split("|")
_MONTHS = {m: i + 1 for i, names in enumerate(_MONTH_NAMES) for m in names.split()}
_MONTH = r"(?P<mon>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_DAY = r"(?P<day>\d{1,2})(?:st|nd|rd|th)?"
_YEAR = r"(?P<year>\d{4})"
_DATES = [
    re.compile(rf"\b(?P<mnum>\d{{1,2}})[/.-]{_DAY}[/.-](?P<year>\d{{4}}|\d{{2}})\b"),  # 10/1/2019, 10/1/19
    re.compile(rf"\b{_YEAR}-(?P<mnum>\d{{1,2}})-{_DAY}\b"),  # 2019-10-01
    re.compile(rf"\b{_MONTH}\s+{_DAY},?\s+{_YEAR}\b", re.I),  # October 1, 2019
    re.compile(rf"\b{_DAY}\s+(?:day\s+)?(?:of\s+)?{_MONTH},?\s+{_YEAR}\b", re.I),  # 1st day of June, 2004
]
_NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen twenty".split()
    )
} | {w: str(10 * i) for i, w in enumerate("thirty forty fifty sixty seventy eighty ninety".split(), start=3)}
_NUMBER_ONLY = re.compile(r"^[-+]?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?%?$|^[-+]?\.\d+$")
_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,), "string": (str,), "text": (str,),
    "int": (int,), "integer": (int,),
    "float": (int, float), "number": (int, float),
    "bool": (bool,), "boolean": (bool,),
    "list": (list,), "array": (list,),
    "dict": (dict,), "object": (dict,),
}  # fmt: skip


def extract_json(text: str) -> Any:
    """The first JSON value in a completion: a ```json fence's content, else the first ``{…}`` that parses.

    >>> extract_json('Sure:\\n```json\\n{"a": 1}\\n```')
    {'a': 1}
    >>> extract_json('The fields are {"law": "New York"}.'), extract_json("no json")
    ({'law': 'New York'}, None)
    """
    text = _THINK.sub("", as_text(text))
    for block in _FENCE.findall(text):
        try:
            return json.loads(block)
        except ValueError:
            pass
    decoder = json.JSONDecoder()
    for m in list(re.finditer(r"[{\[]", text))[:20]:  # a few starts: a completion is short
        try:
            return decoder.raw_decode(text[m.start() :])[0]
        except ValueError:
            continue
    return None


def parse_date(text: str, whole: bool = True) -> datetime.date | None:
    """A date written as ``10/1/2019``, ``2019-10-01``, ``October 1, 2019`` or ``1st day of October, 2019``.

    With ``whole``, the text must be just the date (punctuation and spaces around aside).

    >>> parse_date("Oct. 1st, 2019"), parse_date("22 Dec. 2017"), parse_date("7/18/11")
    (datetime.date(2019, 10, 1), datetime.date(2017, 12, 22), datetime.date(2011, 7, 18))
    >>> parse_date("signed on October 1, 2019 by"), parse_date("signed on October 1, 2019 by", whole=False)
    (None, datetime.date(2019, 10, 1))
    """
    dates = find_dates(text, whole)
    return dates[0] if dates else None


def find_dates(text: str, whole: bool = False) -> list[datetime.date]:
    """Every valid date written in ``text`` (see :func:`parse_date`)."""
    s = text.strip().strip(".,;:()\"'") if whole else text
    out = []
    for pattern in _DATES:
        for m in pattern.finditer(s):
            if whole and (m.start(), m.end()) != (0, len(s)):
                continue
            g = m.groupdict()
            month = int(g["mnum"]) if g.get("mnum") else _MONTHS[g["mon"].lower()]
            year = int(g["year"])
            if len(g["year"]) == 2:  # the POSIX strptime %y pivot: 69-99 -> 19xx, 00-68 -> 20xx
                year += 1900 if year >= 69 else 2000
            try:
                out.append(datetime.date(year, month, int(g["day"])))
            except ValueError:
                continue
    return out


def normalize_value(value: Any) -> str | None:
    """A canonical text for comparing extracted values; ``None`` for an empty value.

    Dates become ISO dates, numbers their exact value, other text case-folded with its
    whitespace collapsed and surrounding punctuation dropped.

    >>> normalize_value("October 1, 2019") == normalize_value("10/1/2019")
    True
    >>> normalize_value(" New  York. "), normalize_value("$1,000"), normalize_value("")
    ('new york', 'number:1000', None)
    """
    if value is None or isinstance(value, bool):
        return None if value is None else str(value).lower()
    if isinstance(value, (int, float)):
        n = parse_number(value)
        return f"number:{n}" if n is not None else None
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True).casefold()
    text = " ".join(str(value).split()).strip(".,;:!?\"'()[]{} ")
    if not text:
        return None
    date = parse_date(text)
    if date is not None:
        return f"date:{date.isoformat()}"
    if _NUMBER_ONLY.match(text):
        n = parse_number(text)
        if n is not None:
            return f"number:{n}"
    return text.casefold()


def _field(name: Any) -> str:
    return re.sub(r"[\s_\-]+", " ", str(name)).strip().casefold()


def _items(obj: dict[str, Any]) -> set[tuple[str, str]]:
    out = set()
    for k, v in obj.items():
        for x in v if isinstance(v, list) else [v]:
            norm = normalize_value(x)
            if norm is not None:
                out.add((_field(k), norm))
    return out


def field_f1(pred: Any, ref: Any) -> float:
    """Field-level F1: (field, normalised value) pairs of ``pred`` against those of ``ref``.

    Both empty is 1.0 (nothing to extract, nothing extracted); a ``pred`` that is not a dict is 0.

    >>> field_f1({"date": "Oct 1, 2019", "law": "Texas"}, {"date": "10/1/2019", "law": "New York"})
    0.5
    >>> field_f1({"parties": ["A", "B"]}, {"parties": ["A", "B", "C"]})
    0.8
    """
    if not isinstance(pred, dict) or not isinstance(ref, dict):
        return 0.0
    p, r = _items(pred), _items(ref)
    if not p and not r:
        return 1.0
    return 2 * len(p & r) / (len(p) + len(r))


def parse_schema(schema: Any) -> dict[str, list[str]] | None:
    """Field -> allowed type names (``["any"]`` for a bare field list); ``None`` if no schema.

    >>> parse_schema(["Governing Law"]), parse_schema('{"n": ["int", "str"]}')
    ({'governing law': ['any']}, {'n': ['int', 'str']})
    """
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except ValueError:
            schema = [schema]  # a single field name
    if isinstance(schema, (list, tuple)):
        return {_field(f): ["any"] for f in schema}
    if isinstance(schema, dict):
        return {_field(f): ([t] if isinstance(t, str) else list(t)) for f, t in schema.items()}
    return None


def _type_ok(value: Any, types: list[str]) -> bool:
    if value is None:
        return True
    for t in types:
        t = str(t).lower().rstrip("?")
        if t == "any" or (t == "date" and isinstance(value, str) and parse_date(value) is not None):
            return True
        kinds = _TYPES.get(t, ())
        if isinstance(value, bool) and bool not in kinds:
            continue
        if isinstance(value, kinds):
            return True
    return False


def _column(columns: dict[str, Any], names: tuple[str, ...], n: int) -> list[Any]:
    for name in names:
        if isinstance(columns.get(name), (list, tuple)):
            return list(columns[name])
    return [None] * n


@register("extraction_syntax", tier="syntax")
def extraction_syntax(prompts: list[str], completions: list[str], **columns: Any) -> list[float | None]:
    """Valid JSON object matching ``schema``: fields with the right type / (schema fields + extra keys).

    >>> extraction_syntax(["p"] * 3, ['{"law": "Texas", "term": 2}', '{"law": 3}', "law: Texas"],
    ...                   schema=[{"law": "str", "term": "int"}] * 3)
    [1.0, 0.0, 0.0]
    """
    schemas = _column(columns, ("schema",), len(completions))
    out: list[float | None] = []
    for c, schema in zip(completions, schemas):
        obj, fields = extract_json(c), parse_schema(schema)
        if not isinstance(obj, dict):
            out.append(0.0)
            continue
        if fields is None:
            out.append(1.0)
            continue
        got = {_field(k): v for k, v in obj.items()}
        ok = sum(f in got and _type_ok(got[f], types) for f, types in fields.items())
        extra = sum(f not in fields for f in got)
        out.append(ok / (len(fields) + extra) if fields or extra else 1.0)
    return out


@functools.lru_cache(maxsize=256)
def _context_index(context: str) -> tuple[str, frozenset[str], frozenset[datetime.date], frozenset[Fraction]]:
    flat = " ".join(context.split()).casefold()
    words = re.findall(r"\w+", flat)
    vocab = frozenset(words + [_NUMBER_WORDS[w] for w in words if w in _NUMBER_WORDS])  # "one" is also "1"
    parsed = {parse_number(t) for t in re.findall(r"\d[\d,]*(?:\.\d+)?", flat)}
    numbers = frozenset(n for n in parsed if n is not None)
    return flat, vocab, frozenset(find_dates(context)), numbers


def grounded(value: Any, context: str) -> bool:
    """The value occurs in the context, or the same date/number does, or each of its words does.

    >>> ctx = "Governed by the laws of the State of New York. Dated October 1, 2019; ninety (90) days."
    >>> [grounded(v, ctx) for v in ["new  york", "10/1/2019", 90, "90 days", "Texas", "ninety days"]]
    [True, True, True, True, False, True]
    """
    flat, words, dates, numbers = _context_index(context)
    text = " ".join(str(value).split()).casefold()
    if text and text in flat:
        return True
    date = parse_date(str(value)) if isinstance(value, str) else None
    if date is not None:
        return date in dates
    n = parse_number(value) if isinstance(value, (int, float)) or _NUMBER_ONLY.match(text) else None
    if n is not None:
        return n in numbers
    tokens = re.findall(r"\w+", text)
    return bool(tokens) and all(t in words for t in tokens)


@register("extraction_logic", tier="logic")
def extraction_logic(prompts: list[str], completions: list[str], **columns: Any) -> list[float | None]:
    """Fraction of extracted values grounded in the ``context`` column (:func:`grounded`).

    >>> ctx = ["This Agreement is governed by the laws of the State of Kansas."] * 3
    >>> extraction_logic(["p"] * 3, ['{"law": "Kansas"}', '{"law": "Texas"}', '{"law": null}'], context=ctx)
    [1.0, 0.0, None]
    """
    contexts = _column(columns, ("context",), len(completions))
    out: list[float | None] = []
    for c, ctx in zip(completions, contexts):
        obj = extract_json(c)
        if not isinstance(obj, dict):
            out.append(0.0)
            continue
        values = [x for v in obj.values() for x in (v if isinstance(v, list) else [v])]
        values = [x for x in values if normalize_value(x) is not None]
        if ctx is None or not values:
            out.append(None)  # nothing to check against, or nothing extracted
            continue
        out.append(sum(grounded(x, str(ctx)) for x in values) / len(values))
    return out


def reference_fields(reference: Any, schema: Any = None) -> dict[str, Any] | None:
    """The reference as a dict: as given, parsed from JSON, or a bare value for a one-field schema.

    >>> reference_fields(["10/1/2019"], schema=["Agreement Date"])
    {'agreement date': ['10/1/2019']}
    """
    if isinstance(reference, str):
        try:
            parsed = json.loads(reference)
            reference = parsed if isinstance(parsed, dict) else reference
        except ValueError:
            pass
    if isinstance(reference, dict):
        return reference
    fields = parse_schema(schema)
    if fields is not None and len(fields) == 1 and reference is not None:
        return {next(iter(fields)): reference}
    return None


@register("extraction_task", tier="task")
@columns("answer | reference")
def extraction_task(prompts: list[str], completions: list[str], **columns: Any) -> list[float | None]:
    """Field-level F1 of the extracted JSON against the ``answer`` (or ``reference``) column.

    >>> extraction_task(["p"] * 2, ['{"Agreement Date": "October 1, 2019"}', '{"Agreement Date": "2019"}'],
    ...                 answer=[["10/1/2019"]] * 2, schema=[["Agreement Date"]] * 2)
    [1.0, 0.0]
    """
    n = len(completions)
    refs, schemas = _column(columns, ("answer", "reference"), n), _column(columns, ("schema",), n)
    if all(r is None for r in refs):
        raise ValueError("extraction_task needs an 'answer' or 'reference' column")
    out: list[float | None] = []
    for c, ref, schema in zip(completions, refs, schemas):
        gold = reference_fields(ref, schema)
        out.append(None if gold is None else field_f1(extract_json(c), gold))
    return out
