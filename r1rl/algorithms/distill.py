"""Logit distillation: pure functions over teacher and student logits, and the supervised loop's hook.

Notation: ``B`` sequences, ``T`` next-token positions, ``V`` the vocabulary; ``P`` the teacher's
and ``Q`` the student's next-token distribution, both softened by a temperature ``τ``:
``P = softmax(z_teacher / τ)``, ``Q = softmax(z_student / τ)``. Every loss returns a per-token
``(B, T)`` matrix; the masked reduction happens once, in :class:`LogitDistillation`.

- ``kl`` — Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network" (§2): the
  student matches the teacher's soft targets, ``τ² · KL(P ‖ Q)``. The soft targets' gradients scale
  as ``1/τ²``, "so it is important to multiply them by T²" for their weight not to depend on ``τ``.
- ``jsd`` — the generalised Jensen-Shannon divergence of GKD (Agarwal et al. 2024, "On-Policy
  Distillation of Language Models", arXiv:2306.13649): with ``M = β·P + (1 − β)·Q``,
  ``JSD(β) = β · KL(P ‖ M) + (1 − β) · KL(Q ‖ M)``. ``JSD(β) / β → KL(P ‖ Q)`` (forward KL) as
  ``β → 0`` and ``JSD(β) / (1 − β) → KL(Q ‖ P)`` (reverse KL) as ``β → 1``; at ``β = 0`` and ``β = 1``
  themselves, where the bounded form vanishes, the loss is that limit, as TRL's ``GKDTrainer``
  defines it. GKD softens by ``τ`` and does not rescale, so neither does this.

On the traces the student trains on (the teacher's own samples), ``kl`` is GKD's supervised KD
(forward KL on fixed outputs, GKD's λ = 0); r1rl does not sample from the student during training.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from r1rl.algorithms.ppo import masked_sum
from r1rl.registry import Registry

LogitLoss = Callable[..., torch.Tensor]  # (student (B, T, V), teacher (B, T, V), options) -> (B, T)
LOGIT_LOSSES: Registry[LogitLoss] = Registry("logit distillation loss")


def _log_softmax(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``log softmax(logits / τ)`` in at least float32 (bfloat16 logits are upcast, float64 kept)."""
    return torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)) / temperature, -1)


def _kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ q) = Σ_v p_v (log p_v − log q_v) at every position. (B, T, V) log-probs -> (B, T)."""
    return (log_p.exp() * (log_p - log_q)).sum(-1)


@LOGIT_LOSSES.register("kl")
def soft_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0, **_: Any
) -> torch.Tensor:
    """``τ² · KL(P ‖ Q)`` per token (Hinton et al. 2015). (B, T, V), (B, T, V) -> (B, T).

    >>> z = torch.tensor([[[0.0, 1.0, 2.0]]])
    >>> float(soft_kl(z, z, temperature=2.0))
    0.0
    """
    log_q, log_p = _log_softmax(student_logits, temperature), _log_softmax(teacher_logits, temperature)
    return temperature**2 * _kl(log_p, log_q)


@LOGIT_LOSSES.register("jsd")
def generalized_jsd(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    beta: float = 0.5,
    temperature: float = 1.0,
    **_: Any,
) -> torch.Tensor:
    """GKD's ``JSD(β)(P ‖ Q)`` per token; forward KL at β = 0, reverse KL at β = 1. (B, T, V) x2 -> (B, T).

    >>> p, q = torch.tensor([[[0.0, 2.0]]]), torch.tensor([[[2.0, 0.0]]])
    >>> float(generalized_jsd(q, p, beta=0.5)) == float(generalized_jsd(p, q, beta=0.5))  # symmetric at ½
    True
    """
    log_q, log_p = _log_softmax(student_logits, temperature), _log_softmax(teacher_logits, temperature)
    if beta == 0:
        return _kl(log_p, log_q)
    if beta == 1:
        return _kl(log_q, log_p)
    log_m = torch.logsumexp(torch.stack([log_p + math.log(beta), log_q + math.log(1 - beta)]), 0)  # log M
    return beta * _kl(log_p, log_m) + (1 - beta) * _kl(log_q, log_m)


class LogitDistillation:
    """The supervised loop's loss hook: ``coef`` × a :data:`LOGIT_LOSSES` term on the trained tokens.

    Called as ``hook(batch, student_logits, n_tokens) -> (term, metrics)``: the teacher scores the
    same batch without gradients, position ``t``'s logits predict token ``t + 1``, and the per-token
    loss is summed over the positions whose label is trained on (the completion and its EOS) and
    divided by ``n_tokens``, the loop's own normaliser of the cross-entropy (under a launcher, the
    global token count over the world size), so the term is a token mean exactly as the SFT loss is.
    The term is logged, before ``coef``, as ``distill/<loss>``.
    """

    def __init__(self, teacher: torch.nn.Module, loss: str, coef: float, **options: float) -> None:
        self.teacher, self.name, self.coef, self.options = teacher, loss, coef, options
        self.fn = LOGIT_LOSSES.get(loss, "logits.loss")
        teacher.eval()
        teacher.requires_grad_(False)

    def __call__(
        self, batch: dict[str, torch.Tensor], student_logits: torch.Tensor, n_tokens: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        with torch.no_grad():
            teacher_logits = self.teacher(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                output_router_logits=False,
            ).logits
        mask = (batch["labels"][:, 1:] != -100).float()  # (B, S - 1): the positions trained on
        per_token = self.fn(student_logits[:, :-1], teacher_logits[:, :-1], **self.options)  # (B, S - 1)
        term = masked_sum(per_token, mask) / n_tokens
        return self.coef * term, {f"distill/{self.name}": term.detach()}
