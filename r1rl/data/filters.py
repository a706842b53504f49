"""Quality filters: heuristic rules, a learned-score threshold, and Python syntax validity.

A filter is any object with a ``name``, an optional ``sources`` scope (``None`` = every
document; otherwise only documents whose ``source`` is listed are judged, the rest pass
untouched) and ``__call__(docs) -> list[bool]`` (True = keep). :func:`apply_filters` runs
them in order — a document is judged by a filter only if every earlier one kept it — and
counts, per filter, how many documents it judged, kept and dropped.

Heuristics follow the Gopher quality and repetition rules (Rae et al. 2021, "Scaling
Language Models: Methods, Analysis & Insights from Training Gopher", appendix on MassiveWeb
filtering), simplified as each docstring says:

============== ===================================================================
``length``      characters (and words) within bounds
``symbol_ratio`` share of non-space characters that are neither letters nor digits
``repetition``  share of lines that repeat an earlier line; share of characters inside
                word n-grams that occur more than once
``charset``     share of characters inside an allowed set (printable ASCII by default)
``python_syntax`` ``ast.parse`` accepts the text
``score``       a learned scorer's value (e.g. perplexity) ≤ ``max_score``
============== ===================================================================

    >>> docs = [Document("hello world", "s"), Document("x", "s")]
    >>> kept, report = apply_filters(docs, [LengthFilter(min_chars=3)])
    >>> [d.text for d in kept], report.filters["length"]
    (['hello world'], {'judged': 2, 'kept': 1, 'dropped': 1})
"""

from __future__ import annotations

import ast
import string
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from r1rl.data.dedup import write_json
from r1rl.data.scoring import CharNGramScorer, Scorer
from r1rl.data.sources import Document
from r1rl.errors import UserError
from r1rl.registry import Registry

PRINTABLE_ASCII = frozenset(string.printable)


class Filter(Protocol):
    name: str
    sources: tuple[str, ...] | None

    def __call__(self, docs: Sequence[Document]) -> list[bool]:
        """True for each document to keep."""
        ...


FILTERS: Registry[Callable[..., Filter]] = Registry("filter")  # the constructors, built from config


def build_filter(spec: Mapping[str, Any], key: str = "data.filters") -> Filter:
    """A heuristic filter from ``{"type": ..., **arguments}``: ``{"type": "length", "min_chars": 10}``."""
    return FILTERS.build(spec, key)


# ---------------------------------------------------------------------------- measures


def symbol_ratio(text: str) -> float:
    """Share of non-whitespace characters that are neither letters nor digits.

    >>> symbol_ratio("ab+-")
    0.5
    """
    chars = [c for c in text if not c.isspace()]
    return sum(not c.isalnum() for c in chars) / len(chars) if chars else 0.0


def duplicate_line_fraction(text: str) -> float:
    """Share of non-empty lines that repeat an earlier line (Gopher's "duplicate line fraction").

    >>> duplicate_line_fraction("a\\nb\\na\\na")
    0.5
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (len(lines) - len(set(lines))) / len(lines) if lines else 0.0


def duplicate_ngram_fraction(text: str, n: int = 3) -> float:
    """Share of word characters covered by word ``n``-grams that occur more than once.

    Gopher counts characters in duplicated n-grams for n = 5…10; one ``n`` is used here.

    >>> duplicate_ngram_fraction("a b a b", n=2)  # "a b" occurs twice: all four words covered
    1.0
    >>> duplicate_ngram_fraction("a b c d", n=2)
    0.0
    """
    words = text.split()
    if len(words) < n:
        return 0.0
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    counts = Counter(grams)
    covered = np.zeros(len(words), dtype=bool)
    for i, g in enumerate(grams):
        if counts[g] > 1:
            covered[i : i + n] = True
    lengths = np.array([len(w) for w in words])
    return float(lengths[covered].sum() / lengths.sum())


def charset_fraction(text: str, allowed: frozenset[str] = PRINTABLE_ASCII) -> float:
    """Share of characters in ``allowed``. ``charset_fraction("héllo") == 0.8``."""
    return sum(c in allowed for c in text) / len(text) if text else 1.0


# ---------------------------------------------------------------------------- filters


@FILTERS.register("length")
@dataclass
class LengthFilter:
    """Keep documents with ``min_chars ≤ len ≤ max_chars`` and at least ``min_words`` words."""

    min_chars: int = 1
    max_chars: int | None = None
    min_words: int = 0
    sources: tuple[str, ...] | None = None
    name: str = "length"

    def __call__(self, docs: Sequence[Document]) -> list[bool]:
        hi = self.max_chars if self.max_chars is not None else float("inf")
        return [self.min_chars <= len(d.text) <= hi and len(d.text.split()) >= self.min_words for d in docs]


@FILTERS.register("symbol_ratio")
@dataclass
class SymbolRatioFilter:
    """Keep documents whose :func:`symbol_ratio` is at most ``max_ratio``.

    Gopher bounds the ratio of ``#`` and ``…`` to words at 0.1; this counts every
    non-alphanumeric character, so natural prose sits near 0.05 and code near 0.2–0.35.
    """

    max_ratio: float = 0.3
    sources: tuple[str, ...] | None = None
    name: str = "symbol_ratio"

    def __call__(self, docs: Sequence[Document]) -> list[bool]:
        return [symbol_ratio(d.text) <= self.max_ratio for d in docs]


@FILTERS.register("repetition")
@dataclass
class RepetitionFilter:
    """Drop documents with too many repeated lines or repeated word ``ngram``-grams (Gopher's rules)."""

    max_duplicate_line_fraction: float = 0.3
    max_duplicate_ngram_fraction: float = 0.2
    ngram: int = 3
    sources: tuple[str, ...] | None = None
    name: str = "repetition"

    def __call__(self, docs: Sequence[Document]) -> list[bool]:
        return [
            duplicate_line_fraction(d.text) <= self.max_duplicate_line_fraction
            and duplicate_ngram_fraction(d.text, self.ngram) <= self.max_duplicate_ngram_fraction
            for d in docs
        ]


@FILTERS.register("charset")
@dataclass
class CharsetFilter:
    """Keep documents with ≥ ``min_fraction`` of characters in ``allowed`` (default: printable ASCII)."""

    min_fraction: float = 0.95
    allowed: str | None = None
    sources: tuple[str, ...] | None = None
    name: str = "charset"

    def __post_init__(self) -> None:
        self._allowed = frozenset(self.allowed) if self.allowed is not None else PRINTABLE_ASCII

    def __call__(self, docs: Sequence[Document]) -> list[bool]:
        return [charset_fraction(d.text, self._allowed) >= self.min_fraction for d in docs]


@FILTERS.register("python_syntax")
@dataclass
class PythonSyntaxFilter:
    """Keep documents that ``ast.parse`` accepts. Scope it to code sources with ``sources``."""

    sources: tuple[str, ...] | None = None
    name: str = "python_syntax"

    def __call__(self, docs: Sequence[Document]) -> list[bool]:
        return [_parses(d.text) for d in docs]


def _parses(text: str) -> bool:
    try:
        with warnings.catch_warnings():  # invalid escape sequences in old code warn, they do not fail
            warnings.simplefilter("ignore")
            ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # ValueError: null bytes
        return False
    return True


@dataclass
class ScoreFilter:
    """Keep documents whose learned score (e.g. a perplexity) is at most ``max_score``.

    In a recipe, ``{type: perplexity, reference: good.txt, max_score: 20}`` builds one from a
    character n-gram model fitted on a reference file (:func:`perplexity_filter`).
    """

    scorer: Scorer
    max_score: float
    sources: tuple[str, ...] | None = None
    name: str = "score"

    def __call__(self, docs: Sequence[Document]) -> list[bool]:
        scores = self.scorer([d.text for d in docs])  # (N,)
        return [bool(s <= self.max_score) for s in scores]  # NaN compares False: dropped


@FILTERS.register("perplexity")
def perplexity_filter(
    reference: str, max_score: float, n: int = 5, sources: list[str] | None = None, name: str = "perplexity"
) -> ScoreFilter:
    """Keep documents whose perplexity under a character ``n``-gram model of ``reference`` (a text
    file of the kind of text wanted) is at most ``max_score`` — CCNet's quality filter, scaled down."""
    path = Path(reference)
    if not path.is_file():
        raise UserError(f"data.filters: perplexity: reference file not found: {path}")
    texts = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    if not texts:
        raise UserError(f"data.filters: perplexity: {path} holds no text")
    return ScoreFilter(CharNGramScorer.fit(texts, n=n), max_score, tuple(sources) if sources else None, name)


# ---------------------------------------------------------------------------- applying


@dataclass
class FilterReport:
    """Per filter (in order): documents judged, kept and dropped; and the totals."""

    documents_in: int = 0
    documents_out: int = 0
    filters: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "documents_in": self.documents_in,
            "documents_out": self.documents_out,
            "filters": self.filters,
        }

    def write(self, run_dir: str | Path) -> Path:
        """Write ``<run_dir>/filter_stats.json``; returns its path."""
        return write_json(Path(run_dir) / "filter_stats.json", self.to_dict())


def apply_filters(docs: Sequence[Document], filters: Sequence[Filter]) -> tuple[list[Document], FilterReport]:
    """Run ``filters`` in order; a document must pass every filter that judges it. -> (kept, report)."""
    names = [f.name for f in filters]
    if len(set(names)) != len(names):
        raise UserError(f"data.filters: filter names must be unique (got {names}); set `name` on repeats")
    report = FilterReport(documents_in=len(docs))
    kept = list(docs)
    for f in filters:
        judged = [i for i, d in enumerate(kept) if f.sources is None or d.source in f.sources]
        keep = f([kept[i] for i in judged]) if judged else []
        if len(keep) != len(judged):
            raise ValueError(f"filter {f.name!r} returned {len(keep)} decisions for {len(judged)} documents")
        drop = {i for i, k in zip(judged, keep) if not k}
        report.filters[f.name] = {
            "judged": len(judged),
            "kept": len(judged) - len(drop),
            "dropped": len(drop),
        }
        kept = [d for i, d in enumerate(kept) if i not in drop]
    report.documents_out = len(kept)
    return kept, report
