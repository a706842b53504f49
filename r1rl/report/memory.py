"""Per-GPU memory estimates for LoRA PPO on a MoE checkpoint, from its architecture alone.

Parameter counts are exact: the model and its two LoRA adapters (policy and critic, the way
r1rl's PPO stage builds them) are instantiated on the ``meta`` device, which allocates
nothing. Everything else is an estimate with these assumptions:

- the frozen base is stored in ``base_dtype`` (bfloat16: 2 bytes/parameter, float32: 4);
  adapters are fp32 with fp32 gradients and AdamW's two moments (4 + 4 + 8 bytes/parameter);
- ``ddp`` replicates everything; ``zero2`` shards gradients and optimizer states; ``zero3``
  also shards the base and adapter weights, plus one decoder layer's worth gathered at a time;
- ``fsdp2`` (``fully_shard`` per decoder layer, then the root) shards each decoder layer's base
  weights, adapters, gradients and AdamW moments over the GPUs. Two layers are unsharded at a
  time, weights and adapter gradients alike: the one being computed and the next, whose
  all-gather (forward) or the previous one's reduce-scatter (backward) FSDP2 overlaps with it.
  The root unit (embeddings, final norm, LM head, value head) is whole from the first layer's
  forward to the last one's backward, so it is counted in full. A gathered layer is counted in
  the base dtype (an upper bound where a bf16 mixed-precision policy gathers float32 in bf16);
- ``hsdp``: ``fsdp2`` sharded within a machine (``gpus_per_node``) and replicated across
  machines, so per GPU it holds what ``fsdp2`` over one machine holds, with the rollout split
  over every GPU;
- rollout: a bf16 KV cache (``compute.bf16``, whatever the base's dtype) for this GPU's share of
  the rollout batch at full length;
- update, one micro-batch with gradient checkpointing: every layer's bf16 input kept, one
  layer's activations recomputed (≈ s·b·(34·h + 5·a·s) bytes, Korthikanti et al. 2022), and
  the fp32 logits plus their log-softmax (2 × 4 bytes per vocabulary entry per token).

Peaks of rollout and update do not overlap, so the total is weights and optimizer plus the
larger of the two. Runtime overheads (CUDA context, allocator fragmentation, NCCL buffers;
typically 1–3 GB) are not included.

    python -m r1rl.report.memory            # the tables in recipes/accelerate/README.md
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from typing import Any

import torch

from r1rl.config import LoraConfigModel
from r1rl.models.architectures import ARCHITECTURES, published_config
from r1rl.models.factory import build_config, lora_config

GB = 1024**3
STRATEGIES = ("ddp", "zero2", "zero3", "fsdp2", "hsdp")
BASE_BYTES = {"bfloat16": 2, "float32": 4}
LAYER = re.compile(r"\.layers\.\d+\.")  # a decoder layer's parameters (FSDP2's shard units)


def architecture(name: str) -> Any:
    """A transformers config for a name in :data:`ARCHITECTURES` (or an r1rl preset name)."""
    if name in ARCHITECTURES:
        return published_config(name)
    return build_config(name, 512, pad_token_id=1, eos_token_id=0)


@dataclass
class ParamCounts:
    total: int  # base model
    active: int  # per token: everything but the experts a token is not routed to
    adapters: int  # trainable: policy + critic LoRA adapters and the value head
    layers: int = 0  # base parameters inside the decoder layers (the rest: embeddings, final norm, head)
    layer_adapters: int = 0  # trainable parameters inside the decoder layers (the rest: the value head)


def count_parameters(config: Any, lora: Any = None, critic: bool = True) -> ParamCounts:
    """Exact counts from a ``meta``-device model with r1rl's policy (and critic) adapters."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    lora = lora or LoraConfigModel()
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
        total = sum(p.numel() for p in model.parameters())
        layers = sum(p.numel() for n, p in model.named_parameters() if LAYER.search(n))
        experts = sum(p.numel() for n, p in model.named_parameters() if ".experts." in n)
        n_exp = getattr(config, "num_experts", None) or getattr(config, "num_local_experts", 1)
        active = total - experts + experts * config.num_experts_per_tok // n_exp
        peft = get_peft_model(model, lora_config(lora, model), adapter_name="policy")
        trainable = [(n, p.numel()) for n, p in peft.named_parameters() if p.requires_grad]
    per_adapter = sum(k for _, k in trainable)
    in_layers = sum(k for n, k in trainable if LAYER.search(n))
    n = 2 if critic else 1
    adapters = per_adapter * n + (config.hidden_size + 1 if critic else 0)
    return ParamCounts(total, active, adapters, layers, in_layers * n)


def weights(
    c: ParamCounts, strategy: str, gpus: int, layers: int, base_bytes: int, gpus_per_node: int = 8
) -> dict[str, float]:
    """Bytes per GPU of the base, the adapters, and their gradients and AdamW moments (module docstring)."""
    if strategy in ("ddp", "zero2"):
        shard = gpus if strategy == "zero2" else 1
        return {
            "base": base_bytes * c.total,
            "adapters": 4 * c.adapters,
            "grads+adam": 12 * c.adapters / shard,
        }
    if strategy == "zero3":  # one layer's worth of the base gathered at a time
        gathered = base_bytes * c.total / layers
        return {
            "base": base_bytes * c.total / gpus + gathered,
            "adapters": 4 * c.adapters / gpus,
            "grads+adam": 12 * c.adapters / gpus,
        }
    shard = gpus_per_node if strategy == "hsdp" else gpus
    layer, layer_adapters = c.layers / layers, c.layer_adapters / layers  # one decoder layer's
    root, root_adapters = c.total - c.layers, c.adapters - c.layer_adapters  # whole through the step
    return {
        "base": base_bytes * (c.layers / shard + root + 2 * layer),  # + two layers unsharded
        "adapters": 4 * (c.layer_adapters / shard + root_adapters + 2 * layer_adapters),
        "grads+adam": 12 * c.adapters / shard + 2 * 4 * layer_adapters,  # + two layers' before reduce-scatter
    }


def estimate(
    config: Any,
    strategy: str = "ddp",
    gpus: int = 1,
    *,
    lora: Any = None,
    critic: bool = True,
    base_dtype: str = "bfloat16",
    gpus_per_node: int = 8,
    rollout_sequences: int = 64,
    micro_batch: int = 4,
    seq_len: int = 1024,
    counts: ParamCounts | None = None,
) -> dict[str, float]:
    """Estimated peak GiB per GPU, by component, for one PPO step (see the module docstring).

    ``rollout_sequences`` is the global rollout batch (prompts × samples), split over ``gpus``;
    ``hsdp`` shards over ``gpus_per_node`` and replicates over ``gpus // gpus_per_node`` machines.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy {strategy!r}: choose one of {STRATEGIES}")
    if base_dtype not in BASE_BYTES:
        raise ValueError(f"base_dtype {base_dtype!r}: choose one of {tuple(BASE_BYTES)}")
    if strategy == "hsdp" and (gpus % gpus_per_node or gpus == gpus_per_node):
        raise ValueError(f"hsdp over {gpus} GPUs needs several machines of gpus_per_node={gpus_per_node}")
    c = counts or count_parameters(config, lora, critic)
    h, L, V = config.hidden_size, config.num_hidden_layers, config.vocab_size
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", heads)
    head_dim = getattr(config, "head_dim", None) or h // heads
    per_gpu = -(-rollout_sequences // gpus)
    kv_cache = 2 * L * kv_heads * head_dim * 2 * per_gpu * seq_len
    b, s = micro_batch, seq_len
    activations = L * b * s * h * 2 + b * s * (34 * h + 5 * heads * s) + 2 * 4 * b * s * V
    out = weights(c, strategy, gpus, L, BASE_BYTES[base_dtype], gpus_per_node)
    out.update(rollout_kv=kv_cache, update_act=activations)
    out["total"] = out["base"] + out["adapters"] + out["grads+adam"] + max(kv_cache, activations)
    return {k: v / GB for k, v in out.items()}


def setup_label(strategy: str, gpus: int, gpus_per_node: int = 8) -> str:
    """A table's "strategy × GPUs" cell: ``fsdp2 × 16``, or ``hsdp × 2×8`` (machines × GPUs each)."""
    if strategy == "hsdp":
        return f"hsdp × {gpus // gpus_per_node}×{gpus_per_node}"
    return f"{strategy} × {gpus}"


def table(models: list[str], setups: list[tuple[str, int]], **kwargs: Any) -> str:
    """A markdown table of :func:`estimate` for every model × base dtype × (strategy, gpus)."""
    lora = kwargs.pop("lora", None) or LoraConfigModel()
    critic = kwargs.pop("critic", True)
    dtypes = kwargs.pop("base_dtypes", None) or ["bfloat16"]
    per_node = kwargs.get("gpus_per_node", 8)
    rows = [
        f"| model | params (active) | LoRA r{'' if critic else ' (no critic)'} | base dtype "
        "| strategy × GPUs | base | adapters | grads+Adam | rollout KV | update act. | **total / GPU** |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in models:
        config = architecture(name)
        counts = count_parameters(config, lora, critic)
        for dtype in dtypes:
            for strategy, gpus in setups:
                e = estimate(
                    config,
                    strategy,
                    gpus,
                    lora=lora,
                    critic=critic,
                    counts=counts,
                    base_dtype=dtype,
                    **kwargs,
                )
                rows.append(
                    f"| {name} | {counts.total / 1e9:.1f}B ({counts.active / 1e9:.1f}B) | {lora.r} | {dtype} "
                    f"| {setup_label(strategy, gpus, per_node)} | {e['base']:.1f} | {e['adapters']:.1f} "
                    f"| {e['grads+adam']:.1f} | {e['rollout_kv']:.1f} | {e['update_act']:.1f} "
                    f"| **{e['total']:.1f} GiB** |"
                )
    return "\n".join(rows)


SETUPS = ["ddp:1", "ddp:8", "zero2:8", "zero3:8", "fsdp2:8", "fsdp2:16", "hsdp:16"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=list(ARCHITECTURES))
    ap.add_argument("--lora-r", type=int, default=8)
    ap.add_argument("--base-dtype", nargs="+", choices=list(BASE_BYTES), default=["bfloat16"],
                    help="the frozen base's dtype (one table row per dtype and setup)")  # fmt: skip
    ap.add_argument(
        "--gpus-per-node", type=int, default=8, help="hsdp: the GPUs of one machine (a shard group)"
    )
    ap.add_argument("--rollout-sequences", type=int, default=64)
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--no-critic", action="store_true", help="GRPO/RLOO: a policy adapter only")
    ap.add_argument("--setups", nargs="+", default=SETUPS, help="STRATEGY:GPUS (GPUs in all)")
    args = ap.parse_args(argv)
    setups = [(s.split(":")[0], int(s.split(":")[1])) for s in args.setups]
    lora = LoraConfigModel(r=args.lora_r, alpha=2 * args.lora_r)
    print(
        table(
            args.models, setups, lora=lora, critic=not args.no_critic, base_dtypes=args.base_dtype,
            gpus_per_node=args.gpus_per_node, rollout_sequences=args.rollout_sequences,
            micro_batch=args.micro_batch, seq_len=args.seq_len,
        )
    )  # fmt: skip


if __name__ == "__main__":
    main()
