"""Model factory: transformers' own MoE architectures built from a size preset or loaded by name.

r1rl writes no transformer: a from-scratch model is ``Qwen3MoeForCausalLM`` with a config
built from a preset, and anything else loads through ``AutoModelForCausalLM``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Qwen3MoeConfig,
    Qwen3MoeForCausalLM,
)

from r1rl.errors import UserError
from r1rl.models.targets import (
    Targets,
    check_explicit,
    coverage,
    find_targets,
    refuse_uncovered,
    refuse_unreachable,
)

if TYPE_CHECKING:
    from peft import LoraConfig, PeftModel

from r1rl.models.presets import PRESETS  # noqa: E402  (re-exported: r1rl.models.factory.PRESETS)


def build_config(
    preset: str,
    vocab_size: int,
    *,
    pad_token_id: int,
    eos_token_id: int,
    max_position_embeddings: int = 512,
    router_aux_loss_coef: float = 0.01,
    overrides: dict[str, Any] | None = None,
) -> Qwen3MoeConfig:
    """A ``Qwen3MoeConfig`` from a named preset, with the router's auxiliary loss switched on."""
    kwargs = dict(PRESETS.get(preset, "model.preset"))
    kwargs.update(overrides or {})
    return Qwen3MoeConfig(
        vocab_size=vocab_size,
        max_position_embeddings=max_position_embeddings,
        pad_token_id=pad_token_id,
        eos_token_id=eos_token_id,
        bos_token_id=eos_token_id,
        tie_word_embeddings=True,
        norm_topk_prob=True,  # Qwen3-MoE checkpoints renormalise top-k weights; the config default does not
        output_router_logits=True,
        router_aux_loss_coef=router_aux_loss_coef,
        **kwargs,
    )


def build_model(config: Qwen3MoeConfig, seed: int) -> Qwen3MoeForCausalLM:
    torch.manual_seed(seed)
    return Qwen3MoeForCausalLM(config)


def load_model(name_or_path: str, dtype: torch.dtype | None = None) -> PreTrainedModel:
    return AutoModelForCausalLM.from_pretrained(name_or_path, dtype=dtype)


def decoder_of(model: PreTrainedModel) -> torch.nn.Module:
    """The decoder stack under a causal LM's head (``model.model``; DBRX's ``transformer``): its output's
    ``last_hidden_state`` is what a value head reads. ``get_decoder`` misses some (Llama 4's text model)."""
    for name in (model.base_model_prefix, "model", "transformer"):
        body = getattr(model, name, None)
        if isinstance(body, torch.nn.Module):
            return body
    raise UserError(f"{type(model).__name__}: no decoder stack found under its language-model head")


def torch_dtype(name: str) -> torch.dtype | None:
    """A config's ``base_dtype`` as a torch dtype (``auto``: ``None``, the checkpoint's own)."""
    return {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16}[name]


def count_parameters(model: torch.nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def resolve_model_path(name_or_path: str, key: str = "model_path") -> str:
    """A local directory (made absolute) or a Hub id, checked before any work: a missing path, an
    adapter whose base is missing, and unreadable weights or tokenizer files are a :class:`UserError`."""
    p = Path(name_or_path).expanduser()
    if p.exists():
        if not (p / "config.json").exists() and not (p / "adapter_config.json").exists():
            raise UserError(
                f"{key}: {p} holds neither a model (config.json) nor an adapter (adapter_config.json)"
            )
        check_model_files(p, key)
        return str(p.resolve())
    looks_local = name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") != 1
    if looks_local:
        raise UserError(f"{key}: no such model directory: {name_or_path}")
    return name_or_path


def check_model_files(path: Path, key: str = "model_path") -> None:
    """Read each weight file's header and each JSON file of a model folder: a corrupt or truncated
    file is named in one line now, not three layers down in transformers."""
    import json

    for f in sorted(path.glob("*.json")):
        try:
            json.loads(f.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(
                f"{key}: {f} is not valid JSON ({type(e).__name__}); the model folder is damaged"
            ) from None
    for f in sorted(path.glob("*.safetensors")):
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(f), framework="pt") as handle:
                handle.keys()
        except (SafetensorError, OSError) as e:
            raise UserError(
                f"{key}: {f} is not a readable weights file ({e}); the model folder is damaged"
            ) from None
    adapter = path / "adapter_config.json"
    if adapter.exists():
        base = json.loads(adapter.read_text()).get("base_model_name_or_path")
        if base and Path(base).expanduser().is_absolute() and not Path(base).expanduser().exists():
            raise UserError(f"{key}: {path} is an adapter whose base model {base} does not exist")
        if base and Path(base).exists():
            check_model_files(Path(base), f"{key} (the adapter's base)")


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    tok = AutoTokenizer.from_pretrained(name_or_path)
    tok.padding_side = "left"
    return tok


def load_merged(name_or_path: str, dtype: torch.dtype | None = None) -> PreTrainedModel:
    """A full model from ``name_or_path``; a PEFT adapter folder is loaded onto its base and merged.

    ``dtype``: the weights' dtype (``None``: transformers' default, the checkpoint's own)."""
    path = Path(name_or_path)
    if (path / "adapter_config.json").exists():
        from peft import PeftConfig, PeftModel

        base_path = PeftConfig.from_pretrained(path).base_model_name_or_path
        base = load_merged(base_path, dtype)
        return PeftModel.from_pretrained(base, path).merge_and_unload()
    if dtype is None:
        return AutoModelForCausalLM.from_pretrained(name_or_path)
    return AutoModelForCausalLM.from_pretrained(name_or_path, dtype=dtype)


def add_lora(model: PreTrainedModel, cfg: Any, adapter_name: str = "default") -> PeftModel:
    """Wrap ``model`` with a PEFT LoRA adapter on attention and the routed experts' weights, and print
    one line of what it covers (:mod:`r1rl.models.targets`).

    PEFT's ``target_parameters`` requires ``lora_dropout=0``; every adapter on one model must
    target the same parameters, so a second adapter (the critic) reuses this config.
    """
    from peft import get_peft_model

    targets = find_targets(model)  # found before PEFT wraps the modules
    config = lora_config(cfg, model, targets)
    with warnings.catch_warnings():  # PEFT reads transformers' deprecated alias; the user can do nothing
        warnings.filterwarnings(
            "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
        )
        peft = get_peft_model(model, config, adapter_name=adapter_name)
    cover = coverage(peft, targets)
    if cfg.target_parameters == "auto":
        refuse_uncovered(cover, model)
    print(cover.line(), flush=True)
    return peft


def lora_config(cfg: Any, model: torch.nn.Module, found: Targets | None = None) -> LoraConfig:
    """PEFT's config for ``cfg`` (a ``lora:`` section) on ``model``: ``auto`` targets found from it,
    named ones checked against it (a name that matches nothing is a UserError)."""
    from peft import LoraConfig

    found = found or find_targets(model)
    modules = found.target_modules if cfg.target_modules == "auto" else list(cfg.target_modules)
    parameters = found.target_parameters if cfg.target_parameters == "auto" else list(cfg.target_parameters)
    if cfg.target_parameters == "auto":
        refuse_unreachable(model)
    check_explicit(
        model,
        [] if cfg.target_modules == "auto" else modules,
        [] if cfg.target_parameters == "auto" else parameters,
    )
    if not modules and not parameters:
        raise UserError(f"lora: nothing to adapt in {type(model).__name__} (no attention, no experts found)")
    return LoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=0.0,
        target_modules=modules or None,
        target_parameters=parameters or None,
        task_type="CAUSAL_LM",
    )
