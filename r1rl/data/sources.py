"""Document sources, a seeded weighted mixture across them, and a hash-based validation split.

A *source* is anything iterable over :class:`Document` with a ``name`` and a ``size_hint()``
(documents, or ``None`` when unknown — a streamed dataset). Built-in types, by registered name:

==============  ===================================================================================
``file``        local ``.txt`` / ``.md`` / ``.py`` / ``.jsonl`` / ``.parquet`` files, or folders of them
``hf``          a Hugging Face dataset via ``datasets.load_dataset`` (``streaming`` for large ones)
``arithmetic``  the embedded task's problems as text, registered by its file (:mod:`r1rl.tasks.arithmetic`)
``stdlib``      the running Python's standard-library ``.py`` files: a real code corpus, offline
==============  ===================================================================================

The mixture draws each document's source with probability

    p_i ∝ w_i^(1/T)

(temperature sampling, Arivazhagan et al. 2019, "Massively Multilingual Neural Machine
Translation in the Wild"; with ``weighting="size"`` the weights are the sources'
document counts, so T=1 is proportional-to-size and T→∞ uniform). The draws come from one
``numpy`` generator seeded by ``seed``, so the document sequence is a function of the seed.

    >>> mixture_probabilities([1.0, 4.0], temperature=2.0).round(3).tolist()
    [0.333, 0.667]
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sysconfig
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from r1rl.data.dedup import normalize_text
from r1rl.errors import UserError
from r1rl.registry import Registry

TEXT_SUFFIXES = (".txt", ".md", ".py")
FILE_SUFFIXES = (*TEXT_SUFFIXES, ".jsonl", ".parquet")
_DRAW_BLOCK = 1024  # mixture source choices drawn per numpy call


@dataclass(frozen=True, eq=True)
class Document:
    """One training document. ``meta`` carries what later steps may use (``operands``, ``lang``, ``path``)."""

    text: str
    source: str
    meta: Mapping[str, Any] = field(default_factory=dict, hash=False)


@runtime_checkable
class Source(Protocol):
    name: str

    def __iter__(self) -> Iterator[Document]: ...

    def size_hint(self) -> int | None:
        """Number of documents one pass yields, or ``None`` when unknown without reading it all."""
        ...


SOURCES: Registry[Callable[..., Source]] = Registry("source type")  # the constructors, built from config


def build_source(spec: Mapping[str, Any], key: str = "data.sources") -> Source:
    """A source from ``{"type": ..., **arguments}``, e.g. ``{"type": "file", "path": "corpus/"}``."""
    return SOURCES.build(spec, key)


# ---------------------------------------------------------------------------- local files


@SOURCES.register("file")
@dataclass
class FileSource:
    """Local files, or every supported file under a folder (recursively, in sorted order).

    ``.txt``/``.md``/``.py`` files give one document per file (``text_unit="file"``), per
    non-empty line (``"line"``) or per blank-line-separated paragraph (``"paragraph"``);
    ``.jsonl`` gives one per line and ``.parquet`` one per row, reading ``text_field``.
    ``.py`` files are tagged ``meta["lang"] = "python"``.
    """

    path: str
    name: str = ""
    text_field: str = "text"
    text_unit: Literal["file", "line", "paragraph"] = "file"

    def __post_init__(self) -> None:
        self.name = self.name or Path(self.path).name
        root = Path(self.path).expanduser()
        if not root.exists():
            raise UserError(f"data source {self.name!r}: no such file or folder: {self.path}")
        if root.is_file():
            if root.suffix not in FILE_SUFFIXES:
                raise UserError(
                    f"data source {self.name!r}: unsupported file type {root.suffix!r} for {root} "
                    f"(supported: {', '.join(FILE_SUFFIXES)})"
                )
            self.files = [root]
        else:
            self.files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in FILE_SUFFIXES)
            if not self.files:
                raise UserError(
                    f"data source {self.name!r}: folder {root} holds no {'/'.join(FILE_SUFFIXES)} files"
                )
        if self.text_unit not in ("file", "line", "paragraph"):
            raise UserError(f"data source {self.name!r}: text_unit must be file, line or paragraph")

    def __iter__(self) -> Iterator[Document]:
        for f in self.files:
            if f.suffix == ".jsonl":
                yield from self._jsonl(f)
            elif f.suffix == ".parquet":
                yield from self._parquet(f)
            else:
                yield from self._text(f)

    def size_hint(self) -> int | None:
        if self.text_unit != "file" and any(f.suffix in TEXT_SUFFIXES for f in self.files):
            return None
        n = 0
        for f in self.files:
            if f.suffix == ".jsonl":
                with f.open("rb") as fh:
                    n += sum(1 for line in fh if line.strip())
            elif f.suffix == ".parquet":
                import pyarrow.parquet as pq

                n += pq.ParquetFile(f).metadata.num_rows
            else:
                n += 1
        return n

    def _meta(self, f: Path) -> dict[str, Any]:
        meta: dict[str, Any] = {"path": str(f)}
        if f.suffix == ".py":
            meta["lang"] = "python"
        return meta

    def _text(self, f: Path) -> Iterator[Document]:
        text = f.read_text(encoding="utf-8", errors="replace")
        if self.text_unit == "file":
            parts = [text]
        elif self.text_unit == "line":
            parts = [line for line in text.splitlines() if line.strip()]
        else:
            parts = [p.strip("\n") for p in text.split("\n\n") if p.strip()]
        meta = self._meta(f)
        for part in parts:
            yield Document(part, self.name, meta)

    def _jsonl(self, f: Path) -> Iterator[Document]:
        with f.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise UserError(
                        f"data source {self.name!r}: {f}:{lineno}: not valid JSON ({e.msg})"
                    ) from None
                if not isinstance(row, dict) or self.text_field not in row:
                    keys = sorted(row) if isinstance(row, dict) else type(row).__name__
                    raise UserError(
                        f"data source {self.name!r}: {f}:{lineno} has no field {self.text_field!r} "
                        f"(has {keys})"
                    )
                meta = {k: v for k, v in row.items() if k != self.text_field}
                yield Document(str(row[self.text_field]), self.name, {"path": str(f), **meta})

    def _parquet(self, f: Path) -> Iterator[Document]:
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(f)
        if self.text_field not in pf.schema_arrow.names:
            names = pf.schema_arrow.names
            raise UserError(f"data source {self.name!r}: {f} has no column {self.text_field!r} (has {names})")
        for batch in pf.iter_batches(columns=[self.text_field], batch_size=1024):
            for text in batch.column(0).to_pylist():
                if text is not None:
                    yield Document(str(text), self.name, {"path": str(f)})


# ---------------------------------------------------------------------------- Hugging Face datasets


@SOURCES.register("hf")
@dataclass
class HFDatasetSource:
    """A Hugging Face dataset: ``datasets.load_dataset(path, config_name, split=..., streaming=...)``.

    ``path`` is a Hub id, a local dataset script/folder, or a builder such as ``"json"`` with
    ``data_files``. ``streaming=True`` reads lazily (an ``IterableDataset``), for corpora that
    do not fit on disk; its ``size_hint`` is then unknown.
    """

    path: str
    name: str = ""
    config_name: str | None = None
    split: str = "train"
    text_field: str = "text"
    streaming: bool = False
    data_files: str | list[str] | dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.name = self.name or self.path.rstrip("/").split("/")[-1]
        self._ds: Any = None

    def _load(self) -> Any:
        if self._ds is None:
            import datasets

            try:
                self._ds = datasets.load_dataset(
                    self.path,
                    self.config_name,
                    split=self.split,
                    streaming=self.streaming,
                    data_files=self.data_files,
                )
            except (FileNotFoundError, ValueError, ConnectionError, OSError) as e:
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise UserError(
                    f"data source {self.name!r}: cannot load dataset {self.path!r}: {first}"
                ) from None
            columns = self._ds.column_names
            if columns is not None and self.text_field not in columns:
                raise UserError(
                    f"data source {self.name!r}: dataset {self.path!r} has no column "
                    f"{self.text_field!r} (has {columns})"
                )
        return self._ds

    def __iter__(self) -> Iterator[Document]:
        for row in self._load():
            text = row[self.text_field]
            if text is not None:
                yield Document(str(text), self.name, {})

    def size_hint(self) -> int | None:
        return None if self.streaming else len(self._load())


# ---------------------------------------------------------------------------- stdlib code


@SOURCES.register("stdlib")
@dataclass
class PythonStdlibSource:
    """The ``.py`` files of this interpreter's standard library (``sysconfig``'s ``stdlib`` path).

    Skips ``site-packages``; skips test suites unless ``include_tests`` (they contain files that
    are invalid on purpose, which the ``python_syntax`` filter then drops). Files larger than
    ``max_bytes`` are skipped; ``max_files`` keeps the first files in sorted path order.
    """

    name: str = "stdlib"
    root: str | None = None
    max_files: int | None = None
    max_bytes: int = 200_000
    include_tests: bool = False

    def __post_init__(self) -> None:
        root = Path(self.root or sysconfig.get_paths()["stdlib"])
        if not root.is_dir():
            raise UserError(f"data source {self.name!r}: no standard library folder at {root}")
        files = []
        for p in sorted(root.rglob("*.py")):
            parts = p.relative_to(root).parts
            if "site-packages" in parts or "dist-packages" in parts:
                continue
            if not self.include_tests and any(part in ("test", "tests", "idle_test") for part in parts):
                continue
            if p.stat().st_size > self.max_bytes:
                continue
            files.append(p)
        self.files = files[: self.max_files] if self.max_files is not None else files
        self._root = root

    def __iter__(self) -> Iterator[Document]:
        for p in self.files:
            text = p.read_text(encoding="utf-8", errors="replace")
            yield Document(text, self.name, {"path": str(p.relative_to(self._root)), "lang": "python"})

    def size_hint(self) -> int | None:
        return len(self.files)


# ---------------------------------------------------------------------------- mixture


def mixture_probabilities(weights: Sequence[float], temperature: float = 1.0) -> np.ndarray:
    """Sampling probabilities ``p_i ∝ w_i^(1/T)``. -> (S,), sums to 1.

    ``temperature`` 1 keeps the weights' proportions; larger values flatten towards uniform.
    """
    w = np.asarray(weights, dtype=np.float64)  # (S,)
    if w.ndim != 1 or len(w) == 0 or (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
        raise UserError(
            f"data mixture: weights must be non-negative, finite and not all zero (got {list(w)})"
        )
    if temperature <= 0:
        raise UserError(f"data mixture: temperature must be > 0 (got {temperature})")
    p = np.where(w > 0, w, 0.0) ** (1.0 / temperature)
    return p / p.sum()


@dataclass
class MixtureStats:
    """Documents drawn per source and how many times each source was restarted (``epochs``)."""

    probabilities: dict[str, float]
    drawn: dict[str, int]
    epochs: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {"probabilities": self.probabilities, "drawn": self.drawn, "epochs": self.epochs}


class Mixture:
    """A weighted, seeded interleaving of sources.

    Each document's source is drawn with :func:`mixture_probabilities`; a source that runs out
    restarts from its beginning (``cycle=True``, counted in ``stats.epochs``) or leaves the
    mixture, the others' probabilities renormalised (``cycle=False``). ``weighting="size"``
    uses each source's ``size_hint()`` as its weight (all must be known).
    """

    def __init__(
        self,
        sources: Sequence[Source],
        weights: Sequence[float] | None = None,
        *,
        temperature: float = 1.0,
        weighting: Literal["given", "size"] = "given",
        seed: int = 0,
        cycle: bool = False,
    ) -> None:
        if not sources:
            raise UserError("data mixture: no sources given")
        names = [s.name for s in sources]
        if len(set(names)) != len(names):
            raise UserError(f"data mixture: source names must be unique (got {names}); set `name` on each")
        if weighting == "size":
            sizes = [s.size_hint() for s in sources]
            unknown = [s.name for s, n in zip(sources, sizes) if n is None]
            if unknown:
                raise UserError(f"data mixture: weighting='size' needs known sizes; unknown for {unknown}")
            weights = [float(n) for n in sizes]  # type: ignore[arg-type]
        elif weighting != "given":
            raise UserError(f"data mixture: weighting must be 'given' or 'size' (got {weighting!r})")
        weights = [1.0] * len(sources) if weights is None else list(weights)
        if len(weights) != len(sources):
            raise UserError(f"data mixture: {len(weights)} weights for {len(sources)} sources")
        self.sources = list(sources)
        self.probabilities = mixture_probabilities(weights, temperature)  # (S,)
        self.seed = seed
        self.cycle = cycle

    def __iter__(self) -> Iterator[Document]:
        yield from self._draw(stats=None)

    def take(self, n: int) -> tuple[list[Document], MixtureStats]:
        """The first ``n`` documents of the mixture (fewer if every source ran out) and statistics."""
        stats = MixtureStats(
            {s.name: float(p) for s, p in zip(self.sources, self.probabilities)},
            {s.name: 0 for s in self.sources},
            {s.name: 0 for s in self.sources},
        )
        return list(itertools.islice(self._draw(stats), n)), stats

    def _draw(self, stats: MixtureStats | None) -> Iterator[Document]:
        rng = np.random.default_rng(self.seed)
        iters: list[Iterator[Document]] = [iter(s) for s in self.sources]
        p = self.probabilities.copy()
        block: list[int] = []  # source choices drawn ahead, last first; redrawn when p changes
        while p.sum() > 0:
            if not block:
                block = rng.choice(len(p), size=_DRAW_BLOCK, p=p / p.sum()).tolist()[::-1]
            i = block.pop()
            doc = next(iters[i], None)
            if doc is None and self.cycle:
                iters[i] = iter(self.sources[i])
                doc = next(iters[i], None)
                if stats is not None and doc is not None:
                    stats.epochs[self.sources[i].name] += 1
            if doc is None:  # exhausted (or empty): leave the mixture
                p[i] = 0.0
                block = []
                continue
            if stats is not None:
                stats.drawn[doc.source] = stats.drawn.get(doc.source, 0) + 1
            yield doc


# ---------------------------------------------------------------------------- validation split


def split_train_val(
    docs: Sequence[Document], val_fraction: float, seed: int = 0
) -> tuple[list[Document], list[Document]]:
    """Hold out about ``val_fraction`` of documents, chosen by a seeded hash of their normalised text.

    Membership depends only on the text and the seed — not on order or corpus size — so a
    document that appears twice lands on the same side twice, and adding sources never moves
    an existing document across the split.

        >>> docs = [Document(f"doc {i}", "s") for i in range(1000)]
        >>> train, val = split_train_val(docs, 0.1, seed=0)
        >>> len(train) + len(val), 70 < len(val) < 130
        (1000, True)
    """
    if not 0 <= val_fraction < 1:
        raise UserError(f"data.val_fraction must be in [0, 1) (got {val_fraction})")
    train: list[Document] = []
    val: list[Document] = []
    for d in docs:
        h = hashlib.blake2b(f"{seed}\0{normalize_text(d.text)}".encode(), digest_size=8).digest()
        (val if int.from_bytes(h, "big") / 2**64 < val_fraction else train).append(d)
    return train, val
