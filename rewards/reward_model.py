"""A learned reward model as a tier: a one-label sequence-classification checkpoint scores each sample.

A tier names it with ``reward: {type: reward_model, path: DIR_OR_HUB_ID}``;
:func:`load_reward_model` checks and loads it once, and :class:`RewardModel` is a plain reward
function (``fn(prompts, completions, **columns) -> list[float]``), so its scores go through the
same typed outcomes, thresholds, gating and normalisation as any other tier.

What the model reads, exactly:

- **Its own tokenizer and chat template.** When the tokenizer has a chat template, the sample is
  the conversation ``prompt`` (a text prompt becomes one user message) followed by the completion
  as the assistant turn, rendered with ``apply_chat_template(messages, tokenize=False)`` and
  tokenized without adding special tokens (the template writes them) — TRL's ``GRPOTrainer``
  does the same for a reward model (``trl/trainer/grpo_trainer.py``, ``_calculate_rewards``).
  Without a template it is the plain concatenation ``prompt + completion`` (a conversation: its
  messages' contents, one per line), tokenized *with* the tokenizer's special tokens, so an
  encoder's ``[CLS] … [SEP]`` or a Llama ``<s>`` frame it as in training (TRL adds none there).
- **The end is kept.** An input longer than ``max_length`` (default: the model's window, the
  smaller of ``max_position_embeddings`` and the tokenizer's ``model_max_length``) loses its
  *start*: a decoder reward model reads its score at the last token, and the completion being
  judged is at the end. vLLM truncates the inputs of pooling and reward models the same way
  (``PoolingParams.truncate_prompt_tokens``: "keep only the last k tokens (left truncation)");
  OpenRLHF's reward dataset instead truncates the end and then writes EOS over the last token
  (``openrlhf/datasets/reward_dataset.py``), and TRL's ``GRPOTrainer`` does not truncate at all.
  Every truncated input is counted: the tier's ``truncated_inputs`` metric, through the
  ``log_metric`` hook the hierarchy passes (``reward/tier/<tier>/truncated_inputs``).
- **Batches of ``batch_size``, padded on the right** with the model's ``pad_token_id`` (the
  padding side of the saved tokenizer does not matter): the real tokens keep positions
  0..n−1, as unbatched, and transformers pools at the rightmost token that is not padding. A
  model with no pad token at all (neither in its config nor its tokenizer) scores one sequence
  per forward pass, since transformers cannot tell padding from text there.
- **No gradients, evaluation mode, on one device**: ``torch.inference_mode()``, dropout off;
  the device is the tier's ``device``, else the caller's (the policy's; today every stage runs
  on the CPU). The score is ``logits[:, 0]`` in float32.

Notation: ``b`` sequences in one forward pass (at most ``batch_size``), ``S`` the longest of them
in tokens.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from r1rl.rewards.protocol import as_text, one_line, reward_error

from r1rl.errors import UserError
from r1rl.records import is_conversation

log = logging.getLogger(__name__)

TRUNCATED = "truncated_inputs"  # the metric: reward/tier/<tier>/truncated_inputs
_NO_LIMIT = 1_000_000  # tokenizers without a limit report int(1e30) as model_max_length


class RewardModel:
    """A sequence-classification model with one label as a reward function (module docstring).

    ``model`` is a transformers ``*ForSequenceClassification`` with ``num_labels == 1`` and
    ``tokenizer`` its own (:func:`load_reward_model` checks and loads both); the model is put in
    evaluation mode on ``device``, and the tokenizer truncates on the left from then on.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        batch_size: int = 8,
        max_length: int | None = None,
        device: str = "cpu",
        name: str = "reward_model",
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.__name__ = name  # how logs and messages name the reward (r1rl.rewards.protocol.fn_name)
        self.tokenizer = tokenizer
        tokenizer.truncation_side = "left"  # keep the end (module docstring); a call cannot ask for it
        self.device = torch.device(device)
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.pad_id = _pad_id(model, tokenizer)
        if self.pad_id is None:
            log.warning("reward model %s has no pad token: it scores one sequence per forward pass", name)
        self.batch_size = batch_size if self.pad_id is not None else 1
        self.max_length = max_length
        self._warned = False

    def __call__(self, prompts: list[Any], completions: list[Any], **columns: Any) -> list[float]:
        """One score per completion; the number of truncated inputs goes to ``log_metric``."""
        ids = [self.encode(p, c) for p, c in zip(prompts, completions)]
        cut = sum(len(full) > len(kept) for full, kept in ids)
        if cut and not self._warned:
            self._warned = True
            log.warning(
                "reward model %s: %d of %d inputs were longer than its %d tokens; their start was cut "
                "(counted as %s)", self.__name__, cut, len(ids), self.max_length, TRUNCATED,
            )  # fmt: skip
        log_metric = columns.get("log_metric")
        if callable(log_metric):  # TRL's hook; the hierarchy logs it as reward/tier/<tier>/truncated_inputs
            log_metric(TRUNCATED, float(cut))
        return self.score([kept for _, kept in ids])

    def text(self, prompt: Any, completion: Any) -> str:
        """The string the model reads for one sample, before tokenization (module docstring)."""
        if self.tokenizer.chat_template:
            messages = list(prompt) if is_conversation(prompt) else [{"role": "user", "content": str(prompt)}]
            reply = list(completion) if is_conversation(completion) else [
                {"role": "assistant", "content": as_text(completion)}
            ]  # fmt: skip
            return self.tokenizer.apply_chat_template(messages + reply, tokenize=False)
        if is_conversation(prompt):
            prompt = "\n".join(str(m.get("content", "")) for m in prompt)
        return str(prompt) + as_text(completion)

    def encode(self, prompt: Any, completion: Any) -> tuple[list[int], list[int]]:
        """``(all token ids, the ids the model reads)``: the end of the first when it is too long."""
        special = not self.tokenizer.chat_template  # a template writes its own special tokens
        text = self.text(prompt, completion)
        full = self.tokenizer(text, add_special_tokens=special)["input_ids"]
        if self.max_length is None or len(full) <= self.max_length:
            return full, full
        # the tokenizer's own truncation keeps its special tokens ([CLS], <s>) around the kept end
        kept = self.tokenizer(text, add_special_tokens=special, truncation=True, max_length=self.max_length)
        return full, kept["input_ids"]

    def score(self, ids: Sequence[list[int]]) -> list[float]:
        """The model's scalar for each token sequence, ``batch_size`` at a time, longest first."""
        out: list[Any] = [reward_error("the input has no tokens")] * len(ids)
        order = sorted((i for i in range(len(ids)) if ids[i]), key=lambda i: -len(ids[i]))
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            for i, s in zip(chunk, self._forward([ids[i] for i in chunk])):
                out[i] = s
        return out

    @torch.inference_mode()
    def _forward(self, rows: list[list[int]]) -> list[float]:
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_id or 0, dtype=torch.long)  # (b, S)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)  # (b, S)
        for i, r in enumerate(rows):  # right padding: real tokens keep positions 0..n-1
            input_ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            attention_mask[i, : len(r)] = 1
        out = self.model(input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device))
        return out.logits[:, 0].float().tolist()  # (b,)


def _pad_id(model: Any, tokenizer: Any) -> int | None:
    """The id the model pools around: its config's ``pad_token_id``, else the tokenizer's (which
    the config then takes, as TRL's ``GRPOTrainer`` does); ``None`` if neither has one."""
    config = model.config.get_text_config()
    if config.pad_token_id is None and tokenizer.pad_token_id is not None:
        config.pad_token_id = model.config.pad_token_id = tokenizer.pad_token_id
    return config.pad_token_id


def window(config: Any, tokenizer: Any) -> int | None:
    """The most tokens the model reads: its positions and its tokenizer's limit (``None``: no limit known)."""
    limits = [getattr(config.get_text_config(), "max_position_embeddings", None), tokenizer.model_max_length]
    known = [int(n) for n in limits if isinstance(n, int) and 0 < n < _NO_LIMIT]
    return min(known) if known else None


def load_reward_model(spec: Any, device: str = "cpu", key: str = "reward") -> RewardModel:
    """Check and load the checkpoint ``spec`` names (a ``RewardModelSpec``); bad input is one line.

    Refused: a missing directory, an adapter, a checkpoint that is not a sequence-classification
    model (by its ``architectures``, or a head the weights lack), one with other than one label,
    and unreadable config, tokenizer or weights. ``device`` is the caller's (the policy's);
    ``spec.device`` overrides it.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from r1rl.models.factory import resolve_model_path

    path = resolve_model_path(spec.path, key=f"{key}.path")
    if Path(path).is_dir() and not (Path(path) / "config.json").exists():
        raise UserError(f"reward model {path} is an adapter (no config.json); merge it into its base first")
    config = _load(lambda: AutoConfig.from_pretrained(path), path, "its config")
    kinds = list(getattr(config, "architectures", None) or [])
    if kinds and not any(k.endswith("ForSequenceClassification") for k in kinds):
        raise UserError(
            f"reward model {path} is a {', '.join(kinds)} checkpoint, not a sequence-classification model "
            "(a reward-model tier needs *ForSequenceClassification with num_labels 1)"
        )
    if config.num_labels != 1:
        raise UserError(
            f"reward model {path} has {config.num_labels} labels (num_labels={config.num_labels}); "
            "a reward-model tier reads one score, so it needs a classification checkpoint with one label"
        )
    tokenizer = _load(lambda: AutoTokenizer.from_pretrained(path), path, "its tokenizer")
    max_length = _max_length(spec, config, tokenizer, path)
    model, info = _load(
        lambda: AutoModelForSequenceClassification.from_pretrained(path, output_loading_info=True),
        path, "its weights as a sequence-classification model",
    )  # fmt: skip
    if info.get("missing_keys"):
        missing = ", ".join(sorted(info["missing_keys"])[:3])
        raise UserError(
            f"reward model {path}: its weights lack {missing}; "
            "it is not a trained sequence-classification model"
        )
    where = spec.device or device
    name = Path(path).name or path  # TRL names a reward model by its path's last part too
    return _load(
        lambda: RewardModel(model, tokenizer, batch_size=spec.batch_size, max_length=max_length,
                            device=where, name=name),
        path, f"it onto device {where!r}",
    )  # fmt: skip


def _max_length(spec: Any, config: Any, tokenizer: Any, path: str) -> int | None:
    limit = window(config, tokenizer)
    if spec.max_length is not None and limit is not None and spec.max_length > limit:
        raise UserError(
            f"reward model {path}: max_length {spec.max_length} is longer than its window of {limit} tokens"
        )
    return spec.max_length if spec.max_length is not None else limit


def _load(make: Any, path: str, what: str) -> Any:
    """``make()``, with any failure of transformers or torch turned into one line naming ``path``."""
    try:
        return make()
    except UserError:
        raise
    except Exception as e:  # a damaged or foreign checkpoint is bad input, not a crash
        why = one_line(f"{type(e).__name__}: {e}")
        raise UserError(f"reward model {path}: cannot load {what} ({why})") from None
