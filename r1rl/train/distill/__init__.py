"""Distillation after RL: a teacher's correct samples, and optionally its logits, train a student.

- :mod:`r1rl.train.distill.sampling` — rejection sampling: ``k`` completions per prompt, kept when they
  pass the reward tiers, deduplicated, with the counts;
- :mod:`r1rl.algorithms.distill` — logit distillation (Hinton et al.'s ``τ²·KL``, GKD's generalised
  JSD) as pure functions, and the supervised loop's loss hook that applies them.

The stage's wiring is ``recipes/distill.py``.
"""

from __future__ import annotations

from typing import Any

from r1rl.algorithms.distill import LOGIT_LOSSES, LogitDistillation, generalized_jsd, soft_kl
from r1rl.config import LogitDistillConfig
from r1rl.errors import UserError
from r1rl.train.distill.sampling import (
    Teacher,
    Traces,
    accept_tier,
    accepted_through,
    cached_traces,
    dedup,
    sample_traces,
)

__all__ = [
    "LOGIT_LOSSES", "LogitDistillation", "Teacher", "Traces", "accept_tier", "accepted_through",
    "cached_traces", "check_same_tokenizer", "dedup", "generalized_jsd", "logit_hook", "sample_traces",
    "soft_kl",
]  # fmt: skip


def check_same_tokenizer(student: Any, teacher: Any) -> None:
    """The student must read the teacher's tokens as the teacher does: the same vocabulary, id for id."""
    a, b = student.get_vocab(), teacher.get_vocab()
    if a != b:
        differ = sum(a.get(t) != i for t, i in b.items()) + len(set(a) - set(b))
        raise UserError(
            f"model_path and teacher_path have different tokenizers ({len(a)} and {len(b)} tokens, "
            f"{differ} differing); the student must use the teacher's tokenizer"
        )


def logit_hook(teacher: Any, student: Any, cfg: LogitDistillConfig) -> LogitDistillation | None:
    """The loss hook ``cfg`` asks for (``None`` for ``logits.loss: none``), the two vocabularies checked."""
    if cfg.loss == "none":
        return None
    v_teacher = teacher.get_output_embeddings().weight.shape[0]
    v_student = student.get_output_embeddings().weight.shape[0]
    if v_teacher != v_student:
        raise UserError(
            f"logits.loss={cfg.loss} compares logits, but the teacher has {v_teacher} and the student "
            f"{v_student} output rows; use logits.loss=none or models with one vocabulary size"
        )
    options = {"temperature": cfg.temperature, **({"beta": cfg.beta} if cfg.loss == "jsd" else {})}
    return LogitDistillation(teacher, cfg.loss, cfg.coef, **options)
