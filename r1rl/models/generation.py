"""Batched generation with HF ``generate`` (KV cache, EOS or stop sequences), returning padded tensors.

Prompts arrive as token ids (:func:`r1rl.models.encoding.encode_prompts`) and are left-padded here.
A row ends at the first of the model's EOS ids (every id of its generation config, such as
``<|im_end|>``, and the tokenizer's EOS) or once its generated text contains a stop sequence;
the completion mask covers the tokens up to and including that point, and the decoded text is
cut before the stop sequence (as lm-evaluation-harness cuts it), so rewards see what the task
scores. :func:`finish_generation` applies these rules to any engine's tokens (the rollout
engines of :mod:`r1rl.train.ppo.engines` share them), and :func:`stop_lengths` finds, after the fact,
the token at which :class:`StopOnStrings` would have stopped a row.

Notation: ``B`` batch, ``P`` prompt tokens (left-padded), ``T`` completion tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    StoppingCriteria,
    StoppingCriteriaList,
)

from r1rl.models.encoding import eos_token_ids


@dataclass
class Generation:
    prompt_ids: torch.Tensor  # (B, P) left-padded
    prompt_mask: torch.Tensor  # (B, P)
    completion_ids: torch.Tensor  # (B, T) right-padded, EOS included when generated
    completion_mask: torch.Tensor  # (B, T) 1 up to and including EOS (or the stop sequence)
    texts: list[str]  # decoded completions, special tokens removed, cut before a stop sequence
    truncated: torch.Tensor  # (B,) bool: hit max_new_tokens without EOS or a stop sequence
    # (B, T) the engine's log p(token) of each completion token under softmax(logits / temperature),
    # before top-p (what the training pass scores); 0 on padding; None when not asked for
    logprobs: torch.Tensor | None = None
    # (B, T) 1 on the model's own tokens, 0 on what an environment wrote between its turns (context,
    # never trained on); None when every completion token is the model's (a single turn)
    action_mask: torch.Tensor | None = None

    @property
    def model_mask(self) -> torch.Tensor:
        """(B, T) the tokens the model wrote: the completion mask less any environment tokens."""
        if self.action_mask is None:
            return self.completion_mask
        return self.completion_mask * self.action_mask


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


def _lookback(until: Sequence[str]) -> int:
    return max((len(s.encode()) for s in until if s), default=0) + 2


def _has_stop(tokenizer: Any, tail: Sequence[int], until: Sequence[str]) -> bool:
    text = tokenizer.decode(list(tail), skip_special_tokens=False)
    return any(s in text for s in until if s)


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
        self.lookback = _lookback(self.until)
        self.done = torch.zeros(batch_size, dtype=torch.bool)  # (B,)
        self.stopped_at = torch.zeros(batch_size, dtype=torch.long)  # (B,)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        gen = input_ids[:, self.prompt_len :]  # (B, T): generated tokens only, never the prompt
        tail = gen[:, -self.lookback :].tolist()
        for i in range(len(tail)):
            if not self.done[i] and _has_stop(self.tokenizer, tail[i], self.until):
                self.done[i], self.stopped_at[i] = True, gen.shape[1]
        return self.done.to(input_ids.device).clone()


def stop_lengths(tokenizer: Any, rows: Sequence[Sequence[int]], until: Sequence[str]) -> list[int]:
    """Per row of generated tokens, how many tokens it had when :class:`StopOnStrings` would have
    stopped it (the same look-back, token by token), or 0 when its text holds no stop sequence."""
    until = [s for s in until if s]
    lookback = _lookback(until)
    out = []
    for row in rows:
        ends = range(1, len(row) + 1)
        out.append(next((n for n in ends if _has_stop(tokenizer, row[max(0, n - lookback) : n], until)), 0))
    return out


class LogprobRecorder(LogitsProcessor):
    """Records log p(token) of every sampled token from the scores it is given, and changes nothing.

    ``generate`` runs the processors passed to it before its sampling warpers (temperature,
    top-p), so the scores are the model's logits in float32 (after any processor of the model's
    own generation config, such as a repetition penalty); they are divided by ``temperature``
    here, as the training pass divides its logits. The token chosen at step t is the last
    column of ``input_ids`` at step t + 1, so one step of log-softmax, (B, V), is held at a time.
    """

    def __init__(self, temperature: float = 1.0) -> None:
        self.temperature = (
            temperature  # log-probs of softmax(scores / temperature), as the update scores them
        )
        self.pending: torch.Tensor | None = None  # (B, V) log-softmax of the last step
        self.steps: list[torch.Tensor] = []  # T - 1 columns of (B, 1)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.pending is not None:
            self.steps.append(self.pending.gather(1, input_ids[:, -1:]))
        self.pending = torch.log_softmax(scores.float() / self.temperature, dim=-1)
        return scores

    def logprobs(self, completion_ids: torch.Tensor) -> torch.Tensor:
        """(B, T) log-probs of ``completion_ids``, the tokens generated while recording."""
        steps = list(self.steps)
        if self.pending is not None and len(steps) < completion_ids.shape[1]:
            last = completion_ids[:, len(steps) : len(steps) + 1].to(self.pending.device)
            steps.append(self.pending.gather(1, last))
        return torch.cat(steps, 1).cpu()


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
    return_logprobs: bool = False,
) -> Generation:
    """Complete every prompt (token ids); see the module docstring for where a row ends.

    ``synced``: every process keeps stepping until all are done (transformers' ``synced_gpus``),
    as a sharded model needs: each forward pass gathers weights from every rank.
    With ``return_logprobs`` the log-probs of the generated tokens are recorded as they are
    sampled (:class:`LogprobRecorder`); the tokens are the same either way.
    """
    eos_ids = list(eos_ids) if eos_ids is not None else eos_token_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0]
    ids, attn = left_pad(prompt_ids, pad_id)
    device = next(model.parameters()).device
    stopper = StopOnStrings(tokenizer, stop, ids.shape[1], ids.shape[0]) if stop else None
    recorder = LogprobRecorder(temperature if do_sample else 1.0) if return_logprobs else None
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
        logits_processor=LogitsProcessorList([recorder]) if recorder is not None else None,
        **({"synced_gpus": True} if synced else {}),
    ).cpu()
    model.train(was_training)
    comp = out[:, ids.shape[1] :]  # (B, T)
    stopped_at = stopper.stopped_at if stopper is not None else None  # 0 = not stopped
    logprobs = recorder.logprobs(comp) if recorder is not None else None
    return finish_generation(tokenizer, ids, attn, comp, eos_ids, pad_id, stop, stopped_at, logprobs)


def finish_generation(
    tokenizer: Any, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, comp: torch.Tensor,
    eos_ids: Sequence[int], pad_id: int, stop: Sequence[str] = (), stopped_at: torch.Tensor | None = None,
    logprobs: torch.Tensor | None = None,
) -> Generation:  # fmt: skip
    """A :class:`Generation` from generated tokens: the mask through the first EOS, or through the
    ``stopped_at[i]``-th token of a row a stop sequence ended (0 = none), padding after it,
    ``truncated`` and the texts cut before the stop sequence. (B, T) ``comp`` and ``logprobs``."""
    mask = completion_mask_from(comp, eos_ids)
    stopped = torch.zeros(comp.shape[0], dtype=torch.bool)
    if stopped_at is not None:
        stopped = stopped_at > 0
        cols = torch.arange(comp.shape[1])[None, :]
        limit = torch.where(stopped, stopped_at, comp.shape[1])[:, None]
        mask = mask * (cols < limit).long()
    comp = comp.masked_fill(mask == 0, pad_id)
    truncated = ~(torch.isin(comp, torch.tensor(list(eos_ids))).any(1) | stopped)
    texts = tokenizer.batch_decode(comp, skip_special_tokens=True)
    if stop:
        texts = [truncate_at_stop(t, stop)[0] for t in texts]
    if logprobs is not None:
        logprobs = logprobs * mask
    return Generation(prompt_ids, prompt_mask, comp, mask, texts, truncated, logprobs)


def take_generation(g: Generation, rows: Sequence[int]) -> Generation:
    """The rows ``rows`` of a generation, in that order."""
    idx = torch.tensor(list(rows), dtype=torch.long)
    pick = lambda t: t[idx] if t is not None else None  # noqa: E731
    return Generation(
        g.prompt_ids[idx], g.prompt_mask[idx], g.completion_ids[idx], g.completion_mask[idx],
        [g.texts[i] for i in rows], g.truncated[idx], pick(g.logprobs), pick(g.action_mask),
    )  # fmt: skip


def concat_generations(parts: Sequence[Generation], pad_id: int) -> Generation:
    """Generations one after another: prompts re-padded on the left, completions on the right.

    >>> a = Generation(torch.tensor([[5]]), torch.tensor([[1]]), torch.tensor([[7, 2]]),
    ...                torch.tensor([[1, 1]]), ["x"], torch.tensor([False]))
    >>> b = Generation(torch.tensor([[4, 5]]), torch.tensor([[1, 1]]), torch.tensor([[8]]),
    ...                torch.tensor([[1]]), ["y"], torch.tensor([True]))
    >>> g = concat_generations([a, b], pad_id=0)
    >>> g.prompt_ids.tolist(), g.completion_ids.tolist(), g.completion_mask.tolist()
    ([[0, 5], [4, 5]], [[7, 2], [8, 0]], [[1, 1], [1, 0]])
    """
    if len(parts) == 1:
        return parts[0]
    P = max(g.prompt_ids.shape[1] for g in parts)
    T = max(g.completion_ids.shape[1] for g in parts)

    def left(t: torch.Tensor, width: int, value: int) -> torch.Tensor:
        return torch.nn.functional.pad(t, (width - t.shape[1], 0), value=value)

    def right(t: torch.Tensor, width: int, value: float) -> torch.Tensor:
        return torch.nn.functional.pad(t, (0, width - t.shape[1]), value=value)

    logprobs = None
    if all(g.logprobs is not None for g in parts):
        logprobs = torch.cat([right(g.logprobs, T, 0.0) for g in parts])  # type: ignore[arg-type]
    action_mask = None
    if any(g.action_mask is not None for g in parts):
        action_mask = torch.cat([right(g.model_mask, T, 0) for g in parts])
    return Generation(
        torch.cat([left(g.prompt_ids, P, pad_id) for g in parts]),
        torch.cat([left(g.prompt_mask, P, 0) for g in parts]),
        torch.cat([right(g.completion_ids, T, pad_id) for g in parts]),
        torch.cat([right(g.completion_mask, T, 0) for g in parts]),
        [t for g in parts for t in g.texts],
        torch.cat([g.truncated for g in parts]),
        logprobs,
        action_mask,
    )
