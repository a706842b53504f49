"""Pretraining pieces: the corpus, its packing into rows, the model built for it, validation loss.

The corpus is the task's (:meth:`r1rl.tasks.base.Task.corpus`): for the embedded task, plain
worked chains (``37+48=85 85-12=73``) and, for ``data.formatted_fraction`` of documents, the
full prompt + answer format; for a benchmark or ``data.path`` task, its training rows as
prompt + completion, a conversation rendered through the chat template of the tokenizer trained
here (ChatML: ``<|im_start|>``/``<|im_end|>`` are special tokens, trained as single ids). With
``data.sources`` / ``data.filters`` / ``data.dedup`` / ``data.val_fraction`` the corpus goes through
:mod:`r1rl.data` instead: a mixture of sources, quality filters and dedup (their statistics in
``data_stats.json``, ``filter_stats.json``, ``dedup_stats.json``), and a held-out share whose loss is
logged as ``val/loss`` at the end.

Documents are joined with EOS and packed into fixed-length rows; attention crosses document
boundaries within a row (as in GPT-2-style packing), which the EOS separator makes learnable.
The model's generation config stops at EOS and at the chat template's end of turn
(``<|im_end|>``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from r1rl.config import PretrainConfig
from r1rl.data import Document, build_filter, build_source, prepare_corpus
from r1rl.errors import UserError
from r1rl.models.factory import build_config, build_model
from r1rl.models.tokenizer import END_OF_TURN
from r1rl.train.prepare import task_of


def build_corpus(cfg: PretrainConfig) -> list[str]:
    return task_of(cfg).corpus(
        cfg.data.num_problems, cfg.seed, formatted_fraction=cfg.data.formatted_fraction
    )


@dataclass
class _Texts:
    """Documents already rendered (the task's corpus) as an ``r1rl.data`` source."""

    texts: list[str]
    name: str

    def __iter__(self) -> Iterator[Any]:
        return (Document(t, self.name) for t in self.texts)

    def size_hint(self) -> int | None:
        return len(self.texts)


def data_plan(cfg: PretrainConfig) -> tuple[list[Any], list[Any]] | None:
    """Sources and filters of ``data.sources``/``data.filters``, built (and checked) before any work.

    ``None`` when the recipe uses none of the data pipeline: the corpus is then the task's
    documents exactly as :func:`build_corpus` renders them (they are also the one source when
    ``data.sources`` is empty).
    """
    d = cfg.data
    if not (d.sources or d.filters or d.dedup is not None or d.val_fraction > 0):
        return None
    sources = [build_source(spec, f"data.sources[{i}]") for i, spec in enumerate(d.sources)]
    if not sources:
        sources = [_Texts(build_corpus(cfg), task_of(cfg).name)]
    if d.weights is not None and len(d.weights) != len(sources):
        raise UserError(f"data.weights has {len(d.weights)} entries for {len(sources)} sources")
    return sources, [build_filter(spec, f"data.filters[{i}]") for i, spec in enumerate(d.filters)]


def pack(token_lists: list[list[int]], eos_id: int, seq_len: int) -> torch.Tensor:
    """Concatenate documents separated by EOS into rows of ``seq_len`` tokens. -> (rows, seq_len)."""
    flat: list[int] = []
    for ids in token_lists:
        flat.extend(ids)
        flat.append(eos_id)
    rows = len(flat) // seq_len
    if rows == 0:
        raise ValueError(f"corpus has {len(flat)} tokens, fewer than one row of data.seq_len={seq_len}")
    return torch.tensor(flat[: rows * seq_len]).view(rows, seq_len)


@torch.no_grad()
def validation_loss(model: torch.nn.Module, rows: torch.Tensor, batch_size: int) -> float:
    """Mean next-token loss over packed validation rows (router loss excluded). rows: (N, S)."""
    model.eval()
    total, count = 0.0, 0
    for i in range(0, rows.shape[0], batch_size):
        ids = rows[i : i + batch_size]
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[:, :-1].float()
        total += float(
            torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten(), reduction="sum")
        )
        count += ids[:, 1:].numel()
    return total / max(count, 1)


def corpus(
    cfg: PretrainConfig, plan: tuple[list[Any], list[Any]] | None, run_dir: Path | None
) -> tuple[list[str], list[str]]:
    """``(train, validation)`` documents: the task's corpus, or the data pipeline's (stats in ``run_dir``)."""
    if plan is None:
        return build_corpus(cfg), []
    d = cfg.data
    out = prepare_corpus(
        plan[0], d.num_problems, weights=d.weights, temperature=d.temperature, filters=plan[1],
        dedup=d.dedup, val_fraction=d.val_fraction, seed=cfg.seed, run_dir=run_dir,
    )  # fmt: skip
    return [x.text for x in out.train], [x.text for x in out.val]


def model_for(cfg: PretrainConfig, tokenizer: Any) -> torch.nn.Module:
    """A fresh Qwen3-MoE of ``cfg.model.preset`` for ``tokenizer``; generation stops at EOS or end of turn."""
    mc = build_config(
        cfg.model.preset, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, max_position_embeddings=cfg.model.max_position_embeddings,
        router_aux_loss_coef=cfg.model.router_aux_loss_coef, overrides=cfg.model.overrides,
    )  # fmt: skip
    model = build_model(mc, cfg.seed)
    end_of_turn = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, end_of_turn]
    return model


def batches(rows: torch.Tensor, batch_size: int, seed: int) -> Callable[[int], dict[str, torch.Tensor]]:
    """``get_batch(step)``: a seeded permutation of the packed rows per epoch, a pure function of the step."""

    def get_batch(step: int) -> dict[str, torch.Tensor]:
        per_epoch = max(1, rows.shape[0] // batch_size)
        epoch, i = divmod(step, per_epoch)
        perm = torch.randperm(rows.shape[0], generator=torch.Generator().manual_seed(seed * 1000 + epoch))
        ids = rows[perm[i * batch_size : (i + 1) * batch_size]]
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}

    return get_batch
