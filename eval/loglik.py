"""Log-likelihood of (context, continuation) pairs under any causal LM, as lm-evaluation-harness computes it.

Tokenisation follows lm-eval's ``TemplateLM._encode_pair`` (``lm_eval/api/model.py``): trailing
whitespace of the context moves to the front of the continuation, ``context + continuation`` is
encoded as a whole and the context alone, and the continuation's tokens are
``whole[len(context_enc):]`` — so a word is tokenised the way the model saw it in running text,
not as a separate string. An empty context is replaced by the BOS (else EOS) token.

Scoring follows ``HFLM._loglikelihood_tokens`` (``lm_eval/models/huggingface.py``): the input is
``(context + continuation)[-(max_length + 1):][:-1]`` (left-truncated), rows are right-padded, and
the continuation's log-probabilities are read at the last ``len(continuation)`` input positions;
``is_greedy`` is whether every continuation token is the argmax there. Right padding needs no
position ids and cannot change a causal model's earlier positions; the attention mask is passed too.

Speed, without changing what is computed: unique input rows are scored once (choices of one token
share the context's row, like lm-eval's logits cache), rows are sorted longest first so a batch
pads little, only the positions holding continuations get logits (``logits_to_keep``) and a
log-softmax.

Notation: ``B`` rows in a batch, ``T`` padded input length, ``K`` positions kept, ``V`` vocabulary.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from r1rl.errors import UserError

DEFAULT_MAX_LENGTH = 2048  # lm-eval's fallback when neither config nor tokenizer gives a length
_TOKENIZER_INFINITY = 1_000_000_000_000_000_019_884_624_838_656  # transformers' "no limit" sentinel


def tok_encode(tokenizer: Any, text: str) -> list[int]:
    """``tokenizer.encode(text)`` with the tokenizer's own special-token default (lm-eval's ``tok_encode``).

    As lm-eval, special tokens are not added again when ``text`` already starts with the prefix
    token's string (e.g. a prompt that spells out ``<s>``).
    """
    prefix = prefix_token_id(tokenizer)
    if prefix is not None and text.startswith(tokenizer.decode([prefix])):
        return tokenizer.encode(text, add_special_tokens=False)
    return tokenizer.encode(text)


def prefix_token_id(tokenizer: Any) -> int | None:
    """The token that stands for an empty context: BOS, else EOS (lm-eval's ``prefix_token_id``)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    return bos if bos is not None else getattr(tokenizer, "eos_token_id", None)


def encode_pair(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Token ids of ``context`` and ``continuation``, split from the encoding of their concatenation.

    Trailing whitespace of ``context`` is moved to ``continuation`` first, so ``("Answer: ", "yes")``
    and ``("Answer:", " yes")`` give the same split. An empty context becomes ``[prefix_token_id]``.
    If the context's tokens are not a prefix of the whole's (a merge across the boundary), the
    split is still at ``len(context_enc)``, exactly as lm-eval does.
    """
    if context == "":
        cont = tokenizer.encode(continuation, add_special_tokens=False)
        prefix = prefix_token_id(tokenizer)
        if prefix is None:
            raise UserError("scoring an empty context needs the tokenizer's BOS or EOS token: it has neither")
        return ([prefix], cont) if prefix != cont[0] else (cont[:1], cont[1:])
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = tok_encode(tokenizer, context + continuation)
    context_enc = tok_encode(tokenizer, context)
    return context_enc, whole[len(context_enc) :]


def resolve_max_length(model: Any, tokenizer: Any = None, default: int = DEFAULT_MAX_LENGTH) -> int:
    """The model's context length: config ``n_positions``/``max_position_embeddings``/``n_ctx``
    (of ``text_config`` if nested), else the tokenizer's ``model_max_length``, else ``default``
    — lm-eval's ``resolve_max_length`` order."""
    config = getattr(model, "config", None)
    cfg = getattr(config, "text_config", None) or config
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(cfg, attr, None)
        if value is not None:
            return int(value)
    mml = getattr(tokenizer, "model_max_length", None)
    if mml is not None and mml < _TOKENIZER_INFINITY:
        return int(mml)
    return default


def loglikelihood(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[tuple[str, str]],
    *,
    batch_size: int = 32,
    max_length: int | None = None,
    progress: bool = False,
) -> list[tuple[float, bool]]:
    """``(log p(continuation | context), is_greedy)`` for each ``(context, continuation)`` pair.

    Equal to lm-eval's ``HFLM.loglikelihood`` on the same model and tokenizer up to float noise
    from batch composition (see ``tests/eval/test_lm_eval_agreement.py``).
    """
    cache: dict[tuple[str, str], tuple[list[int], list[int]]] = {}
    requests = []
    for ctx, cont in pairs:
        key = (ctx, cont)
        if key not in cache:
            cache[key] = encode_pair(tokenizer, ctx, cont)
        requests.append(cache[key])
    return score_tokens(
        model,
        requests,
        batch_size=batch_size,
        max_length=max_length or resolve_max_length(model, tokenizer),
        pad_token_id=_pad_id(tokenizer),
        progress=progress,
    )


def _pad_id(tokenizer: Any) -> int:
    for attr in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, attr, None)
        if value is not None:
            return int(value)
    return 0


@torch.inference_mode()
def score_tokens(
    model: Any,
    requests: Sequence[tuple[Sequence[int], Sequence[int]]],
    *,
    batch_size: int = 32,
    max_length: int = DEFAULT_MAX_LENGTH,
    pad_token_id: int = 0,
    progress: bool = False,
) -> list[tuple[float, bool]]:
    """Score ``(context_ids, continuation_ids)`` requests; results come back in request order.

    Args:
        requests: token ids; contexts and continuations are non-empty, continuations at most
            ``max_length`` long.
        max_length: the model's context length; longer inputs lose tokens from the left.
    """
    rows: dict[tuple[int, ...], int] = {}  # unique input row -> its index
    req_rows = []
    for ctx, cont in requests:
        if len(ctx) == 0:
            raise ValueError("empty context: pass [prefix_token_id] (encode_pair does)")
        if len(cont) == 0:
            raise ValueError("empty continuation: the context's tokens swallowed it (see encode_pair)")
        if len(cont) > max_length:
            raise ValueError(
                f"continuation of {len(cont)} tokens exceeds the model's max length {max_length}"
            )
        inp = tuple((list(ctx) + list(cont))[-(max_length + 1) :][:-1])
        req_rows.append(rows.setdefault(inp, len(rows)))
    uniq = list(rows)
    need = [0] * len(uniq)  # per row: the longest continuation read from it
    for r, (_, cont) in zip(req_rows, requests):
        need[r] = max(need[r], len(cont))
    order = sorted(range(len(uniq)), key=lambda r: (-len(uniq[r]), uniq[r]))  # longest first, then stable
    by_row: dict[int, list[int]] = {}
    for i, r in enumerate(req_rows):
        by_row.setdefault(r, []).append(i)

    device = next(model.parameters()).device
    keep_arg = _supports_logits_to_keep(model)
    was_training = model.training
    model.eval()
    out: list[tuple[float, bool] | None] = [None] * len(requests)
    bar = tqdm(total=len(order), desc="loglikelihood", disable=not progress, dynamic_ncols=True)
    try:
        for b in range(0, len(order), batch_size):
            batch = order[b : b + batch_size]
            T = len(uniq[batch[0]])
            ids = torch.full((len(batch), T), pad_token_id, dtype=torch.long)  # (B, T)
            mask = torch.zeros((len(batch), T), dtype=torch.long)  # (B, T)
            for j, r in enumerate(batch):
                ids[j, : len(uniq[r])] = torch.tensor(uniq[r], dtype=torch.long)
                mask[j, : len(uniq[r])] = 1
            # Only positions from the earliest continuation start onwards are needed.
            K = T - min(len(uniq[r]) - need[r] for r in batch)
            kwargs: dict[str, Any] = {"logits_to_keep": K} if keep_arg else {}
            logits = model(
                input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False, **kwargs
            )
            logits = logits.logits[:, -K:]  # (B, K, V); position p of the input is index p - (T - K)
            for j, r in enumerate(batch):
                L = len(uniq[r])
                for i in by_row[r]:
                    cont = requests[i][1]
                    sl = logits[j, L - len(cont) - (T - K) : L - (T - K)].float()  # (C, V)
                    logp = torch.log_softmax(sl, dim=-1)
                    target = torch.tensor(cont, dtype=torch.long, device=sl.device)
                    ll = logp.gather(-1, target[:, None]).sum().item()
                    greedy = bool((sl.argmax(-1) == target).all())
                    out[i] = (float(ll), greedy)
            bar.update(len(batch))
    finally:
        bar.close()
        model.train(was_training)
    return out  # type: ignore[return-value]


def _supports_logits_to_keep(model: Any) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # unwrap PEFT
    try:
        return "logits_to_keep" in inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        return False
