"""Per-GPU memory estimates for LoRA PPO on a MoE checkpoint, from its architecture alone.

Parameter counts are exact: the model and its two LoRA adapters (policy and critic, the way
r1rl's PPO stage builds them) are instantiated on the ``meta`` device, which allocates
nothing. Everything else is an estimate with these assumptions:

- the frozen base is stored in bf16 (2 bytes/parameter); adapters are fp32 with fp32
  gradients and AdamW's two moments (4 + 4 + 8 bytes/parameter);
- ``ddp`` replicates everything; ``zero2`` shards gradients and optimizer states;
  ``zero3`` and ``fsdp2`` also shard the base and adapter weights (over ``gpus`` processes),
  plus one decoder layer gathered in full at a time;
- rollout: a bf16 KV cache for this GPU's share of the rollout batch at full length;
- update, one micro-batch with gradient checkpointing: every layer's bf16 input kept, one
  layer's activations recomputed (≈ s·b·(34·h + 5·a·s) bytes, Korthikanti et al. 2022), and
  the fp32 logits plus their log-softmax (2 × 4 bytes per vocabulary entry per token).

Peaks of rollout and update do not overlap, so the total is weights and optimizer plus the
larger of the two. Runtime overheads (CUDA context, allocator fragmentation, NCCL buffers;
typically 1–3 GB) are not included.

    python -m r1rl.memory            # the table in recipes/accelerate/README.md
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

import torch

GB = 1024**3

# Published hyperparameters, so an estimate needs no Hub access.
ARCHITECTURES: dict[str, tuple[str, dict[str, Any]]] = {
    "allenai/OLMoE-1B-7B-0924": (
        "olmoe",
        dict(
            vocab_size=50304, hidden_size=2048, intermediate_size=1024, num_hidden_layers=16,
            num_attention_heads=16, num_key_value_heads=16, num_experts=64, num_experts_per_tok=8,
            max_position_embeddings=4096, tie_word_embeddings=False,
        ),
    ),
    "Qwen/Qwen3-30B-A3B": (
        "qwen3_moe",
        dict(
            vocab_size=151936, hidden_size=2048, intermediate_size=6144, moe_intermediate_size=768,
            num_hidden_layers=48, num_attention_heads=32, num_key_value_heads=4, head_dim=128,
            num_experts=128, num_experts_per_tok=8, max_position_embeddings=40960, tie_word_embeddings=False,
        ),
    ),
}  # fmt: skip

STRATEGIES = ("ddp", "zero2", "zero3", "fsdp2")


def architecture(name: str) -> Any:
    """A transformers config for a name in :data:`ARCHITECTURES` (or an r1rl preset name)."""
    from transformers import AutoConfig

    if name in ARCHITECTURES:
        model_type, kwargs = ARCHITECTURES[name]
        return AutoConfig.for_model(model_type, **kwargs)
    from r1rl.model import build_config

    return build_config(name, 512, pad_token_id=1, eos_token_id=0)


@dataclass
class ParamCounts:
    total: int  # base model
    active: int  # per token: everything but the experts a token is not routed to
    adapters: int  # trainable: policy + critic LoRA adapters and the value head


def count_parameters(config: Any, lora: Any = None, critic: bool = True) -> ParamCounts:
    """Exact counts from a ``meta``-device model with r1rl's policy (and critic) adapters."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from r1rl.config import LoraConfigModel
    from r1rl.model import lora_config

    lora = lora or LoraConfigModel()
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
        total = sum(p.numel() for p in model.parameters())
        experts = sum(p.numel() for n, p in model.named_parameters() if ".experts." in n)
        n_exp = getattr(config, "num_experts", None) or getattr(config, "num_local_experts", 1)
        active = total - experts + experts * config.num_experts_per_tok // n_exp
        peft = get_peft_model(model, lora_config(lora), adapter_name="policy")
        per_adapter = sum(p.numel() for p in peft.parameters() if p.requires_grad)
    adapters = per_adapter * (2 if critic else 1) + (config.hidden_size + 1 if critic else 0)
    return ParamCounts(total, active, adapters)


def estimate(
    config: Any,
    strategy: str = "ddp",
    gpus: int = 1,
    *,
    lora: Any = None,
    critic: bool = True,
    rollout_sequences: int = 64,
    micro_batch: int = 4,
    seq_len: int = 1024,
    counts: ParamCounts | None = None,
) -> dict[str, float]:
    """Estimated peak GiB per GPU, by component, for one PPO step (see the module docstring).

    ``rollout_sequences`` is the global rollout batch (prompts × samples), split over ``gpus``.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy {strategy!r}: choose one of {STRATEGIES}")
    c = counts or count_parameters(config, lora, critic)
    shard_w = gpus if strategy in ("zero3", "fsdp2") else 1
    shard_o = gpus if strategy != "ddp" else 1
    h, L, V = config.hidden_size, config.num_hidden_layers, config.vocab_size
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", heads)
    head_dim = getattr(config, "head_dim", None) or h // heads
    per_gpu = -(-rollout_sequences // gpus)
    kv_cache = 2 * L * kv_heads * head_dim * 2 * per_gpu * seq_len
    b, s = micro_batch, seq_len
    activations = L * b * s * h * 2 + b * s * (34 * h + 5 * heads * s) + 2 * 4 * b * s * V
    gathered = 2 * c.total / L if shard_w > 1 else 0  # the layer being computed, unsharded
    out = {
        "base": 2 * c.total / shard_w + gathered,
        "adapters": 4 * c.adapters / shard_w,
        "grads+adam": 12 * c.adapters / shard_o,
        "rollout_kv": kv_cache,
        "update_act": activations,
    }
    out["total"] = out["base"] + out["adapters"] + out["grads+adam"] + max(kv_cache, activations)
    return {k: v / GB for k, v in out.items()}


def table(models: list[str], setups: list[tuple[str, int]], **kwargs: Any) -> str:
    """A markdown table of :func:`estimate` for every model × (strategy, gpus)."""
    from r1rl.config import LoraConfigModel

    lora = kwargs.pop("lora", None) or LoraConfigModel()
    critic = kwargs.pop("critic", True)
    rows = [
        f"| model | params (active) | LoRA r{'' if critic else ' (no critic)'} | strategy × GPUs | base "
        "| adapters | grads+Adam | rollout KV | update act. | **total / GPU** |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in models:
        config = architecture(name)
        counts = count_parameters(config, lora, critic)
        for strategy, gpus in setups:
            e = estimate(config, strategy, gpus, lora=lora, critic=critic, counts=counts, **kwargs)
            rows.append(
                f"| {name} | {counts.total / 1e9:.1f}B ({counts.active / 1e9:.1f}B) | {lora.r} "
                f"| {strategy} × {gpus} | {e['base']:.1f} | {e['adapters']:.1f} | {e['grads+adam']:.1f} "
                f"| {e['rollout_kv']:.1f} | {e['update_act']:.1f} | **{e['total']:.1f} GiB** |"
            )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    from r1rl.config import LoraConfigModel

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=list(ARCHITECTURES))
    ap.add_argument("--lora-r", type=int, default=8)
    ap.add_argument("--rollout-sequences", type=int, default=64)
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--no-critic", action="store_true", help="GRPO/RLOO: a policy adapter only")
    ap.add_argument("--setups", nargs="+", default=["ddp:1", "ddp:8", "zero2:8", "zero3:8", "fsdp2:8"])
    args = ap.parse_args(argv)
    setups = [(s.split(":")[0], int(s.split(":")[1])) for s in args.setups]
    lora = LoraConfigModel(r=args.lora_r, alpha=2 * args.lora_r)
    print(
        table(
            args.models, setups, lora=lora, critic=not args.no_critic,
            rollout_sequences=args.rollout_sequences, micro_batch=args.micro_batch, seq_len=args.seq_len,
        )
    )  # fmt: skip


if __name__ == "__main__":
    main()
