"""Pretraining data: sources and their mixture, dedup, quality filters, scorers, packing.

The pieces compose in this order (each is usable alone)::

    sources ─▶ Mixture ─▶ apply_filters ─▶ deduplicate ─▶ split_train_val      (prepare_corpus)
    tokenize_corpus ─▶ pack_stream / pack_documents (optionally one document per attention span)

The pretrain stage runs :func:`prepare_corpus` for ``data.sources``, ``data.filters``,
``data.dedup`` and ``data.val_fraction`` (:mod:`r1rl.train.pretrain`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from r1rl.data.dedup import DedupStats, NearDuplicateIndex, deduplicate, normalize_text, shingles, text_hash
from r1rl.data.filters import (
    FILTERS,
    CharsetFilter,
    Filter,
    FilterReport,
    LengthFilter,
    PythonSyntaxFilter,
    RepetitionFilter,
    ScoreFilter,
    SymbolRatioFilter,
    apply_filters,
    build_filter,
)
from r1rl.data.pipeline import Corpus, prepare_corpus
from r1rl.data.scoring import CausalLMScorer, CharNGramScorer, Scorer
from r1rl.data.sources import (
    SOURCES,
    Document,
    FileSource,
    HFDatasetSource,
    Mixture,
    PythonStdlibSource,
    Source,
    build_source,
    mixture_probabilities,
    split_train_val,
)

__all__ = [
    "FILTERS",
    "SOURCES",
    "CausalLMScorer",
    "CharNGramScorer",
    "CharsetFilter",
    "Corpus",
    "DedupStats",
    "Document",
    "FileSource",
    "Filter",
    "FilterReport",
    "HFDatasetSource",
    "LengthFilter",
    "Mixture",
    "NearDuplicateIndex",
    "PackedBatch",
    "PythonStdlibSource",
    "PythonSyntaxFilter",
    "RepetitionFilter",
    "ScoreFilter",
    "Scorer",
    "Source",
    "SymbolRatioFilter",
    "apply_filters",
    "build_filter",
    "build_source",
    "deduplicate",
    "mixture_probabilities",
    "normalize_text",
    "pack_documents",
    "pack_stream",
    "per_document_loss",
    "prepare_corpus",
    "shingles",
    "split_train_val",
    "text_hash",
    "tokenize_corpus",
]

if TYPE_CHECKING:
    from r1rl.data.packing import PackedBatch, pack_documents, pack_stream, per_document_loss, tokenize_corpus

# Packing works on torch tensors; the sources must not load torch (a task's file registers its corpus
# source here, and every config reads the tasks), so packing's names load on first use (PEP 562).
_PACKING = ("PackedBatch", "pack_documents", "pack_stream", "per_document_loss", "tokenize_corpus")


def __getattr__(name: str) -> Any:
    if name in _PACKING:
        return getattr(importlib.import_module("r1rl.data.packing"), name)
    raise AttributeError(f"module 'r1rl.data' has no attribute {name!r}")
