"""FSDP2 for r1rl's models: torch's ``fully_shard``, configured by the accelerate FSDP launch.

Shard units, as accelerate's ``TRANSFORMER_BASED_WRAP`` picks them for FSDP2:

- every decoder layer (the classes in the model's ``_no_split_modules``: ``Qwen3MoeDecoderLayer``,
  ``OlmoeDecoderLayer``, ...), with the LoRA adapters and routers inside it;
- the input embedding, the final norm and the output head, as one unit (tied weights must live in
  one group) that stays gathered from the first to the last of them;
- the root, whose ``generate`` is registered as a forward method, so generation gathers what the
  root holds before the embedding runs (without it: "mixed torch.Tensor and DTensor").

Each rank holds 1/N of every weight, the frozen base included; a forward gathers one unit at a time.
Options of the accelerate config, read by accelerate's ``FullyShardedDataParallelPlugin`` from the
launcher's environment: ``fsdp_reshard_after_forward``, ``fsdp_offload_params`` (parameters and
gradients on the CPU between uses) and ``mixed_precision: bf16`` (gathered weights in bf16,
gradients reduced in fp32). With a ``parallelism_config`` of ``dp_replicate_size`` ×
``dp_shard_size`` the mesh is 2-D: HSDP, weights sharded within a group and replicated across groups.

Gradients are averaged over ranks (as DDP does) for the supervised loops and summed for PPO, whose
micro-batch weights are shares of the global minibatch (``sum_gradients``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, cast

import torch

from r1rl.errors import UserError
from r1rl.models.factory import add_lora, load_merged

if TYPE_CHECKING:
    from transformers import PreTrainedModel

SHARDED_EVAL = (
    "log.eval_every: held-out evals during training generate on the main process alone, which FSDP2's "
    "sharded weights do not allow; set log.eval_every=0 and evaluate final/ with the eval stage"
)


def _plugin() -> Any:
    from accelerate.utils import FullyShardedDataParallelPlugin

    plugin = FullyShardedDataParallelPlugin()
    precision = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    if precision != "no":
        plugin.set_mixed_precision(precision)
    return plugin


def _mesh(par: Any) -> Any:
    """accelerate's device mesh for a ``parallelism_config`` (HSDP), else ``None`` (1-D over all ranks)."""
    if os.environ.get("ACCELERATE_USE_PARALLELISM_CONFIG", "false").lower() != "true":
        return None
    from accelerate.parallelism_config import ParallelismConfig

    pc = ParallelismConfig()
    if pc.dp_replicate_size * pc.dp_shard_size != par.world:
        raise UserError(
            f"parallelism_config dp_replicate_size={pc.dp_replicate_size} × dp_shard_size={pc.dp_shard_size} "
            f"is not the {par.world} processes launched"
        )
    mesh = pc.build_device_mesh(par.device.type)
    return mesh[tuple(pc.fsdp_dim_names)] if mesh is not None else None


def transformer_of(model: torch.nn.Module) -> PreTrainedModel:
    """The transformers model inside a PEFT wrapper (or ``model`` itself)."""
    get_base_model = getattr(model, "get_base_model", None)
    return get_base_model() if get_base_model is not None else model


def decoder_layers(model: torch.nn.Module, names: list[str] | None = None) -> list[torch.nn.Module]:
    """The modules of the classes named (the accelerate config's ``fsdp_transformer_layer_cls_to_wrap``),
    or of the model's ``_no_split_modules``."""
    wanted = set(names or getattr(transformer_of(model), "_no_split_modules", None) or ())
    layers = [m for m in model.modules() if type(m).__name__ in wanted]
    if not layers:
        kind = type(transformer_of(model)).__name__
        raise UserError(f"FSDP2: {kind} names no decoder layer classes (_no_split_modules) to shard")
    return layers


def shard_model(model: torch.nn.Module, par: Any, sum_gradients: bool) -> torch.nn.Module:
    """Shard ``model`` in place (see the module docstring) and return it."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method

    plugin = _plugin()
    kwargs: dict[str, Any] = {
        "mesh": _mesh(par),
        "reshard_after_forward": plugin.reshard_after_forward,
        "mp_policy": plugin.mixed_precision_policy or MixedPrecisionPolicy(),
        "offload_policy": plugin.cpu_offload,
    }
    units = []
    for layer in decoder_layers(model, plugin.transformer_cls_names_to_wrap):
        units.append(fully_shard(layer, **kwargs))
    inner = transformer_of(model)
    ends = [inner.get_input_embeddings(), getattr(getattr(inner, "model", None), "norm", None)]
    ends.append(inner.get_output_embeddings())
    ends = list({id(m): m for m in ends if m is not None}.values())
    units.extend(fully_shard(ends, **{**kwargs, "reshard_after_forward": False}))
    units.append(fully_shard(model, **kwargs))
    if hasattr(model, "generate"):
        register_fsdp_forward_method(model, "generate")
    _reduction(units, par, sum_gradients)
    return model


def _reduction(units: list[Any], par: Any, sum_gradients: bool) -> None:
    """Summed (factor 1) or averaged gradients; gloo has no pre-multiplied sum, so on the CPU the
    reduction is a plain sum with the scaling done apart."""
    for unit in units:
        if sum_gradients:
            unit.set_gradient_divide_factor(1.0)
        if par.device.type == "cpu":
            unit.set_force_sum_reduction_for_comms(True)


def shard_module(module: torch.nn.Module, par: Any, sum_gradients: bool) -> torch.nn.Module:
    """Shard a small module as one unit of its own (PPO's value head)."""
    from torch.distributed.fsdp import fully_shard

    _reduction([fully_shard(module, mesh=_mesh(par), reshard_after_forward=False)], par, sum_gradients)
    return module


def init_optimizer_state(opt: torch.optim.Optimizer) -> None:
    """Create the optimizer's state without moving a weight (a step at learning rate 0 on zero
    gradients), so a sharded checkpoint has tensors to load into."""
    if opt.state:
        return
    lrs = [group["lr"] for group in opt.param_groups]
    params = [p for group in opt.param_groups for p in group["params"]]
    for p in params:
        p.grad = torch.zeros_like(p)
    for group in opt.param_groups:
        group["lr"] = 0.0
    opt.step()
    for group, lr in zip(opt.param_groups, lrs):
        group["lr"] = lr
    for p in params:
        p.grad = None


def full_state_dict(module: torch.nn.Module, trainable_only: bool = False) -> dict[str, torch.Tensor]:
    """The whole (unsharded) state on the main process's CPU; an empty dict on the others.

    A collective: every rank calls it. ``trainable_only`` gathers only parameters that require
    gradients (the adapters), not the frozen base.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=trainable_only)
    # full_state_dict=True gathers plain tensors; torch's return type covers every option (DTensor ...)
    return cast(dict[str, torch.Tensor], get_model_state_dict(module, options=options))


def shard_roles(ac: Any, par: Any) -> Any:
    """PPO's LoRA roles under FSDP2: the base with both adapters sharded per layer, and the value
    head as a unit of its own; gradients summed over ranks (micro-batch weights are global shares)."""
    if getattr(ac, "critic_body", None) is not None or not hasattr(ac, "peft"):
        raise UserError(
            "FSDP2 shards the LoRA roles on one base; full_finetune and critic_model_path run under DDP"
        )
    shard_model(ac.peft, par, sum_gradients=True)
    if ac.value_head is not None:
        shard_module(ac.value_head, par, sum_gradients=True)
    return ac


def merged_policy(ac: Any, par: Any, model_path: str, lora_cfg: Any, dtype: torch.dtype | None) -> Any:
    """PPO's ``final/`` under FSDP2: the policy adapter gathered (a collective) and, on the main
    process, merged into a fresh CPU copy of the base; ``None`` on the other ranks."""
    state = full_state_dict(ac.peft, trainable_only=True)
    if not par.is_main:
        return None
    fresh = add_lora(load_merged(model_path, dtype), lora_cfg, adapter_name="policy")
    policy = {k: v for k, v in state.items() if ".policy." in k}
    result = fresh.load_state_dict(policy, strict=False)
    if result.unexpected_keys or not policy:
        raise RuntimeError(f"the gathered policy adapter does not fit its base: {result.unexpected_keys[:3]}")
    return fresh.merge_and_unload()
