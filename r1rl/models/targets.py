"""LoRA targets found from the model: every attention projection and every routed expert's weights.

MoE architectures name these differently (``mlp.experts``, ``feed_forward.experts``,
``block_sparse_moe.experts``, DBRX's ``ffn.experts.mlp``; ``q_proj``, MLA's ``q_a_proj`` /
``kv_b_proj``, DBRX's ``Wqkv``, linear attention's ``in_proj_qkvz``, Mamba's ``in_proj``), so
r1rl reads them from the modules, not from a list of names:

- **token mixers** are modules whose class name ends in ``Attention``, ``GatedDeltaNet`` (linear
  attention) or ``MambaMixer``; every ``nn.Linear`` inside one is adapted. Their depthwise
  ``Conv1d`` is not: with a handful of weights per channel there is nothing for a low rank to compress.
- **routed experts** are modules whose class name ends in ``Experts``; every weight inside one
  that is not a bias goes to PEFT's ``target_parameters`` (3-D ``(E, ·, ·)`` tensors, or DBRX's
  2-D ``(E·ffn, hidden)`` stacks), and per-expert ``nn.Linear`` modules go to ``target_modules``.

Shared experts, dense MLPs, routers, norms and embeddings are not adapted. Names are kept relative
to the decoder layer (``self_attn.q_proj``, ``mlp.experts.gate_up_proj``), which PEFT matches as
suffixes. After the adapter is built, :func:`coverage` checks what PEFT actually wrapped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch

from r1rl.errors import UserError

MIXER = re.compile(r"(Attention|GatedDeltaNet|MambaMixer)$")
EXPERTS = re.compile(r"Experts$")
LAYER_PREFIX = re.compile(r"^(.*?\.)?\d+\.")  # up to and including the first ".<index>." of a name


@dataclass(frozen=True)
class Targets:
    """What an adapter should cover: full names in the model, and the layer-relative names PEFT takes."""

    attention: tuple[str, ...]  # full names of the token mixers' nn.Linear modules
    expert_modules: tuple[str, ...]  # full names of per-expert nn.Linear modules (older layouts)
    expert_parameters: tuple[str, ...]  # full names of the experts' stacked weights

    @property
    def target_modules(self) -> list[str]:
        return relative_names(self.attention + self.expert_modules)

    @property
    def target_parameters(self) -> list[str]:
        return relative_names(self.expert_parameters)


def relative_names(names: tuple[str, ...] | list[str]) -> list[str]:
    """Layer-relative names, deduplicated in first-seen order."""
    return list(dict.fromkeys(LAYER_PREFIX.sub("", n) for n in names))


def find_targets(model: torch.nn.Module) -> Targets:
    """The attention projections and routed-expert weights of ``model`` (see the module docstring)."""
    attention, expert_modules, expert_parameters = [], [], []
    for name, module in model.named_modules():
        kind = type(module).__name__
        if MIXER.search(kind):
            attention += [f"{name}.{n}" for n, m in module.named_modules() if isinstance(m, torch.nn.Linear)]
        elif EXPERTS.search(kind):
            for sub, child in module.named_modules():
                full = f"{name}.{sub}" if sub else name
                if isinstance(child, torch.nn.Linear):
                    expert_modules.append(full)
                    continue
                expert_parameters += [
                    f"{full}.{p}"
                    for p, w in child.named_parameters(recurse=False)
                    if w.ndim >= 2 and not p.endswith("bias")
                ]
    return Targets(tuple(attention), tuple(expert_modules), tuple(expert_parameters))


@dataclass(frozen=True)
class Coverage:
    """What an adapter covers, counted on the model after PEFT built it."""

    attention: int  # attention projections wrapped
    attention_total: int
    experts: int  # expert weight tensors (or per-expert linears) wrapped
    experts_total: int
    expert_layers: int  # decoder layers with adapted experts
    trainable: int
    total: int

    def line(self, adapter: str = "") -> str:
        name = f" {adapter}" if adapter else ""
        share = 100 * self.trainable / max(self.total, 1)
        return (
            f"[lora{name}] attention {self.attention}/{self.attention_total} projections, "
            f"experts {self.experts}/{self.experts_total} weight tensors in {self.expert_layers} layers, "
            f"{self.trainable:,} trainable parameters ({share:.2f}% of {self.total:,})"
        )


def coverage(peft_model: Any, targets: Targets) -> Coverage:
    """Count what PEFT actually wrapped (its ``targeted_*_names``) against ``targets``."""
    tuner = peft_model.base_model
    wrapped_modules = {_strip(n) for n in tuner.targeted_module_names}
    wrapped_parameters = {_strip(n) for n in tuner.targeted_parameter_names}
    wrapped = wrapped_modules | wrapped_parameters
    experts = [n for n in targets.expert_modules + targets.expert_parameters if n in wrapped]
    layers = {m.group(0) for n in experts if (m := LAYER_PREFIX.match(n))}
    params = list(peft_model.parameters())
    return Coverage(
        attention=sum(n in wrapped for n in targets.attention),
        attention_total=len(targets.attention),
        experts=len(experts),
        experts_total=len(targets.expert_modules + targets.expert_parameters),
        expert_layers=len(layers),
        trainable=sum(p.numel() for p in params if p.requires_grad),
        total=sum(p.numel() for p in params),
    )


def _strip(name: str) -> str:
    return name.replace(".base_layer", "")


def check_explicit(model: torch.nn.Module, modules: list[str], parameters: list[str]) -> None:
    """A name in ``lora.target_modules`` / ``lora.target_parameters`` that matches nothing is a UserError
    (PEFT only warns, and the adapter then silently skips it)."""
    module_names = [n for n, _ in model.named_modules()]
    param_names = [n for n, _ in model.named_parameters()]
    for key, wanted, names in (
        ("lora.target_modules", modules, module_names),
        ("lora.target_parameters", parameters, param_names),
    ):
        for target in wanted:
            if not any(n == target or n.endswith(f".{target}") for n in names):
                found = find_targets(model)
                hint = found.target_modules if key == "lora.target_modules" else found.target_parameters
                raise UserError(
                    f"{key}: {target!r} matches nothing in {type(model).__name__} "
                    f"(found from the model: {', '.join(hint) or 'none'}); set {key}: auto"
                )


# Experts whose weights the model reads outside their module's forward, where PEFT's target_parameters
# applies LoRA (a parametrisation active only during that forward): the adapter would train nothing.
UNREACHABLE = {
    "DbrxExperts": "DBRX's experts read ffn.experts.mlp.w1/v1/w2 outside that module's forward, where PEFT's "
    "target_parameters applies LoRA",
}


def refuse_unreachable(model: torch.nn.Module) -> None:
    """An architecture whose expert weights PEFT cannot reach is refused in one line, with the reason."""
    for module in model.modules():
        reason = UNREACHABLE.get(type(module).__name__)
        if reason:
            raise UserError(
                f"lora.target_parameters: auto cannot adapt {type(model).__name__}'s experts: {reason}; "
                "set lora.target_parameters: [] (attention only) or full_finetune: true (ppo, distill)"
            )


def refuse_uncovered(cover: Coverage, model: torch.nn.Module) -> None:
    """An MoE whose routed experts the adapter does not reach is refused (one line), not trained on
    attention alone in silence."""
    if cover.experts_total and cover.experts < cover.experts_total:
        raise UserError(
            f"lora: PEFT wrapped {cover.experts} of the {cover.experts_total} expert weight tensors of "
            f"{type(model).__name__}; its routed experts cannot be adapted"
        )
