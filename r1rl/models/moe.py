"""Routing replay: record the experts each token was routed to in the rollout, force them in the update.

Router losses and expert-load telemetry are pure math, in :mod:`r1rl.algorithms.router`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch

from r1rl.algorithms.router import flat_mask
from r1rl.errors import UserError

# Model types whose routers score experts with a sigmoid (DeepSeek-V3 and its descendants, Llama 4);
# the others use a softmax (Switch-style; ERNIE-4.5 adds a bias correction, PhiMoE a sparse mixer).
SIGMOID_ROUTERS = frozenset({"deepseek_v3", "glm4_moe", "dots1", "llama4_text", "llama4"})
EXPERT_KEYS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts")
TOP_K_KEYS = ("num_experts_per_tok", "moe_k", "moe_topk", "moe_top_k")


def routing_shape(config: Any) -> tuple[int, int] | None:
    """``(routed experts per layer, experts per token)`` of a transformers config; ``None`` for a dense model.

    Architectures name these differently (``num_local_experts``, ``n_routed_experts``, ERNIE's ``moe_k``,
    DBRX's ``ffn_config.moe_top_k`` …)."""
    configs = [config, getattr(config, "ffn_config", None)]
    experts = _first(configs, EXPERT_KEYS)
    top_k = _first(configs, TOP_K_KEYS)
    if not experts or experts < 2:
        return None
    return experts, top_k or 1


def _first(configs: list[Any], keys: tuple[str, ...]) -> int | None:
    for config in configs:
        for key in keys:
            value = getattr(config, key, None) if config is not None else None
            if isinstance(value, (list, tuple)):  # per-layer values (HunYuan): the first
                value = value[0] if value else None
            if isinstance(value, int) and value > 0:
                return value
    return None


def router_scoring(config: Any) -> Literal["softmax", "sigmoid"]:
    """How the routers of a model type score experts (:data:`SIGMOID_ROUTERS`)."""
    return "sigmoid" if getattr(config, "model_type", "") in SIGMOID_ROUTERS else "softmax"


def routers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The top-k router modules of a transformers MoE, in layer order."""
    return [m for m in model.modules() if type(m).__name__.endswith("TopKRouter")]


def check_router_terms(cfg: Any, model: torch.nn.Module) -> None:
    """Refuse (one line) router terms (``moe.router_aux_loss_coef``, ``moe.router_z_loss_coef``) on a model
    without routers, where they would add nothing."""
    model = _unwrapped(model)
    if routing_shape(model.config) is not None:
        return
    for key in ("router_aux_loss_coef", "router_z_loss_coef"):
        if getattr(cfg, key) > 0:
            raise UserError(
                f"moe.{key}: {type(model).__name__} has no MoE routers, so the term would add nothing; "
                "set it to 0"
            )


def check_routing_replay(model: torch.nn.Module) -> None:
    """Refuse (one line) ``moe.routing_replay: true`` on a model whose routers it cannot replay.

    Replay recomputes the gate weights of the recorded experts as a softmax over the router logits
    (renormalised over the k chosen where the router renormalises). Rather than trusting class names,
    each router is run on random inputs and its own weights compared with that recomputation: the
    ``*TopKRouter`` modules of Qwen2/3-MoE, Qwen3-Next, Mixtral, OLMoE, GPT-OSS, GraniteMoE and
    ERNIE-4.5 pass; PhiMoE's sparse mixer, Jamba's unnormalised top-k and the sigmoid or grouped
    routers (DeepSeek, GLM-4-MoE, dots.llm1, Llama 4, HunYuan, DBRX) would be replayed wrongly, so
    they are refused rather than replayed wrongly or switched off in silence.
    """
    found = routers(model)
    name = type(_unwrapped(model)).__name__
    if not found:
        gates = sorted(
            {type(m).__name__ for n, m in model.named_modules() if n.endswith(("mlp.gate", "router"))}
        )
        what = f"routes with {', '.join(gates)}" if gates else "has no MoE routers"
        raise UserError(
            f"moe.routing_replay: true needs softmax top-k routers (as in Qwen3-MoE, Mixtral, OLMoE); "
            f"this {name} {what}; set moe.routing_replay: false"
        )
    for router in found:
        if not _replays_exactly(router):
            raise UserError(
                f"moe.routing_replay: true: {name}'s {type(router).__name__} weighs its experts otherwise "
                "than the softmax over its logits that replay recomputes; set moe.routing_replay: false"
            )


def _replays_exactly(router: torch.nn.Module) -> bool:
    """Whether ``router``'s own gate weights equal replay's recomputation, on random inputs (a float32
    copy on the CPU, so that a bf16 router's rounding is not taken for a difference)."""
    probe = copy.deepcopy(router).float().cpu()
    weight = next(probe.parameters())
    x = torch.randn(16, weight.shape[-1], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits, scores, indices = probe(x)
        top = torch.softmax(logits, dim=-1, dtype=torch.float).gather(-1, indices)
        if getattr(probe, "norm_topk_prob", True):
            top = top / top.sum(-1, keepdim=True)
    return bool(torch.allclose(top, scores.float(), atol=1e-4, rtol=1e-4))


def _unwrapped(model: torch.nn.Module) -> torch.nn.Module:
    get_base_model = getattr(model, "get_base_model", None)  # a PEFT wrapper's
    return get_base_model() if get_base_model is not None else model


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
        self._shape: tuple[int, int] = (0, 0)  # (B, S) of the batch under record()
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
            w = flat_mask(self._mask, same.shape[0], same.device)
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
