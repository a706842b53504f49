"""Batched generation with HF ``generate`` (KV cache, EOS or stop sequences), returning padded tensors.

Prompts arrive as token ids (:func:`r1rl.tasks.encoding.encode_prompts`) and are left-padded here.
A row ends at the first of the model's EOS ids (every id of its generation config, such as
``<|im_end|>``, and the tokenizer's EOS) or once its generated text contains a stop sequence;
the completion mask covers the tokens up to and including that point, and the decoded text is
cut before the stop sequence (as lm-evaluation-harness cuts it), so rewards see what the task
scores.

Notation: ``B`` batch, ``P`` prompt tokens (left-padded), ``T`` completion tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, StoppingCriteria, StoppingCriteriaList


@dataclass
class Generation:
    prompt_ids: torch.Tensor  # (B, P) left-padded
    prompt_mask: torch.Tensor  # (B, P)
    completion_ids: torch.Tensor  # (B, T) right-padded, EOS included when generated
    completion_mask: torch.Tensor  # (B, T) 1 up to and including EOS (or the stop sequence)
    texts: list[str]  # decoded completions, special tokens removed, cut before a stop sequence
    truncated: torch.Tensor  # (B,) bool: hit max_new_tokens without EOS or a stop sequence


def completion_mask_from(ids: torch.Tensor, eos_id: int | Sequence[int]) -> torch.Tensor:
    """1 for every completion token through the first EOS (any of ``eos_id``). (B, T) -> (B, T)."""
    eos = torch.tensor([eos_id] if isinstance(eos_id, int) else list(eos_id))
    is_eos = torch.isin(ids, eos)
    after_eos = (is_eos.cumsum(1) - is_eos.long()) > 0  # strictly after the first EOS
    return (~after_eos).long()


def truncate_at_stop(text: str, until: Sequence[str]) -> tuple[str, bool]:
    """``text`` cut before the stop sequences, as lm-eval cuts it, and whether any was found.

    lm-eval's ``postprocess_generated_text`` keeps ``text.split(term)[0]`` for each term in
    turn. That is the cut before the first stop sequence, except when stop sequences overlap:
    ``"#a"`` listed before ``"\\n#a"`` cuts ``"b\\n#a"`` after the newline. The loop is kept as is.

    >>> truncate_at_stop(" 18\\n\\nQuestion: next", ["Question:", "</s>"])
    (' 18\\n\\n', True)
    >>> truncate_at_stop("    return x\\ndef g():", ["\\nclass", "\\ndef"])
    ('    return x', True)
    >>> truncate_at_stop("no stop here", ["\\n"])
    ('no stop here', False)
    """
    stopped = False
    for term in until:
        if term and term in text:
            text, stopped = text.split(term)[0], True
    return text, stopped


class StopOnStrings(StoppingCriteria):
    """Per-row stop once the generated tokens' text contains any of ``until``.

    Only the last ``lookback`` generated tokens are decoded at each step (special tokens kept,
    so ``<|im_end|>`` is seen); ``lookback`` is the longest stop sequence in UTF-8 bytes plus 2,
    which covers any tokenisation of it by a tokenizer whose tokens are at least one byte.
    lm-eval looks back its stop sequence's own token count plus 2. ``stopped_at[i]`` is the
    number of tokens row ``i`` had generated when it stopped (0 while it runs).
    """

    def __init__(self, tokenizer: Any, until: Sequence[str], prompt_len: int, batch_size: int) -> None:
        self.tokenizer = tokenizer
        self.until = [s for s in until if s]
        self.prompt_len = prompt_len
        self.lookback = max((len(s.encode()) for s in self.until), default=0) + 2
        self.done = torch.zeros(batch_size, dtype=torch.bool)  # (B,)
        self.stopped_at = torch.zeros(batch_size, dtype=torch.long)  # (B,)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        gen = input_ids[:, self.prompt_len :]  # (B, T): generated tokens only, never the prompt
        tail = gen[:, -self.lookback :].tolist()
        for i in range(len(tail)):
            if not self.done[i]:
                text = self.tokenizer.decode(tail[i], skip_special_tokens=False)
                if any(s in text for s in self.until):
                    self.done[i], self.stopped_at[i] = True, gen.shape[1]
        return self.done.to(input_ids.device).clone()


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists -> ``(ids, mask)``, both (B, P), padded on the left as decoder-only generation wants."""
    P = max(len(r) for r in rows)
    ids = torch.full((len(rows), P), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), P), dtype=torch.long)
    for j, r in enumerate(rows):
        if r:
            ids[j, P - len(r) :] = torch.tensor(list(r), dtype=torch.long)
            mask[j, P - len(r) :] = 1
    return ids, mask


@torch.no_grad()
def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt_ids: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    do_sample: bool,
    temperature: float = 1.0,
    top_p: float = 1.0,
    eos_ids: Sequence[int] | None = None,
    stop: Sequence[str] = (),
    synced: bool = False,
) -> Generation:
    """Complete every prompt (token ids); see the module docstring for where a row ends.

    ``synced``: every process keeps stepping until all are done (transformers' ``synced_gpus``),
    as a sharded model needs: each forward pass gathers weights from every rank."""
    from r1rl.tasks.encoding import eos_token_ids

    eos_ids = list(eos_ids) if eos_ids is not None else eos_token_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0]
    ids, attn = left_pad(prompt_ids, pad_id)
    device = next(model.parameters()).device
    stopper = StopOnStrings(tokenizer, stop, ids.shape[1], ids.shape[0]) if stop else None
    was_training = model.training
    model.eval()
    out = model.generate(
        input_ids=ids.to(device),
        attention_mask=attn.to(device),
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        temperature=temperature if do_sample else None,
        top_p=top_p if do_sample else None,
        top_k=None,
        eos_token_id=eos_ids,
        pad_token_id=pad_id,
        use_cache=True,
        output_router_logits=False,
        stopping_criteria=StoppingCriteriaList([stopper]) if stopper is not None else None,
        **({"synced_gpus": True} if synced else {}),
    ).cpu()
    model.train(was_training)
    comp = out[:, ids.shape[1] :]  # (B, T)
    mask = completion_mask_from(comp, eos_ids)
    stopped = torch.zeros(comp.shape[0], dtype=torch.bool)
    if stopper is not None:
        stopped = stopper.done.clone()
        cols = torch.arange(comp.shape[1])[None, :]
        limit = torch.where(stopped, stopper.stopped_at, comp.shape[1])[:, None]
        mask = mask * (cols < limit).long()
    comp = comp.masked_fill(mask == 0, pad_id)
    truncated = ~(torch.isin(comp, torch.tensor(eos_ids)).any(1) | stopped)
    texts = tokenizer.batch_decode(comp, skip_special_tokens=True)
    if stop:
        texts = [truncate_at_stop(t, stop)[0] for t in texts]
    return Generation(ids, attn, comp, mask, texts, truncated)
