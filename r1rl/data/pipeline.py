"""From sources to a clean train/validation corpus: mixture → quality filters → dedup → split.

Filters run before deduplication (as in Gopher and RefinedWeb) because they are cheaper per
document than MinHash and shrink what dedup must index. Statistics of every step are
returned and, given a run directory, written there as JSON:

    <run_dir>/data_stats.json     {"mixture": ..., "filters": ..., "dedup": ..., "split": ...}
    <run_dir>/filter_stats.json   kept/dropped per filter
    <run_dir>/dedup_stats.json    documents in/out, exact and near duplicates removed
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from r1rl.data.dedup import deduplicate, write_json
from r1rl.data.filters import Filter, apply_filters
from r1rl.data.sources import Document, Mixture, Source, split_train_val


@dataclass
class Corpus:
    train: list[Document]
    val: list[Document]
    stats: dict[str, Any] = field(default_factory=dict)


def prepare_corpus(
    sources: Sequence[Source],
    num_documents: int,
    *,
    weights: Sequence[float] | None = None,
    temperature: float = 1.0,
    weighting: Literal["given", "size"] = "given",
    cycle: bool = False,
    filters: Sequence[Filter] = (),
    dedup: Mapping[str, Any] | None = None,
    val_fraction: float = 0.0,
    seed: int = 0,
    run_dir: str | Path | None = None,
) -> Corpus:
    """Draw ``num_documents`` from the mixture, filter, deduplicate, split off validation.

    ``dedup`` holds :func:`~r1rl.data.dedup.deduplicate`'s keyword arguments (``None`` = no
    deduplication; ``{}`` = exact and near with defaults).
    """
    mixture = Mixture(sources, weights, temperature=temperature, weighting=weighting, seed=seed, cycle=cycle)
    docs, mix_stats = mixture.take(num_documents)
    docs, filter_report = apply_filters(docs, filters)
    stats: dict[str, Any] = {"mixture": mix_stats.to_dict(), "filters": filter_report.to_dict()}
    dedup_stats = None
    if dedup is not None:
        docs, dedup_stats = deduplicate(docs, **dedup)
        stats["dedup"] = dedup_stats.to_dict()
    train, val = split_train_val(docs, val_fraction, seed)
    stats["split"] = {"train": len(train), "val": len(val), "val_fraction": val_fraction}
    if run_dir is not None:
        write_json(Path(run_dir) / "data_stats.json", stats)
        filter_report.write(run_dir)
        if dedup_stats is not None:
            dedup_stats.write(run_dir)
    return Corpus(train, val, stats)
