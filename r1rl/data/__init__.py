"""Pretraining data: sources and their mixture, dedup, quality filters, curriculum, replay, packing.

The pieces compose in this order (each is usable alone)::

    sources ─▶ Mixture ─▶ apply_filters ─▶ deduplicate ─▶ split_train_val      (prepare_corpus)
    tokenize_corpus ─▶ difficulty_scores/assign_stages ─▶ CurriculumSampler ┐
                                                         ReplayBuffer ──────┴▶ DocumentBatcher
    DocumentBatcher.get_batch(step) ─▶ model ─▶ DocumentBatcher.feedback(step, logits, loss)

or, without curriculum and replay, ``pack_stream`` over the whole tokenised corpus.
"""

from __future__ import annotations

from r1rl.data.batching import BatcherStats, DocumentBatcher
from r1rl.data.curriculum import (
    DIFFICULTIES,
    STAGE_NAMES,
    CurriculumSampler,
    StageSchedule,
    assign_stages,
    difficulty_scores,
    random_order,
    stage_boundaries,
)
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
from r1rl.data.packing import (
    PackedBatch,
    pack_documents,
    pack_stream,
    per_document_loss,
    tokenize_corpus,
)
from r1rl.data.pipeline import Corpus, prepare_corpus
from r1rl.data.replay import ReplayBuffer, ReplayStats
from r1rl.data.scoring import CausalLMScorer, CharNGramScorer, Scorer
from r1rl.data.sources import (
    SOURCES,
    ArithmeticSource,
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
    "DIFFICULTIES",
    "FILTERS",
    "SOURCES",
    "STAGE_NAMES",
    "ArithmeticSource",
    "BatcherStats",
    "CausalLMScorer",
    "CharNGramScorer",
    "CharsetFilter",
    "Corpus",
    "CurriculumSampler",
    "DedupStats",
    "Document",
    "DocumentBatcher",
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
    "ReplayBuffer",
    "ReplayStats",
    "ScoreFilter",
    "Scorer",
    "Source",
    "StageSchedule",
    "SymbolRatioFilter",
    "apply_filters",
    "assign_stages",
    "build_filter",
    "build_source",
    "deduplicate",
    "difficulty_scores",
    "mixture_probabilities",
    "normalize_text",
    "pack_documents",
    "pack_stream",
    "per_document_loss",
    "prepare_corpus",
    "random_order",
    "shingles",
    "split_train_val",
    "stage_boundaries",
    "text_hash",
    "tokenize_corpus",
]
