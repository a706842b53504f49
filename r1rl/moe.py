"""Training-side MoE additions: expert-load telemetry from router logits.

Notation: ``N`` routed tokens, ``E`` experts, ``L`` MoE layers, ``k`` experts per token.
"""

from __future__ import annotations

import torch


def expert_load(
    router_logits: tuple[torch.Tensor, ...], top_k: int, mask: torch.Tensor | None
) -> torch.Tensor:
    """Tokens routed to each expert in each layer. ``L × (N, E)`` logits, ``(N,)`` mask -> ``(L, E)``."""
    loads = []
    for logits in router_logits:
        idx = logits.detach().float().topk(top_k, dim=-1).indices  # (N, k)
        w = torch.ones_like(idx, dtype=torch.float32)
        if mask is not None:
            w = w * mask.reshape(-1, 1).float()
        loads.append(torch.zeros(logits.shape[-1]).scatter_add_(0, idx.reshape(-1), w.reshape(-1)))
    return torch.stack(loads)  # (L, E)


def load_metrics(load: torch.Tensor) -> dict[str, float]:
    """``moe/load_cv/<layer>``: coefficient of variation of per-expert token counts (0 = balanced)."""
    cv = load.std(dim=1, unbiased=False) / load.mean(dim=1).clamp_min(1e-9)  # (L,)
    return {f"moe/load_cv/{i}": float(v) for i, v in enumerate(cv)}
