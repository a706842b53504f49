"""Pretraining from scratch: tokenizer, corpus, a tiny Qwen3-MoE, next-token + router loss.

The corpus is the embedded task's training split rendered as text: plain worked chains
(``37+48=85 85-12=73``) and, for ``data.formatted_fraction`` of documents, the full
prompt + answer format. Documents are joined with EOS and packed into fixed-length rows;
attention crosses document boundaries within a row (as in GPT-2-style packing), which the
EOS separator makes learnable.
"""

from __future__ import annotations

import random

import torch

from r1rl.config import PretrainConfig
from r1rl.model import build_config, build_model, count_parameters
from r1rl.rundir import RunDir, render_plots
from r1rl.stages.supervised import train_supervised
from r1rl.tasks.arithmetic import ArithmeticTask
from r1rl.tokenizer import train_tokenizer
from r1rl.training import setup


def build_corpus(cfg: PretrainConfig) -> list[str]:
    task = ArithmeticTask(**cfg.task.model_dump())
    rng = random.Random(cfg.seed)
    docs = []
    for p in task.problems("train", cfg.data.num_problems, seed=cfg.seed, allow_fewer=True):
        formatted = rng.random() < cfg.data.formatted_fraction
        docs.append(p.prompt + p.completion if formatted else p.chain_text)
    return docs


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


def run(cfg: PretrainConfig) -> RunDir:
    rd = RunDir(cfg.output_dir)
    if rd.is_finished():
        return rd
    rd.start(cfg)
    setup(cfg.seed, cfg.threads)
    docs = build_corpus(cfg)
    tokenizer = train_tokenizer(docs[: cfg.tokenizer.num_texts], vocab_size=cfg.tokenizer.vocab_size)
    mc = build_config(
        cfg.model.preset,
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        max_position_embeddings=cfg.model.max_position_embeddings,
        router_aux_loss_coef=cfg.model.router_aux_loss_coef,
        overrides=cfg.model.overrides,
    )
    model = build_model(mc, cfg.seed)
    print(f"[pretrain] {count_parameters(model) / 1e6:.2f}M parameters, {len(docs)} documents")
    rows = pack(tokenizer(docs, add_special_tokens=False).input_ids, tokenizer.eos_token_id, cfg.data.seq_len)
    bs = cfg.train.batch_size

    def get_batch(step: int) -> dict[str, torch.Tensor]:
        per_epoch = max(1, rows.shape[0] // bs)
        epoch, i = divmod(step, per_epoch)
        perm = torch.randperm(rows.shape[0], generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch))
        ids = rows[perm[i * bs : (i + 1) * bs]]
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}

    train_supervised(model, get_batch, cfg.train, rd, "pretrain")
    render_plots(rd, "pretrain")
    with rd.writing_final() as final:
        model.save_pretrained(final)
        tokenizer.save_pretrained(final)
    return rd
