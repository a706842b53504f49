"""Batched generation with HF ``generate`` (KV cache, stop on EOS), returning padded tensors.

Notation: ``B`` batch, ``P`` prompt tokens (left-padded), ``T`` completion tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass
class Generation:
    prompt_ids: torch.Tensor  # (B, P) left-padded
    prompt_mask: torch.Tensor  # (B, P)
    completion_ids: torch.Tensor  # (B, T) right-padded, EOS included when generated
    completion_mask: torch.Tensor  # (B, T) 1 up to and including EOS
    texts: list[str]  # decoded completions, special tokens removed
    truncated: torch.Tensor  # (B,) bool: hit max_new_tokens without EOS


def completion_mask_from(ids: torch.Tensor, eos_id: int) -> torch.Tensor:
    """1 for every completion token up to and including the first EOS. (B, T) -> (B, T)."""
    is_eos = ids == eos_id
    after_eos = (is_eos.cumsum(1) - is_eos.long()) > 0  # strictly after the first EOS
    return (~after_eos).long()


@torch.no_grad()
def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    *,
    max_new_tokens: int,
    do_sample: bool,
    temperature: float = 1.0,
    top_p: float = 1.0,
) -> Generation:
    enc = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left")
    was_training = model.training
    model.eval()
    out = model.generate(
        input_ids=enc.input_ids,
        attention_mask=enc.attention_mask,
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        temperature=temperature if do_sample else None,
        top_p=top_p if do_sample else None,
        top_k=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        use_cache=True,
        output_router_logits=False,
    )
    model.train(was_training)
    comp = out[:, enc.input_ids.shape[1] :]  # (B, T)
    mask = completion_mask_from(comp, tokenizer.eos_token_id)
    comp = comp.masked_fill(mask == 0, tokenizer.pad_token_id)
    truncated = ~(comp == tokenizer.eos_token_id).any(1)
    texts = tokenizer.batch_decode(comp, skip_special_tokens=True)
    return Generation(enc.input_ids, enc.attention_mask, comp, mask, texts, truncated)
