"""Learned document scorers: perplexity under a reference model, lower = more like the reference.

A scorer is any callable ``scorer(texts) -> np.ndarray`` of shape ``(N,)``. Two are built in:

- :class:`CharNGramScorer` — an interpolated character n-gram language model, fitted on
  reference text in seconds. It is the scaled-down form of CCNet's
  quality filter (Wenzek et al. 2020, "CCNet": perplexity under a KenLM model trained
  on a high-quality reference corpus).
- :class:`CausalLMScorer` — per-document perplexity under any causal LM (e.g. a previous
  pretrain stage's ``final/``), batched, without gradients.

Both serve the quality filter (:class:`r1rl.data.filters.ScoreFilter`, keep if score ≤
threshold; ``{type: perplexity, reference: FILE, max_score: X}`` in a pretrain recipe).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import numpy as np

BOS = "\x02"  # pads the first n-1 context positions; never in the fitted text's alphabet


class Scorer(Protocol):
    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """One score per text. -> (N,)"""
        ...


class CharNGramScorer:
    """Per-document perplexity under an interpolated character ``n``-gram model.

    Witten–Bell interpolation (Witten & Bell 1991; as written in Chen & Goodman 1999, "An
    empirical study of smoothing techniques for language modeling"): the estimate for ``c`` after the previous
    ``k`` characters ``h`` mixes in the next-shorter context in proportion to how many
    distinct characters ``u(h)`` have followed ``h``::

        P_k(c | h) = (count(h, c) + u(h) · P_{k-1}(c | h')) / (count(h) + u(h))
        P_0(c)     = (count(c) + α) / (N + α · V)

    ``h'`` is ``h`` without its first character, ``k`` goes up to ``n − 1``, and ``V`` is the
    fitted alphabet plus one unknown symbol — so unseen characters are improbable, while an
    unseen context of familiar characters falls back to shorter ones. A text's score is
    ``exp(−mean log P)`` over its characters.

        >>> s = CharNGramScorer.fit(["abababab"] * 10, n=2)
        >>> bool(s(["abab"])[0] < 1.5 < s(["zzqx"])[0])
        True
    """

    def __init__(
        self, n: int, alpha: float, counts: Counter, context_counts: Counter, types: Counter, vocab: int
    ):
        self.n, self.alpha, self.vocab = n, alpha, vocab
        self.counts, self.context_counts, self.types = counts, context_counts, types

    @classmethod
    def fit(cls, texts: Iterable[str], n: int = 3, alpha: float = 0.5) -> CharNGramScorer:
        if n < 1:
            raise ValueError("n must be >= 1")
        counts: Counter = Counter()  # (context, char) for contexts of length 0 … n-1
        alphabet: set[str] = set()
        for text in texts:
            alphabet.update(text)
            padded = BOS * (n - 1) + text
            for i in range(n - 1, len(padded)):
                for k in range(n):
                    counts[padded[i - k : i], padded[i]] += 1
        context_counts: Counter = Counter()
        types: Counter = Counter()  # u(h): distinct characters seen after h
        for (h, _), c in counts.items():
            context_counts[h] += c
            types[h] += 1
        return cls(n, alpha, counts, context_counts, types, len(alphabet) + 1)

    def log_prob(self, text: str) -> float:
        """Sum of natural-log probabilities of ``text``'s characters."""
        padded = BOS * (self.n - 1) + text
        total_chars = self.context_counts.get("", 0)
        total = 0.0
        for i in range(self.n - 1, len(padded)):
            c = padded[i]
            p = (self.counts.get(("", c), 0) + self.alpha) / (total_chars + self.alpha * self.vocab)
            for k in range(1, self.n):
                h = padded[i - k : i]
                u = self.types.get(h, 0)
                if u:  # an unseen context leaves the shorter context's estimate as it is
                    p = (self.counts.get((h, c), 0) + u * p) / (self.context_counts[h] + u)
            total += math.log(p)
        return total

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        return np.array([math.exp(-self.log_prob(t) / max(1, len(t))) for t in texts])  # (N,)


class CausalLMScorer:
    """Per-document perplexity under a causal LM: ``exp`` of the mean next-token loss.

    ``texts`` are tokenised without special tokens, truncated to ``max_length`` tokens and
    batched ``batch_size`` at a time with right padding (the padded positions are masked
    out of attention and of the loss). A text of one token has no prediction and scores NaN.
    """

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 16, max_length: int = 256) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.batch_size, self.max_length = batch_size, max_length

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        out = []
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.model.eval()
        with torch.no_grad():
            for start in range(0, len(texts), self.batch_size):
                ids = self.tokenizer(
                    list(texts[start : start + self.batch_size]),
                    add_special_tokens=False,
                    truncation=True,
                    max_length=self.max_length,
                ).input_ids
                width = max(len(x) for x in ids)
                input_ids = torch.full((len(ids), width), pad_id)  # (B, T)
                mask = torch.zeros((len(ids), width), dtype=torch.long)  # (B, T)
                for r, x in enumerate(ids):
                    input_ids[r, : len(x)] = torch.tensor(x)
                    mask[r, : len(x)] = 1
                logits = self.model(input_ids=input_ids, attention_mask=mask).logits[:, :-1]  # (B, T-1, V)
                nll = torch.nn.functional.cross_entropy(
                    logits.transpose(1, 2).float(), input_ids[:, 1:], reduction="none"
                )  # (B, T-1)
                tmask = mask[:, 1:].float()
                mean = (nll * tmask).sum(1) / tmask.sum(1)  # (B,); NaN for one-token texts
                out.append(torch.exp(mean))
        return torch.cat(out).numpy() if out else np.zeros(0)
