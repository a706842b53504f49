"""Records to token ids: prompts for generation, prompt + completion pairs for SFT, chat included.

- A text prompt is encoded with the tokenizer's own special-token default (a Llama tokenizer
  adds its BOS, r1rl's from-scratch tokenizer adds nothing); an SFT completion follows it,
  then EOS. Loss falls on the completion and the EOS only.
- A conversation (a list of ``{"role", "content"}`` messages) goes through the tokenizer's chat
  template, with ``system_prompt`` as a first system message when it has none. For generation
  the template opens the assistant turn (``add_generation_prompt``).
- SFT on conversations trains on assistant tokens only, every assistant turn of a multi-turn
  conversation included, with its tool calls (TRL's ``assistant_only_loss``); tool results and
  the ``tools`` the template lists are context. The assistant spans come from the
  template's ``{% generation %}`` markers when it has them (r1rl's own template does), else from
  rendering each prefix of the conversation and taking what each assistant message adds — which
  needs a template whose renderings of a prefix are a prefix of the whole, checked here.
  A prompt + completion pair in chat form (TRL's conversational prompt-completion) trains on
  the completion's assistant turns only.

Notation: ``S`` tokens of one encoded row.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from r1rl.errors import UserError
from r1rl.records import Record, check_prompt, is_conversation

IGNORE = -100  # label of a position that carries no loss (transformers' convention)
_GENERATION_TAG = re.compile(r"{%-?\s*generation\s*-?%}")  # transformers' assistant-mask markers


def with_system(messages: list[dict[str, Any]], system_prompt: str | None) -> list[dict[str, Any]]:
    """``messages`` with ``system_prompt`` first, unless there is none or they start with a system message."""
    if not system_prompt or (messages and messages[0].get("role") == "system"):
        return list(messages)
    return [{"role": "system", "content": system_prompt}, *messages]


def _template(
    tokenizer: Any,
    messages: list[dict[str, Any]],
    generation_prompt: bool = False,
    tools: list[dict[str, Any]] | None = None,
) -> list[int]:
    if not getattr(tokenizer, "chat_template", None):
        raise UserError(
            "chat-format data needs a tokenizer with a chat template; this one has none "
            "(set tokenizer.chat_template, or give plain-text prompts)"
        )
    return list(
        tokenizer.apply_chat_template(
            messages, add_generation_prompt=generation_prompt, tokenize=True, return_dict=False, tools=tools
        )
    )


def encode_prompt(
    tokenizer: Any, prompt: Any, system_prompt: str | None = None, tools: list[dict[str, Any]] | None = None
) -> list[int]:
    """Token ids of a prompt for generation: text as is, a conversation with the assistant turn opened
    (and ``tools``, their schemas, listed as the chat template lists them)."""
    if is_conversation(prompt):
        messages = with_system(list(prompt), system_prompt)
        return _template(tokenizer, messages, generation_prompt=True, tools=tools)
    return list(tokenizer(prompt).input_ids)


def encode_prompts(
    tokenizer: Any, prompts: Sequence[Any], system_prompt: str | None = None
) -> list[list[int]]:
    if prompts and all(isinstance(p, str) for p in prompts):
        return [list(ids) for ids in tokenizer(list(prompts)).input_ids]  # one batched call
    return [encode_prompt(tokenizer, p, system_prompt) for p in prompts]


def as_completion(prompt: Any, text: str) -> Any:
    """The completion a reward receives: text for a text prompt, an assistant message for a chat one."""
    return [{"role": "assistant", "content": text}] if is_conversation(prompt) else text


def encode_sft(
    tokenizer: Any,
    record: Record,
    system_prompt: str | None = None,
    where: str = "data",
    tools: list[dict[str, Any]] | None = None,
) -> tuple[list[int], list[int]]:
    """``(input_ids, labels)`` of one SFT record, labels :data:`IGNORE` where no loss is taken. Both (S,).

    The record holds a ``prompt`` and a ``completion`` (text or messages), or a conversation under
    ``prompt`` alone whose assistant turns are trained on. ``tools``: schemas the chat template lists
    (the tools of the multi-turn runs the model is trained for).
    """
    prompt, completion = record.get("prompt"), record.get("completion")
    check_prompt(prompt, where)
    if completion is None:
        if not is_conversation(prompt):
            raise UserError(f"{where}: SFT needs a completion for a text prompt (a 'completion' column)")
        return assistant_tokens(tokenizer, with_system(list(prompt), system_prompt), tools)
    if is_conversation(prompt):
        turns = (
            list(completion)
            if is_conversation(completion)
            else [{"role": "assistant", "content": completion}]
        )
        messages = with_system(list(prompt), system_prompt)
        ids, labels = assistant_tokens(tokenizer, messages + turns, tools)
        n_prompt = len(_template(tokenizer, messages, generation_prompt=True, tools=tools))
        return ids, [IGNORE] * n_prompt + labels[n_prompt:]
    if not isinstance(completion, str):
        raise UserError(
            f"{where}: the completion of a text prompt must be text, got {type(completion).__name__}"
        )
    p = list(tokenizer(prompt).input_ids)
    c = list(tokenizer(completion, add_special_tokens=False).input_ids) + [tokenizer.eos_token_id]
    return p + c, [IGNORE] * len(p) + c


def assistant_tokens(
    tokenizer: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
) -> tuple[list[int], list[int]]:
    """A conversation's ids and labels with every assistant turn (its reply, its tool calls and its
    end-of-turn token) trained on; tool results and ``tools`` (schemas the template lists) are context."""
    if not any(m.get("role") == "assistant" for m in messages):
        raise UserError("SFT on a conversation needs at least one assistant message")
    if _GENERATION_TAG.search(getattr(tokenizer, "chat_template", None) or ""):
        out = tokenizer.apply_chat_template(
            messages, tools=tools, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        ids, mask = list(out["input_ids"]), list(out["assistant_masks"])
    else:
        ids, mask = _assistant_mask_by_prefixes(tokenizer, messages, tools)
    return ids, [t if m else IGNORE for t, m in zip(ids, mask)]


def _assistant_mask_by_prefixes(
    tokenizer: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
) -> tuple[list[int], list[int]]:
    """Assistant spans by prefixes: message i adds ``render(:i+1)`` less ``render(:i) + header``."""
    ids = _template(tokenizer, messages, tools=tools)
    mask = [0] * len(ids)
    for i, m in enumerate(messages):
        if m.get("role") != "assistant":
            continue
        before = _template(tokenizer, messages[:i], generation_prompt=True, tools=tools) if i else []
        upto = _template(tokenizer, messages[: i + 1], tools=tools)
        if ids[: len(upto)] != upto or upto[: len(before)] != before:
            raise UserError(
                "the tokenizer's chat template renders a conversation's prefix differently from the whole, "
                "so its assistant tokens cannot be found; add {% generation %} markers to the template"
            )
        for j in range(len(before), len(upto)):
            mask[j] = 1
    return ids, mask


def truncate(ids: list[int], labels: list[int], max_length: int | None) -> tuple[list[int], list[int], bool]:
    """Keep the first ``max_length`` tokens (TRL's default ``keep_start``); whether anything was cut."""
    if max_length is None or len(ids) <= max_length:
        return ids, labels, False
    return ids[:max_length], labels[:max_length], True


def eos_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """Every id that ends a completion: the generation config's EOS ids (``<|im_end|>`` for chat models)
    and the tokenizer's EOS."""
    ids: list[int] = []
    cfg = getattr(model, "generation_config", None)
    for source in (getattr(cfg, "eos_token_id", None), tokenizer.eos_token_id):
        for i in source if isinstance(source, (list, tuple)) else [source]:
            if i is not None and int(i) not in ids:
                ids.append(int(i))
    return ids
