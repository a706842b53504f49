"""Size presets for from-scratch Qwen3-MoE models (light: configs check names)."""

from __future__ import annotations

from typing import Any

from r1rl.registry import Registry

# Size presets for from-scratch Qwen3-MoE models. Parameter counts are for a 512-token vocabulary.
_SIZES: dict[str, dict[str, Any]] = {
    # ~0.3M parameters: unit tests.
    "micro": dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
        head_dim=16, intermediate_size=64, moe_intermediate_size=32, num_experts=4,
        num_experts_per_tok=2,
    ),
    # ~1.6M parameters: the default tiny pipeline.
    "tiny": dict(
        hidden_size=128, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
        head_dim=32, intermediate_size=256, moe_intermediate_size=128, num_experts=8,
        num_experts_per_tok=2,
    ),
    # ~19M parameters.
    "small": dict(
        hidden_size=256, num_hidden_layers=6, num_attention_heads=8, num_key_value_heads=4,
        head_dim=32, intermediate_size=1024, moe_intermediate_size=256, num_experts=16,
        num_experts_per_tok=2,
    ),
    # ~70M parameters: memory benchmarks.
    "base": dict(
        hidden_size=512, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=4,
        head_dim=64, intermediate_size=2048, moe_intermediate_size=384, num_experts=16,
        num_experts_per_tok=2,
    ),
}  # fmt: skip

PRESETS: Registry[dict[str, Any]] = Registry("model preset")
for _name, _fields in _SIZES.items():
    PRESETS.add(_name, _fields)
