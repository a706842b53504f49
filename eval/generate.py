"""Generation until a stop sequence, as lm-evaluation-harness's ``HFLM.generate_until`` does it.

    outs = generate_until(model, tokenizer, contexts, until=["Question:"], max_gen_toks=256)
    outs[0].text    # the completion, cut before the first stop sequence

What matches lm-eval (``lm_eval/models/huggingface.py``, ``models/utils.py``):

- each context is encoded with the tokenizer's own special-token default (:func:`tok_encode`)
  and keeps its last ``max_length - max_gen_toks`` tokens; rows are left-padded;
- requests run longest first (lm-eval's ``Collator`` order), results come back in input order;
- the EOS token's text joins the stop sequences; generation of a row stops at EOS or once its
  generated tokens (never the prompt's) contain a stop sequence; the completion is decoded
  without special tokens and cut at the stop sequences as ``postprocess_generated_text`` cuts;
- greedy unless ``do_sample`` (``temperature`` and ``top_p`` then apply).

Deliberate departures:

- a row stops on its own (lm-eval waits for the whole batch, then cuts the text: same result);
- ``max_gen_toks >= max_length`` is an assertion error in lm-eval; here it is lowered to
  ``max_length // 2`` (:func:`effective_max_gen_toks`, which the harness records), so a tiny
  model with a 256-token window can still be scored on HumanEval's ``max_gen_toks: 1024``;
- sampling has no top-k cut (lm-eval inherits transformers' ``top_k=50``), so ``top_p`` is
  plain nucleus sampling as in Chen et al. 2021;
- sampling is deterministic in ``seed``: the global RNG is re-seeded with ``seed + batch index``
  before each batch (inside :func:`torch.random.fork_rng`, so the caller's RNG is untouched);
  the draws therefore also depend on ``batch_size``.

Notation: ``B`` rows in a batch, ``P`` padded prompt length, ``T`` generated tokens so far.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from r1rl.eval.loglik import resolve_max_length, tok_encode
from tqdm.auto import tqdm
from transformers import GenerationConfig, StoppingCriteriaList

from r1rl.models.generation import StopOnStrings, truncate_at_stop  # noqa: F401  (truncate_at_stop re-exported)

DEFAULT_MAX_GEN_TOKS = 256  # lm-eval's HFLM default


@dataclass(frozen=True)
class Completion:
    """One generated continuation.

    ``finish``: ``"stop"`` (a stop sequence), ``"eos"`` or ``"length"`` (``max_gen_toks`` reached).
    ``prompt_truncated``: the context lost tokens on the left to fit the window.
    """

    text: str
    n_tokens: int
    finish: str
    prompt_truncated: bool


def effective_max_gen_toks(max_gen_toks: int, max_length: int) -> int:
    """``max_gen_toks``, or half the window when it would leave no room for the prompt.

    >>> effective_max_gen_toks(256, 2048), effective_max_gen_toks(1024, 256)
    (256, 128)
    """
    return max_gen_toks if max_gen_toks < max_length else max_length // 2


@torch.inference_mode()
def generate_until(
    model: Any,
    tokenizer: Any,
    contexts: Sequence[str],
    *,
    until: Sequence[str] = (),
    max_gen_toks: int = DEFAULT_MAX_GEN_TOKS,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    batch_size: int = 32,
    max_length: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> list[Completion]:
    """Generate a continuation of every context; results in input order (see the module docstring).

    Args:
        until: stop sequences; the EOS token's text is added.
        max_gen_toks: most tokens generated per context.
        max_length: the model's window; default from its config (:func:`resolve_max_length`).
        seed: sampling seed (greedy decoding does not use it).
    """
    max_length = max_length or resolve_max_length(model, tokenizer)
    max_gen_toks = effective_max_gen_toks(max_gen_toks, max_length)
    eos_id = tokenizer.eos_token_id
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id
    stops = list(until)
    eos_text = tokenizer.decode([eos_id], skip_special_tokens=False) if eos_id is not None else None
    if eos_text and eos_text not in stops:
        stops.append(eos_text)  # lm-eval's handle_stop_sequences
    gen_config = _generation_config(max_gen_toks, do_sample, temperature, top_p, eos_id, pad_id)
    extra = {"output_router_logits": False} if _has_router(model) else {}

    budget = max_length - max_gen_toks
    encoded = [tok_encode(tokenizer, c) for c in contexts]
    order = sorted(range(len(contexts)), key=lambda i: (-len(encoded[i]), contexts[i], i))
    device = next(model.parameters()).device
    out: list[Completion | None] = [None] * len(contexts)
    was_training = model.training
    model.eval()
    bar = tqdm(total=len(order), desc="generate_until", disable=not progress, dynamic_ncols=True)
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            for b, start in enumerate(range(0, len(order), batch_size)):
                batch = order[start : start + batch_size]
                rows = [encoded[i][-budget:] for i in batch]
                P = max(len(r) for r in rows)
                ids = torch.full((len(rows), P), pad_id, dtype=torch.long)  # (B, P) left-padded
                mask = torch.zeros((len(rows), P), dtype=torch.long)  # (B, P)
                for j, r in enumerate(rows):
                    ids[j, P - len(r) :] = torch.tensor(r, dtype=torch.long)
                    mask[j, P - len(r) :] = 1
                stopper = StopOnStrings(tokenizer, stops, P, len(rows))
                torch.manual_seed(seed + b)
                gen = model.generate(
                    input_ids=ids.to(device),
                    attention_mask=mask.to(device),
                    generation_config=gen_config,
                    stopping_criteria=StoppingCriteriaList([stopper]),
                    **extra,
                )[:, P:].cpu()  # (B, T)
                for j, i in enumerate(batch):
                    out[i] = _completion(
                        tokenizer, gen[j].tolist(), stops, eos_id, pad_id, len(encoded[i]) > budget
                    )
                bar.update(len(batch))
    finally:
        bar.close()
        model.train(was_training)
    return out  # type: ignore[return-value]


def _completion(
    tokenizer: Any, ids: list[int], stops: list[str], eos_id: int | None, pad_id: int, truncated: bool
) -> Completion:
    """Decode one row's generated ``ids``: up to EOS (or the padding after an early stop), then cut."""
    n, eos = len(ids), False
    if eos_id is not None and eos_id in ids:
        n, eos = ids.index(eos_id), True
    elif pad_id in ids:
        n = ids.index(pad_id)  # the row stopped on a stop sequence while the batch went on
    text, stopped = truncate_at_stop(tokenizer.decode(ids[:n], skip_special_tokens=True), stops)
    # A special-token stop (<|im_end|>) is gone from the decoded text; look for it in the raw one.
    stopped = stopped or truncate_at_stop(tokenizer.decode(ids[:n], skip_special_tokens=False), stops)[1]
    finish = "stop" if stopped else "eos" if eos else "length"
    return Completion(text, n, finish, truncated)


def _generation_config(
    max_gen_toks: int, do_sample: bool, temperature: float, top_p: float, eos_id: int | None, pad_id: int
) -> GenerationConfig:
    """An explicit config, so the model's ``generation_config.json`` (top-k, penalties) plays no part."""
    kw: dict[str, Any] = dict(
        max_new_tokens=max_gen_toks, do_sample=do_sample, eos_token_id=eos_id, pad_token_id=pad_id,
        use_cache=True,
    )  # fmt: skip
    if do_sample:
        kw.update(temperature=temperature, top_p=top_p, top_k=0)
    return GenerationConfig(**kw)


def _has_router(model: Any) -> bool:
    """MoE models compute router logits for the auxiliary loss unless told not to."""
    cfg = getattr(model, "config", None)
    return getattr(cfg, "output_router_logits", None) is not None
