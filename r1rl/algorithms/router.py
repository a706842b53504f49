"""Router math: load-balance losses and expert-load telemetry, from router logits.

Notation: ``N`` routed tokens (batch × sequence, flattened), ``E`` experts, ``L`` MoE layers,
``k`` experts per token. Router logits come as transformers returns them: ``L × (N, E)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def flat_mask(mask: torch.Tensor | None, n: int, device: torch.device | None = None) -> torch.Tensor:
    """(B, S) attention mask -> (N,) float weights (all ones without a mask)."""
    return torch.ones(n, device=device) if mask is None else mask.reshape(-1).float()


def expert_load(
    router_logits: tuple[torch.Tensor, ...], top_k: int, mask: torch.Tensor | None
) -> torch.Tensor:
    """Tokens routed to each expert in each layer. ``L × (N, E)`` logits, ``(B, S)`` mask -> ``(L, E)``."""
    loads = []
    for logits in router_logits:
        idx = logits.detach().float().topk(top_k, dim=-1).indices  # (N, k)
        w = flat_mask(mask, idx.shape[0], idx.device).reshape(-1, 1).expand_as(idx)
        load = torch.zeros(logits.shape[-1], device=idx.device)
        loads.append(load.scatter_add_(0, idx.reshape(-1), w.reshape(-1)))
    return torch.stack(loads)  # (L, E)


def router_entropy(router_logits: tuple[torch.Tensor, ...], mask: torch.Tensor | None) -> torch.Tensor:
    """Mean entropy of the routing distribution per layer, in nats (log E = uniform). -> (L,)."""
    out = []
    for logits in router_logits:
        logp = torch.log_softmax(logits.detach().float(), dim=-1)  # (N, E)
        ent = -(logp.exp() * logp).sum(-1)  # (N,)
        w = flat_mask(mask, ent.shape[0], ent.device)
        out.append((ent * w).sum() / w.sum().clamp_min(1))
    return torch.stack(out)


def load_metrics(load: torch.Tensor, entropy: torch.Tensor | None = None) -> dict[str, float]:
    """Per layer ``l``: ``moe/load_cv/l`` (coefficient of variation of token counts, 0 = balanced),
    ``moe/max_over_mean/l``, ``moe/dead_experts/l`` (experts that got no token) and, given the
    router entropies, ``moe/router_entropy/l``. ``load``: (L, E)."""
    mean = load.mean(dim=1).clamp_min(1e-9)  # (L,)
    cv = load.std(dim=1, unbiased=False) / mean
    out: dict[str, float] = {}
    for i in range(load.shape[0]):
        out[f"moe/load_cv/{i}"] = float(cv[i])
        out[f"moe/max_over_mean/{i}"] = float(load[i].max() / mean[i])
        out[f"moe/dead_experts/{i}"] = float((load[i] == 0).sum())
        if entropy is not None:
            out[f"moe/router_entropy/{i}"] = float(entropy[i])
    return out


def variance_balance_loss(
    router_logits: tuple[torch.Tensor, ...], mask: torch.Tensor | None, alpha: float = 0.01
) -> torch.Tensor:
    """α·Σᵢ (pᵢ − 1/E)², pᵢ = mean routing probability of expert i over real tokens; mean over layers.

    Zero exactly when the router spreads probability evenly; differentiable in the gate weights.
    """
    losses = []
    for logits in router_logits:
        probs = torch.softmax(logits.float(), dim=-1)  # (N, E)
        w = flat_mask(mask, probs.shape[0]).to(probs.device)
        p = (probs * w[:, None]).sum(0) / w.sum().clamp_min(1)  # (E,)
        losses.append(((p - 1.0 / probs.shape[-1]) ** 2).sum())
    return alpha * torch.stack(losses).mean()


def router_z_loss(router_logits: tuple[torch.Tensor, ...], mask: torch.Tensor | None) -> torch.Tensor:
    """ST-MoE z-loss: mean over real tokens of logsumexp(router logits)², mean over layers."""
    losses = []
    for logits in router_logits:
        z = torch.logsumexp(logits.float(), dim=-1) ** 2  # (N,)
        w = flat_mask(mask, z.shape[0]).to(z.device)
        losses.append((z * w).sum() / w.sum().clamp_min(1))
    return torch.stack(losses).mean()


def switch_loss_global(
    router_logits: tuple[torch.Tensor, ...],
    top_k: int,
    mask: torch.Tensor | None,
    all_sum: Callable[[torch.Tensor], torch.Tensor],
    world: int,
) -> torch.Tensor:
    """This process's share of the Switch load-balancing loss over the *global* batch.

    transformers' ``load_balancing_loss_func`` is ``E · Σ_e f_e · P_e`` with ``f_e`` the share
    of top-k assignments and ``P_e`` the mean router probability of expert ``e``, over every
    layer's rows. Here ``f`` and the row count are summed over processes (no gradient flows
    through ``f``), and the local probability sums carry the gradient, scaled so that DDP's
    average over processes gives exactly the gradient — and the mean over processes exactly the
    value — of the loss one process computes on the whole batch. ``all_sum`` sums a tensor over
    processes (identity alone, with ``world`` 1). -> scalar.
    """
    E, dev = router_logits[0].shape[-1], router_logits[0].device
    counts = torch.zeros(E, device=dev)
    prob_sum = torch.zeros(E, device=dev)
    rows = torch.zeros((), device=dev)
    w = flat_mask(mask, router_logits[0].shape[0], dev)
    for logits in router_logits:
        probs = torch.softmax(logits.float(), dim=-1)  # (N, E)
        idx = probs.detach().topk(top_k, dim=-1).indices  # (N, k)
        counts = counts.scatter_add(0, idx.reshape(-1), w.repeat_interleave(top_k))
        prob_sum = prob_sum + (probs * w.unsqueeze(-1)).sum(0)
        rows = rows + w.sum()
    totals = all_sum(torch.cat([counts, rows.reshape(1)]).detach())
    f, total_rows = totals[:E] / totals[E], totals[E]
    return E * world * (f * prob_sum).sum() / total_rows


def switch_loss(
    router_logits: tuple[torch.Tensor, ...], top_k: int, mask: torch.Tensor | None
) -> torch.Tensor:
    """The Switch load-balancing loss ``E · Σ_e f_e · P_e`` over real tokens, on one process. -> scalar."""
    return switch_loss_global(router_logits, top_k, mask, lambda t: t, 1)


def sequence_balance_loss(
    router_logits: tuple[torch.Tensor, ...], top_k: int, mask: torch.Tensor
) -> torch.Tensor:
    """DeepSeek-V3's sequence-wise balance loss, for routers that score experts with a sigmoid.

    Per sequence of ``T`` real tokens: ``Σᵢ fᵢ·Pᵢ`` with ``fᵢ = E/(k·T) · #tokens routed to i`` and
    ``Pᵢ`` the mean over its tokens of ``sᵢ / Σⱼ sⱼ``, ``s = σ(logits)``; 1 when balanced. Mean over
    sequences, then layers. The experts counted are the top-k of ``s``: DeepSeek-V3's bias correction
    and group limit, which change the choice but are not trained by this loss, are left out.
    ``mask``: (B, S); router logits ``L × (B·S, E)``. -> scalar.
    """
    w = mask.float()  # (B, S)
    B, S = w.shape
    tokens = w.sum(1)  # (B,)
    real = (tokens > 0).float()
    losses = []
    for logits in router_logits:
        E = logits.shape[-1]
        s = torch.sigmoid(logits.float()).reshape(B, S, E)
        p = s / s.sum(-1, keepdim=True)
        idx = s.detach().topk(top_k, dim=-1).indices.reshape(B, -1)  # (B, S·k)
        counts = torch.zeros(B, E, device=s.device).scatter_add_(1, idx, w.repeat_interleave(top_k, dim=1))
        f = counts * E / (top_k * tokens.clamp_min(1)[:, None])
        P = (p * w[..., None]).sum(1) / tokens.clamp_min(1)[:, None]
        losses.append(((f * P).sum(-1) * real).sum() / real.sum().clamp_min(1))
    return torch.stack(losses).mean()
