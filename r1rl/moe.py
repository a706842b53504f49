"""Training-side MoE additions: router losses, expert-load telemetry and routing replay.

Notation: ``N`` routed tokens (batch × sequence, flattened), ``E`` experts, ``L`` MoE layers,
``k`` experts per token. Router logits come as transformers returns them: ``L × (N, E)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch


def _flat_mask(mask: torch.Tensor | None, n: int, device: torch.device | None = None) -> torch.Tensor:
    """(B, S) attention mask -> (N,) float weights (all ones without a mask)."""
    return torch.ones(n, device=device) if mask is None else mask.reshape(-1).float()


def expert_load(
    router_logits: tuple[torch.Tensor, ...], top_k: int, mask: torch.Tensor | None
) -> torch.Tensor:
    """Tokens routed to each expert in each layer. ``L × (N, E)`` logits, ``(B, S)`` mask -> ``(L, E)``."""
    loads = []
    for logits in router_logits:
        idx = logits.detach().float().topk(top_k, dim=-1).indices  # (N, k)
        w = _flat_mask(mask, idx.shape[0], idx.device).reshape(-1, 1).expand_as(idx)
        load = torch.zeros(logits.shape[-1], device=idx.device)
        loads.append(load.scatter_add_(0, idx.reshape(-1), w.reshape(-1)))
    return torch.stack(loads)  # (L, E)


def router_entropy(router_logits: tuple[torch.Tensor, ...], mask: torch.Tensor | None) -> torch.Tensor:
    """Mean entropy of the routing distribution per layer, in nats (log E = uniform). -> (L,)."""
    out = []
    for logits in router_logits:
        logp = torch.log_softmax(logits.detach().float(), dim=-1)  # (N, E)
        ent = -(logp.exp() * logp).sum(-1)  # (N,)
        w = _flat_mask(mask, ent.shape[0], ent.device)
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
        w = _flat_mask(mask, probs.shape[0]).to(probs.device)
        p = (probs * w[:, None]).sum(0) / w.sum().clamp_min(1)  # (E,)
        losses.append(((p - 1.0 / probs.shape[-1]) ** 2).sum())
    return alpha * torch.stack(losses).mean()


def router_z_loss(router_logits: tuple[torch.Tensor, ...], mask: torch.Tensor | None) -> torch.Tensor:
    """ST-MoE z-loss: mean over real tokens of logsumexp(router logits)², mean over layers."""
    losses = []
    for logits in router_logits:
        z = torch.logsumexp(logits.float(), dim=-1) ** 2  # (N,)
        w = _flat_mask(mask, z.shape[0]).to(z.device)
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
    w = _flat_mask(mask, router_logits[0].shape[0], dev)
    for logits in router_logits:
        probs = torch.softmax(logits.float(), dim=-1)  # (N, E)
        idx = probs.detach().topk(top_k, dim=-1).indices  # (N, k)
        counts = counts.scatter_add(0, idx.reshape(-1), w.repeat_interleave(top_k))
        prob_sum = prob_sum + (probs * w.unsqueeze(-1)).sum(0)
        rows = rows + w.sum()
    totals = all_sum(torch.cat([counts, rows.reshape(1)]).detach())
    f, total_rows = totals[:E] / totals[E], totals[E]
    return E * world * (f * prob_sum).sum() / total_rows


def routers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The top-k router modules of a transformers MoE, in layer order."""
    return [m for m in model.modules() if type(m).__name__.endswith("TopKRouter")]


def check_routing_replay(model: torch.nn.Module) -> None:
    """Refuse (one line) ``routing_replay: true`` on a model whose routers it cannot replay.

    Replay recomputes the gate weights of the recorded experts as a softmax over the router
    logits (renormalised over the k chosen), which is what the ``*TopKRouter`` modules of
    Qwen3-MoE, Mixtral and OLMoE compute; a router with sigmoid scores, expert groups or a bias
    correction (DeepSeek-V3's) would get different weights, so it is refused rather than
    replayed wrongly or switched off in silence.
    """
    from r1rl.errors import UserError

    if routers(model):
        return
    gates = sorted({type(m).__name__ for n, m in model.named_modules() if n.endswith("mlp.gate")})
    what = f"routes with {', '.join(gates)}" if gates else "has no MoE routers"
    raise UserError(
        f"ppo.routing_replay: true needs softmax top-k routers (as in Qwen3-MoE, Mixtral, OLMoE); "
        f"this {type(_unwrapped(model)).__name__} {what}; set routing_replay: false"
    )


def _unwrapped(model: torch.nn.Module) -> torch.nn.Module:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


class RoutingReplay:
    """Record the experts each token was routed to, and force the same choice later.

    PPO's ratio π/π_old compares two forward passes; in an MoE a small weight change can flip a
    token's top-k experts between them, so the ratio then measures a *different network* and
    becomes noisy (Zheng et al. 2025, "Group Sequence Policy Optimization"; veRL's routing
    replay). With replay, the update's forward pass uses the experts recorded when the old
    log-probs were computed. The gate weights of the recorded experts are recomputed from the
    current router logits (softmax, then renormalised over the chosen k), so the router still
    receives gradients.

    Usage: ``with replay.record(): forward(all rows)``, then for each update pass
    ``with replay.replay(rows): forward(those rows)``. Recorded indices: ``L × (B, S, k)``.
    Under gradient checkpointing the backward pass recomputes each layer's forward, these hooks
    included, so it must run inside the same ``replay(rows)`` context; outside it the recomputed
    routing differs and ``torch.utils.checkpoint`` raises a ``CheckpointError``.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.routers = routers(model)
        if not self.routers:
            raise ValueError("routing replay needs a model with top-k routers (a transformers MoE)")
        self.recorded: list[torch.Tensor] = []
        self._rows: torch.Tensor | None = None
        self.agreement: list[float] = []
        self._mode: str | None = None
        self._shape: tuple[int, int] | None = None
        self._mask: torch.Tensor | None = None
        self._handles = [r.register_forward_hook(self._hook(i)) for i, r in enumerate(self.routers)]

    def _hook(self, layer: int):
        def hook(module, inputs, output):
            logits, scores, indices = output
            if self._mode == "record":
                B, S = self._shape
                if layer == 0:
                    self.recorded = []
                self.recorded.append(indices.detach().reshape(B, S, -1).clone())
                return None
            if self._mode not in ("replay", "compare"):
                return None
            recorded = self.recorded[layer][self._rows].reshape(-1, indices.shape[-1])  # (N, k)
            same = (indices.sort(-1).values == recorded.sort(-1).values).all(-1).float()  # (N,)
            w = _flat_mask(self._mask, same.shape[0], same.device)
            self.agreement.append(float((same * w).sum() / w.sum().clamp_min(1)))
            if self._mode == "compare":
                return None
            probs = torch.softmax(logits, dim=-1, dtype=torch.float)
            top = probs.gather(-1, recorded)
            if getattr(module, "norm_topk_prob", True):
                top = top / top.sum(-1, keepdim=True)
            return logits, top.to(scores.dtype), recorded

        return hook

    @contextmanager
    def record(self, batch_shape: tuple[int, int]) -> Iterator[None]:
        """Record routing for a forward pass over a ``(B, S)`` batch."""
        self._mode, self._shape = "record", batch_shape
        try:
            yield
        finally:
            self._mode = None

    @contextmanager
    def replay(
        self, rows: torch.Tensor, mask: torch.Tensor | None = None, force: bool = True
    ) -> Iterator[None]:
        """Force the recorded routing of ``rows`` (indices into the recorded batch).

        With ``force=False`` routing is left alone and only compared. Either way ``agreement``
        collects, per layer, the fraction of real tokens (``mask``, (b, S)) whose top-k set
        equals the recorded one before replay is applied (1.0 = no routing drift).
        """
        if len(self.recorded) != len(self.routers):
            raise RuntimeError("nothing recorded to replay: run a forward pass inside record() first")
        self._mode, self._rows, self._mask = ("replay" if force else "compare"), rows, mask
        self.agreement = []
        try:
            yield
        finally:
            self._mode, self._rows, self._mask = None, None, None

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
