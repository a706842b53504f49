"""Tokenisation (cached through ``datasets.map``), packing into fixed-length rows, per-document loss.

Notation: ``D`` documents, ``R`` rows, ``T`` = ``seq_len`` tokens per row, ``V`` vocabulary.

Every document is followed by one EOS token; the EOS belongs to (and is a training target
of) the document it ends. Two packers:

- :func:`pack_stream` — GPT-2 style: all documents concatenated and cut every ``T`` tokens,
  so a document may continue on the next row. Nothing is padded except, with
  ``drop_last=False``, the last row.
- :func:`pack_documents` — next-fit: a document starts a new row when it does not fit in the
  rest of the current one; only a document longer than ``T`` is split across rows. The
  unused tail of each row is padding (label ``-100``). Used where each row must hold whole
  documents, e.g. for per-document losses (replay).

**Attention across document boundaries.** Each :class:`PackedBatch` carries ``segment_ids``
(which document a token belongs to; ``-1`` on padding) and ``position_ids`` that restart at
0 at every document start and at every row start. :meth:`PackedBatch.model_inputs` gives
the model either

- ``isolate_documents=False`` (the default, what pretraining does today):
  ``attention_mask`` of 1 on every real token — *attention crosses document boundaries*
  within a row (causally), positions run 0…T−1 along the row, and the EOS separator is
  what tells the model a new document began; or
- ``isolate_documents=True``: ``position_ids``, **no** ``attention_mask`` and
  ``use_cache=False``. transformers (``masking_utils.find_packed_sequence_indices``, used
  by Qwen3-MoE, Mixtral, Llama …) then builds a block-diagonal causal mask from the
  position resets, so *a token attends only to earlier tokens of its own document*
  (tested: a packed document's logits equal its logits alone). Both conditions matter and
  fail silently: any ``attention_mask``, or a KV cache (``use_cache`` defaults to True and
  makes the model create one), switches the detection off. Padding sits at row ends with
  position 0, after every real token, so no real token attends to it; the router's
  load-balance loss does count padded positions in this mode, since it receives no mask.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from r1rl.errors import UserError

IGNORE_INDEX = -100


@dataclass
class PackedBatch:
    """Packed rows. All tensors are (R, T) int64."""

    input_ids: torch.Tensor
    labels: torch.Tensor  # input_ids, IGNORE_INDEX on padding
    position_ids: torch.Tensor  # 0 at each document start and each row start; 0 on padding
    segment_ids: torch.Tensor  # index of the document in the packed list; -1 on padding

    @property
    def num_tokens(self) -> int:
        """Real (non-padding) tokens."""
        return int((self.segment_ids >= 0).sum())

    def model_inputs(self, isolate_documents: bool = False) -> dict[str, Any]:
        """Keyword arguments for a causal LM's forward; see the module docstring for the two modes."""
        if isolate_documents:
            # use_cache=False: with a KV cache present transformers skips packed-sequence detection
            return {
                "input_ids": self.input_ids,
                "position_ids": self.position_ids,
                "labels": self.labels,
                "use_cache": False,
            }
        mask = (self.segment_ids >= 0).long()  # (R, T)
        return {"input_ids": self.input_ids, "attention_mask": mask, "labels": self.labels}


def _with_eos(token_lists: Sequence[Sequence[int]], eos_id: int) -> list[np.ndarray]:
    return [np.append(np.asarray(ids, dtype=np.int64), eos_id) for ids in token_lists]


def pack_stream(
    token_lists: Sequence[Sequence[int]],
    seq_len: int,
    eos_id: int,
    pad_id: int | None = None,
    drop_last: bool = True,
) -> PackedBatch:
    """Concatenate documents, each followed by EOS, and cut into rows of ``seq_len``. -> R rows.

    ``drop_last=True`` drops the final partial row (as ``r1rl.train.pretrain.pack`` does);
    ``drop_last=False`` pads it with ``pad_id`` so no token is lost.

        >>> b = pack_stream([[5, 6], [7]], seq_len=3, eos_id=0, pad_id=9, drop_last=False)
        >>> b.input_ids.tolist(), b.position_ids.tolist(), b.segment_ids.tolist()
        ([[5, 6, 0], [7, 0, 9]], [[0, 1, 2], [0, 1, 0]], [[0, 0, 0], [1, 1, -1]])
    """
    docs = _with_eos(token_lists, eos_id)
    lens = np.array([len(d) for d in docs], dtype=np.int64)  # (D,)
    flat = np.concatenate(docs) if docs else np.zeros(0, dtype=np.int64)
    seg = np.repeat(np.arange(len(docs)), lens)
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]]) if len(docs) else np.zeros(0, dtype=np.int64)
    col = np.arange(len(flat)) % seq_len
    pos = np.minimum(np.arange(len(flat)) - starts[seg], col)  # restart at document and row starts
    n_rows = len(flat) // seq_len if drop_last else -(-len(flat) // seq_len)
    if n_rows == 0:
        raise UserError(f"corpus has {len(flat)} tokens, fewer than one row of data.seq_len={seq_len}")
    n = n_rows * seq_len
    if n > len(flat):
        if pad_id is None:
            raise ValueError("pack_stream(drop_last=False) needs pad_id")
        extra = n - len(flat)
        flat = np.concatenate([flat, np.full(extra, pad_id)])
        seg = np.concatenate([seg, np.full(extra, -1)])
        pos = np.concatenate([pos, np.zeros(extra, dtype=np.int64)])
    ids = torch.from_numpy(flat[:n].reshape(n_rows, seq_len).copy())
    seg_t = torch.from_numpy(seg[:n].reshape(n_rows, seq_len).copy())
    return PackedBatch(
        input_ids=ids,
        labels=ids.masked_fill(seg_t < 0, IGNORE_INDEX),
        position_ids=torch.from_numpy(pos[:n].reshape(n_rows, seq_len).copy()),
        segment_ids=seg_t,
    )


def next_fit_rows(lengths: Sequence[int], seq_len: int) -> list[tuple[int, int]]:
    """Where next-fit packing puts each document: ``(row, column)`` of its first token.

    A document (length including EOS) starts a new row unless it fits in the current one;
    one longer than ``seq_len`` starts a new row and runs over as many rows as it needs.

        >>> next_fit_rows([2, 2, 3, 5], seq_len=4)
        [(0, 0), (0, 2), (1, 0), (2, 0)]
    """
    places = []
    row, used = 0, 0
    for n in lengths:
        if used and used + n > seq_len:
            row, used = row + 1, 0
        places.append((row, used))
        row, used = row + (used + n) // seq_len, (used + n) % seq_len
    return places


def rows_needed(lengths: Sequence[int], seq_len: int) -> int:
    """Rows that :func:`next_fit_rows` fills for documents of these lengths (EOS included)."""
    if not len(lengths):
        return 0
    (row, col), n = next_fit_rows(lengths, seq_len)[-1], lengths[-1]
    return row + -(-(col + n) // seq_len)


def pack_documents(
    token_lists: Sequence[Sequence[int]],
    seq_len: int,
    eos_id: int,
    pad_id: int,
    num_rows: int | None = None,
) -> PackedBatch:
    """Next-fit packing of whole documents (each + EOS), padded to ``seq_len``; see :func:`next_fit_rows`.

    ``num_rows`` pads the batch with empty rows up to that count (an error if more are needed).

        >>> b = pack_documents([[5, 6], [7, 8, 9]], seq_len=4, eos_id=0, pad_id=1)
        >>> b.input_ids.tolist(), b.segment_ids.tolist()
        ([[5, 6, 0, 1], [7, 8, 9, 0]], [[0, 0, 0, -1], [1, 1, 1, 1]])
    """
    docs = _with_eos(token_lists, eos_id)
    lengths = [len(d) for d in docs]
    need = rows_needed(lengths, seq_len)
    rows = need if num_rows is None else num_rows
    if need > rows:
        raise ValueError(f"{len(docs)} documents need {need} rows of {seq_len}; only {rows} allowed")
    ids = np.full(rows * seq_len, pad_id, dtype=np.int64)
    seg = np.full(rows * seq_len, -1, dtype=np.int64)
    pos = np.zeros(rows * seq_len, dtype=np.int64)  # padding: 0 (see PackedBatch.position_ids)
    for d, (doc, (row, col)) in enumerate(zip(docs, next_fit_rows(lengths, seq_len))):
        start = row * seq_len + col
        j = np.arange(start, start + len(doc))
        ids[j], seg[j] = doc, d
        pos[j] = np.minimum(j - start, j % seq_len)
    ids_t = torch.from_numpy(ids.reshape(rows, seq_len))
    seg_t = torch.from_numpy(seg.reshape(rows, seq_len))
    return PackedBatch(
        input_ids=ids_t,
        labels=ids_t.masked_fill(seg_t < 0, IGNORE_INDEX),
        position_ids=torch.from_numpy(pos.reshape(rows, seq_len)),
        segment_ids=seg_t,
    )


def per_document_loss(
    logits: torch.Tensor, labels: torch.Tensor, segment_ids: torch.Tensor, num_docs: int
) -> torch.Tensor:
    """Mean next-token loss of each document. -> (D,); NaN for a document with no target token.

    ``logits`` (R, T, V), ``labels`` and ``segment_ids`` (R, T). The target at position
    ``t+1`` (predicted from ``t``) counts for the document that owns token ``t+1``; the first
    token of each row has no prediction.
    """
    nll = torch.nn.functional.cross_entropy(
        logits[:, :-1].transpose(1, 2).float(), labels[:, 1:], ignore_index=IGNORE_INDEX, reduction="none"
    )  # (R, T-1)
    seg = segment_ids[:, 1:]  # (R, T-1)
    valid = (labels[:, 1:] != IGNORE_INDEX) & (seg >= 0)
    idx = seg[valid]
    sums = torch.zeros(num_docs, dtype=nll.dtype).index_add_(0, idx, nll[valid])
    counts = torch.zeros(num_docs, dtype=nll.dtype).index_add_(0, idx, torch.ones_like(nll[valid]))
    return sums / counts  # 0/0 = NaN where a document had no target


# ---------------------------------------------------------------------------- tokenisation


def _tokenize_batch(batch: dict[str, list[str]], tokenizer: Any) -> dict[str, list[list[int]]]:
    return {"input_ids": tokenizer(batch["text"], add_special_tokens=False)["input_ids"]}


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of the tokenizer's full definition (vocabulary, merges, normaliser, added tokens)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    spec = backend.to_str() if backend is not None else repr(sorted(tokenizer.get_vocab().items()))
    return hashlib.blake2b(spec.encode(), digest_size=8).hexdigest()


def tokenize_corpus(
    texts: Sequence[str],
    tokenizer: Any,
    cache_dir: str | Path | None = None,
    num_proc: int | None = None,
    batch_size: int = 1000,
) -> Any:
    """Tokenise ``texts`` with ``datasets.map`` (``num_proc`` worker processes); returns a ``Dataset``.

    The result has one column, ``input_ids`` (no special tokens added). With ``cache_dir``
    it is written to ``tokens-<fingerprint>.arrow`` there, the fingerprint hashing the
    tokenizer's definition and every text, and a later call with the same inputs loads that
    file instead of tokenising again (``datasets``' ``load_from_cache_file``).
    """
    import datasets

    ds = datasets.Dataset.from_dict({"text": list(texts)})
    kwargs: dict[str, Any] = {}
    if cache_dir is not None:
        h = hashlib.blake2b(tokenizer_fingerprint(tokenizer).encode(), digest_size=8)
        for t in texts:
            h.update(t.encode("utf-8", errors="replace"))
            h.update(b"\0")
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        kwargs["cache_file_name"] = str(Path(cache_dir) / f"tokens-{h.hexdigest()}.arrow")
        kwargs["new_fingerprint"] = h.hexdigest()
    return ds.map(
        _tokenize_batch,
        batched=True,
        batch_size=batch_size,
        num_proc=num_proc if num_proc and num_proc > 1 and len(texts) > batch_size else None,
        fn_kwargs={"tokenizer": tokenizer},
        remove_columns=["text"],
        load_from_cache_file=cache_dir is not None,
        desc="tokenising",
        **kwargs,
    )
