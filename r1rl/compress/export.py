"""``r1rl export``: any stage's ``final/`` as a plain model, optionally with int8 or int4 weights.

An adapter is merged into its base, so every export is a full checkpoint that transformers (and so
``transformers serve`` and vLLM) loads without r1rl or PEFT. ``--quantize`` stores weight-only
integer weights through torchao, loaded back by transformers' ``TorchAoConfig``:

- ``int8``: per-row int8 for every ``nn.Linear`` and for the routed experts' 3-D weights (found from
  the model, :mod:`r1rl.models.targets`);
- ``int4``: int4 in groups of 32 for every ``nn.Linear``; torchao's int4 has no 3-D layout on the
  CPU (its ``Int4WeightOnlyConfig`` needs the GPU kernels of ``mslk``), so the experts are int8.

Embeddings, the output head, norms and routers stay in their own dtype. A quantised MoE runs its
experts through transformers' ``eager`` implementation (the grouped kernel does not take torchao's
tensors); the export writes that into ``config.json``, so a plain ``from_pretrained`` works.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r1rl.errors import UserError

QUANTIZE = ("int8", "int4")


@dataclass(frozen=True)
class Exported:
    path: Path
    quantize: str | None
    quantized: int  # parameters stored as integers
    total: int
    bytes: int

    def line(self) -> str:
        what = "full precision" if self.quantize is None else f"{self.quantize} weight-only"
        share = (
            f", {100 * self.quantized / max(self.total, 1):.1f}% of parameters quantised"
            if self.quantize
            else ""
        )
        size = f"{self.total:,} parameters, {self.bytes / 1e6:.2f} MB of weights"
        return f"[export] {self.path}: {what}{share}, {size}"


def source_folder(source: str | Path) -> Path:
    """A run directory's ``final/``, or a model or adapter folder itself; anything else is a UserError."""
    path = Path(source).expanduser()
    if (path / "final").is_dir():
        path = path / "final"
    if not path.is_dir():
        raise UserError(f"export: no such run directory or model folder: {source}")
    if not (path / "config.json").exists() and not (path / "adapter_config.json").exists():
        raise UserError(
            f"export: {path} holds neither a model (config.json) nor an adapter (adapter_config.json)"
        )
    return path


def quantization_config(kind: str, model: Any) -> Any:
    """transformers' ``TorchAoConfig`` for ``kind`` on ``model``: its Linear layers (by layer-relative
    name, so the config stays short on a deep model) and its routed experts' weights in int8."""
    import torch
    from torchao.quantization import FqnToConfig, Int8WeightOnlyConfig, IntxWeightOnlyConfig
    from torchao.quantization.granularity import PerGroup
    from transformers import TorchAoConfig

    from r1rl.models.targets import find_targets, relative_names

    int8 = Int8WeightOnlyConfig()
    int4 = IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(32))  # type: ignore[attr-defined]
    linear = int8 if kind == "int8" else int4
    head = model.get_output_embeddings()
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and m is not head]
    found = find_targets(model)
    rules: dict[str, Any] = {_pattern(n): linear for n in relative_names(names)}
    rules.update({_pattern(n): int8 for n in found.target_parameters})
    return TorchAoConfig(FqnToConfig(rules))


def _pattern(relative: str) -> str:
    """A torchao regex key for a layer-relative name, in every layer."""
    return r"re:(.*\.)?\d+\." + re.escape(relative)


def export(source: str | Path, out: str | Path, quantize: str | None = None) -> Exported:
    """Write ``source`` (a run, ``final/`` or model folder) to ``out`` as a plain transformers model."""
    from r1rl.models.factory import load_merged, load_tokenizer

    if quantize not in (None, *QUANTIZE):
        raise UserError(f"--quantize: {quantize!r} is not one of {', '.join(QUANTIZE)}")
    if quantize is not None:
        _check_torchao()
    src, out = source_folder(source), Path(out)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"export: {out} exists and is not empty; choose a new folder")
    tokenizer = load_tokenizer(str(src))
    model = load_merged(str(src))
    if quantize is None:
        model.save_pretrained(out)
    else:
        with tempfile.TemporaryDirectory() as tmp:  # the merged model, then loaded quantised
            model.save_pretrained(tmp)
            model = _load_quantized(Path(tmp), quantization_config(quantize, model))
            model.save_pretrained(out)
        config = json.loads((out / "config.json").read_text())
        config["experts_implementation"] = "eager"
        (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    tokenizer.save_pretrained(out)
    return _describe(model, out, quantize)


def _check_torchao() -> None:
    try:
        import torchao  # noqa: F401
    except ImportError:
        raise UserError("--quantize needs torchao: pip install 'r1rl[quantize]'") from None


def _load_quantized(path: Path, config: Any) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        path, quantization_config=config, experts_implementation="eager"
    )


def _describe(model: Any, out: Path, quantize: str | None) -> Exported:
    import torch

    params = list(model.parameters())
    quantized = sum(p.numel() for p in params if type(p.data) is not torch.Tensor and quantize)
    size = sum(f.stat().st_size for f in out.glob("*.safetensors"))
    return Exported(out, quantize, quantized, sum(p.numel() for p in params), size)


def add_export_parser(sub: Any) -> None:
    p = sub.add_parser(
        "export", help="a run's final model as a plain transformers model, merged, optionally int8/int4",
        description=(__doc__ or "").split("\n")[0],
    )  # fmt: skip
    p.add_argument("source", help="a run directory, its final/, or a model or adapter folder")
    p.add_argument("out", help="the folder written (must not exist, or be empty)")
    p.add_argument("--quantize", choices=QUANTIZE, help="weight-only integer weights through torchao")


def run_export(args: argparse.Namespace) -> int:
    print(export(args.source, args.out, args.quantize).line())
    return 0
