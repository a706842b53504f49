"""Published MoE architectures, and scaled-down copies of them small enough for a CPU.

:data:`ARCHITECTURES` holds the hyperparameters of the checkpoints that the recipes in
``recipes/configs/`` start from, copied from their ``config.json`` so that nothing needs the Hub.
:func:`miniature_config` keeps what makes each one that architecture and shrinks only its sizes:

- kept: the model type (so the same transformers class: OLMoE's q/k norms over the whole
  projection, Qwen3-MoE's per head), ``norm_topk_prob``, tied or untied embeddings, rope θ, the
  norm ε, the router's auxiliary-loss coefficient, the position limit;
- kept as ratios: experts per routed expert (64 / top-8 → 16 / top-2), query heads per KV head
  (GQA), the attention width over the hidden width (Qwen3-30B-A3B's is 2), and the FFN widths over
  the hidden width;
- shrunk: the layers, the hidden width, the top-k (to 2), and the vocabulary (a tokenizer trained
  on local text).

:func:`save_miniature` writes one with ``save_pretrained``, beside its tokenizer, as a folder
any stage's ``model_path`` takes; the real recipes run on it with size overrides only
(``tests/recipes/test_architectures.py``)::

    python -m r1rl.models.architectures --arch allenai/OLMoE-1B-7B-0924 --out runs/olmoe-mini

:data:`TINY` holds a tiny random model of every MoE architecture in transformers that r1rl trains
(two layers, four experts, hidden width 64: about 0.1M parameters), each keeping what makes it that
architecture — MLA attention, linear-attention or Mamba layers, shared experts, sigmoid routers,
dense first layers. :func:`save_tiny` writes one; ``--tiny all`` writes them all::

    python -m r1rl.models.architectures --tiny all --out runs/tiny-moe
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from r1rl.data.sources import PythonStdlibSource
from r1rl.errors import UserError, did_you_mean
from r1rl.models.moe import routing_shape
from r1rl.models.tokenizer import train_tokenizer

# Published hyperparameters (the checkpoints' config.json); only these keys differ from the
# transformers defaults of each model type.
ARCHITECTURES: dict[str, tuple[str, dict[str, Any]]] = {
    "allenai/OLMoE-1B-7B-0924": (
        "olmoe",
        dict(
            vocab_size=50304, hidden_size=2048, intermediate_size=1024, num_hidden_layers=16,
            num_attention_heads=16, num_key_value_heads=16, num_experts=64, num_experts_per_tok=8,
            norm_topk_prob=False, max_position_embeddings=4096, rope_theta=10000.0, rms_norm_eps=1e-5,
            router_aux_loss_coef=0.01, tie_word_embeddings=False,
        ),
    ),
    "Qwen/Qwen3-30B-A3B": (
        "qwen3_moe",
        dict(
            vocab_size=151936, hidden_size=2048, intermediate_size=6144, moe_intermediate_size=768,
            num_hidden_layers=48, num_attention_heads=32, num_key_value_heads=4, head_dim=128,
            num_experts=128, num_experts_per_tok=8, norm_topk_prob=True, max_position_embeddings=40960,
            rope_theta=1_000_000.0, rms_norm_eps=1e-6, router_aux_loss_coef=0.001, tie_word_embeddings=False,
        ),
    ),
}  # fmt: skip

FFN_WIDTHS = ("intermediate_size", "moe_intermediate_size")

# Tiny random models of every MoE architecture r1rl trains: two layers, four experts, top-2 (top-1 where
# the architecture routes to one), hidden 64, four heads; DeepSeek-style models keep a dense first layer.
_DEEPSEEK = dict(
    moe_intermediate_size=32,
    n_routed_experts=4,
    n_shared_experts=1,
    num_experts_per_tok=2,
    first_k_dense_replace=1,
    n_group=1,
    topk_group=1,
)
_MLA = dict(
    kv_lora_rank=16, qk_nope_head_dim=16, qk_rope_head_dim=8, head_dim=8, v_head_dim=16, num_key_value_heads=4
)
TINY: dict[str, dict[str, Any]] = {
    "mixtral": dict(num_local_experts=4, num_experts_per_tok=2),
    "qwen2_moe": dict(
        moe_intermediate_size=32, shared_expert_intermediate_size=64, num_experts=4, num_experts_per_tok=2
    ),
    "qwen3_moe": dict(moe_intermediate_size=32, num_experts=4, num_experts_per_tok=2, head_dim=16),
    "qwen3_next": dict(
        moe_intermediate_size=32, shared_expert_intermediate_size=32, num_experts=4, num_experts_per_tok=2,
        head_dim=16, linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=16,
        linear_value_head_dim=16, layer_types=["linear_attention", "full_attention"],
    ),
    "olmoe": dict(intermediate_size=32, num_experts=4, num_experts_per_tok=2),
    "deepseek_v2": dict(**_DEEPSEEK, **_MLA, q_lora_rank=None),
    "deepseek_v3": dict(**_DEEPSEEK, **_MLA, q_lora_rank=24),
    "gpt_oss": dict(
        intermediate_size=32, num_local_experts=4, num_experts_per_tok=2, head_dim=16, sliding_window=16,
        layer_types=["sliding_attention", "full_attention"],
    ),
    "granitemoe": dict(intermediate_size=32, num_local_experts=4, num_experts_per_tok=2),
    "phimoe": dict(intermediate_size=32, num_local_experts=4, num_experts_per_tok=2),
    "ernie4_5_moe": dict(
        moe_intermediate_size=32, moe_num_experts=4, moe_k=2, moe_num_shared_experts=1,
        moe_layer_start_index=1, moe_layer_end_index=1,
    ),
    "glm4_moe": dict(**_DEEPSEEK, head_dim=16),
    "hunyuan_v1_moe": dict(intermediate_size=32, num_experts=4, moe_topk=2, head_dim=16),
    "dots1": dict(**_DEEPSEEK, head_dim=16),
    "llama4_text": dict(
        intermediate_size=32, intermediate_size_mlp=64, num_local_experts=4, num_experts_per_tok=1,
        head_dim=16, interleave_moe_layer_step=1,
    ),
    "jamba": dict(
        num_experts=4, num_experts_per_tok=2, attn_layer_period=2, attn_layer_offset=1, expert_layer_period=2,
        expert_layer_offset=1, mamba_d_state=8, mamba_expand=2,
    ),
    "dbrx": dict(
        d_model=64, n_heads=4, n_layers=2, max_seq_len=256,
        attn_config=dict(kv_n_heads=2, rope_theta=10000.0, clip_qkv=8.0),
        ffn_config=dict(ffn_hidden_size=32, moe_num_experts=4, moe_top_k=2),
    ),
}  # fmt: skip
TINY_COMMON = dict(
    hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
    max_position_embeddings=256, tie_word_embeddings=False,
)  # fmt: skip


def published(name: str) -> tuple[str, dict[str, Any]]:
    """``(model_type, hyperparameters)`` of a name in :data:`ARCHITECTURES`; another name is a UserError."""
    if name not in ARCHITECTURES:
        raise UserError(f"--arch: unknown architecture {name!r}{did_you_mean(name, ARCHITECTURES)}")
    model_type, kwargs = ARCHITECTURES[name]
    return model_type, dict(kwargs)


def published_config(name: str) -> Any:
    """The full-size transformers config of ``name`` (no weights: build it on the ``meta`` device)."""
    from transformers import AutoConfig

    model_type, kwargs = published(name)
    return AutoConfig.for_model(model_type, **kwargs)


def miniature_kwargs(name: str, *, layers: int = 2, hidden_size: int = 64, top_k: int = 2) -> dict[str, Any]:
    """The config keys of a scaled-down ``name``: its ratios, at ``layers`` and ``hidden_size``."""
    model_type, full = published(name)
    kwargs = dict(full)
    experts, routed = full["num_experts"], full["num_experts_per_tok"]
    if experts * top_k % routed:
        raise UserError(f"top_k={top_k}: {name}'s {experts} experts over top-{routed} do not scale to it")
    group = full["num_attention_heads"] // full["num_key_value_heads"]  # query heads per KV head
    kv_heads = max(1, 4 // group)
    heads = kv_heads * group
    head_dim = full.get("head_dim") or full["hidden_size"] // full["num_attention_heads"]
    attention_ratio = full["num_attention_heads"] * head_dim / full["hidden_size"]
    if hidden_size * attention_ratio % heads:
        raise UserError(f"hidden_size={hidden_size} does not split into {heads} heads at {name}'s widths")
    kwargs.update(
        num_hidden_layers=layers, hidden_size=hidden_size, num_attention_heads=heads,
        num_key_value_heads=kv_heads, num_experts=experts * top_k // routed, num_experts_per_tok=top_k,
    )  # fmt: skip
    if "head_dim" in full:
        kwargs["head_dim"] = int(hidden_size * attention_ratio) // heads
    for key in FFN_WIDTHS:
        if key in full:
            kwargs[key] = max(8, math.ceil(full[key] * hidden_size / full["hidden_size"]))
    return kwargs


def miniature_config(name: str, tokenizer: Any, **sizes: int) -> Any:
    """A transformers config of ``name`` scaled down (:func:`miniature_kwargs`) for ``tokenizer``."""
    from transformers import AutoConfig

    model_type, _ = published(name)
    kwargs = miniature_kwargs(name, **sizes)
    kwargs.update(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    kwargs.update(eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    return AutoConfig.for_model(model_type, **kwargs)


def tiny_config(model_type: str, tokenizer: Any) -> Any:
    """The transformers config of :data:`TINY`'s ``model_type``, for ``tokenizer``'s vocabulary."""
    from transformers import AutoConfig

    if model_type not in TINY:
        raise UserError(f"--tiny: unknown architecture {model_type!r}{did_you_mean(model_type, TINY)}")
    kwargs: dict[str, Any] = {} if model_type == "dbrx" else dict(TINY_COMMON)  # DBRX names sizes its own way
    kwargs.update(TINY[model_type])
    kwargs.update(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    kwargs.update(eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    return AutoConfig.for_model(model_type, **kwargs)


def save_tiny(model_type: str, out: str | Path, tokenizer: Any, seed: int = 0) -> Path:
    """Write :data:`TINY`'s ``model_type``, randomly initialised, beside ``tokenizer``, to ``out``."""
    return _save_random(tiny_config(model_type, tokenizer), tokenizer, Path(out), seed)


def _save_random(config: Any, tokenizer: Any, out: Path, seed: int) -> Path:
    """A model of ``config`` with random weights (``seed``), saved beside ``tokenizer`` to ``out``."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def default_texts(max_files: int = 60) -> list[str]:
    """Local text to train a tokenizer on: the first files of Python's standard library (offline)."""
    return [doc.text for doc in PythonStdlibSource(max_files=max_files)]


def save_miniature(
    name: str,
    out: str | Path,
    *,
    texts: Iterable[str] | None = None,
    vocab_size: int = 1024,
    seed: int = 0,
    **sizes: int,
) -> Path:
    """Write a scaled-down, randomly initialised ``name`` and a tokenizer trained on ``texts``
    (default :func:`default_texts`) to ``out``; return the folder."""
    miniature_kwargs(name, **sizes)  # bad sizes are refused before the tokenizer trains
    tokenizer = train_tokenizer(default_texts() if texts is None else texts, vocab_size=vocab_size)
    return _save_random(miniature_config(name, tokenizer, **sizes), tokenizer, Path(out), seed)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m r1rl.models.architectures", description=__doc__.split("\n")[0]
    )
    which = ap.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--arch", help=f"a published checkpoint scaled down; one of: {', '.join(ARCHITECTURES)}"
    )
    which.add_argument(
        "--tiny", help=f"a tiny random model of a model type, or all of them: {', '.join(TINY)}, all"
    )
    ap.add_argument("--out", required=True, help="the folder written (a model_path for any stage)")
    ap.add_argument("--layers", type=int, default=2, help="decoder layers (--arch)")
    ap.add_argument(
        "--hidden-size", type=int, default=64, help="hidden width; the others keep their ratios (--arch)"
    )
    ap.add_argument(
        "--top-k", type=int, default=2, help="experts per token; the expert count keeps its ratio (--arch)"
    )
    ap.add_argument("--vocab-size", type=int, default=1024, help="size of the tokenizer trained")
    ap.add_argument("--text", nargs="+", help="text files the tokenizer trains on (default: Python's stdlib)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    args = ap.parse_args(argv)
    try:
        texts = _texts(args.text)
        if args.tiny:
            return _write_tiny(args.tiny, Path(args.out), texts, args.vocab_size, args.seed)
        sizes = dict(layers=args.layers, hidden_size=args.hidden_size, top_k=args.top_k)
        out = save_miniature(
            args.arch, args.out, texts=texts, vocab_size=args.vocab_size, seed=args.seed, **sizes
        )
    except UserError as e:
        print(f"r1rl: error: {e}", file=sys.stderr)
        return 2
    from transformers import AutoConfig

    print(f"{out}: {args.arch} at {describe(AutoConfig.from_pretrained(out))}")
    return 0


def _texts(files: list[str] | None) -> list[str] | None:
    if not files:
        return None
    missing = [t for t in files if not Path(t).is_file()]
    if missing:
        raise UserError(f"--text: no such file: {missing[0]}")
    return [Path(t).read_text(encoding="utf-8", errors="replace") for t in files]


def _write_tiny(which: str, out: Path, texts: list[str] | None, vocab_size: int, seed: int) -> int:
    """``--tiny``: one model type to ``out``, or ``all`` to ``out/<model_type>``, sharing one tokenizer."""
    names = list(TINY) if which == "all" else [which]
    tiny_config(names[0], _Vocab())  # an unknown name is refused before the tokenizer trains
    tokenizer = train_tokenizer(default_texts() if texts is None else texts, vocab_size=vocab_size)
    for name in names:
        path = save_tiny(name, out / name if which == "all" else out, tokenizer, seed=seed)
        print(f"{path}: {name} at {describe(tiny_config(name, tokenizer))}")
    return 0


class _Vocab:
    """A stand-in tokenizer for checking a model type's name."""

    pad_token_id, eos_token_id = 0, 0

    def __len__(self) -> int:
        return 8


def describe(config: Any) -> str:
    """One line of a config's sizes: layers, widths, heads, experts."""
    experts, top_k = routing_shape(config) or (1, 1)
    return (
        f"{config.num_hidden_layers} layers, hidden {config.hidden_size}, "
        f"{config.num_attention_heads} heads / {config.num_key_value_heads} KV, "
        f"{experts} experts top-{top_k}, vocabulary {config.vocab_size}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
