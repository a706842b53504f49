"""Train a byte-level BPE tokenizer with ``tokenizers`` and wrap it as a transformers fast tokenizer.

Digits are split one per token before BPE (as Llama and Qwen do) so that arithmetic is
learned over digits rather than over an arbitrary set of merged number chunks. The answer
tags are added tokens (kept in decoded text, unlike special tokens) so that reward functions
see exactly what the model wrote. The chat template (ChatML, with tools) is
:data:`r1rl.models.chat.CHAT_TEMPLATE`, whose markup is plain text: no token is added for it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from r1rl.models.chat import CHAT_TEMPLATE, END_OF_TURN, TOOL_CALL_CLOSE, TOOL_CALL_OPEN

__all__ = [
    "CHAT_TEMPLATE", "END_OF_TURN", "EOS", "FORMAT_TOKENS", "PAD", "SPECIAL_TOKENS", "TOOL_CALL_CLOSE",
    "TOOL_CALL_OPEN", "train_tokenizer",
]  # fmt: skip

EOS = "<|endoftext|>"
PAD = "<|pad|>"
SPECIAL_TOKENS = [EOS, PAD, "<|im_start|>", END_OF_TURN]
FORMAT_TOKENS = ["<think>", "</think>", "<answer>", "</answer>"]
_SPECIAL = re.compile("|".join(re.escape(t) for t in SPECIAL_TOKENS))


def _split_at_special_tokens(texts: Iterable[str]) -> Iterator[str]:
    """The pieces of each text between special tokens. ``tokenizers``' trainer does not set special
    tokens apart, so chat-rendered texts would spend merges on pieces of ``<|im_start|>`` and on
    ``=<|``; a text without special tokens is passed as it is (the default tokenizer is unchanged)."""
    for text in texts:
        yield from (piece for piece in _SPECIAL.split(text) if piece)


def train_tokenizer(texts: Iterable[str], vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``texts`` and return a ready-to-save fast tokenizer."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_split_at_special_tokens(texts), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=["<|im_start|>", END_OF_TURN],
    )
    fast.add_tokens(FORMAT_TOKENS)
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "left"  # decoder-only generation pads on the left
    return fast
