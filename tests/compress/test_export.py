"""``r1rl export``: an adapter merged into a plain model; int8 and int4 weights plain transformers loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from r1rl.compress.export import export
from r1rl.config import SFTConfig, load_config
from r1rl.models.factory import load_merged
from r1rl.run.cli import main
from r1rl.run.stages import STAGES

MICRO = Path(__file__).parents[2] / "recipes" / "configs" / "micro"
IDS = torch.tensor([[3, 7, 11, 5, 9, 2, 4, 8]])


@pytest.fixture(scope="module")
def sft(micro_pretrained, tmp_path_factory):
    """A two-step LoRA SFT run on the micro model: its final/ is an adapter."""
    out = tmp_path_factory.mktemp("export") / "sft"
    over = [f"output_dir={out}", f"model_path={micro_pretrained}", "steps=2", "num_examples=8"]
    return STAGES["sft"](load_config(SFTConfig, MICRO / "sft.yaml", over))


def _logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(IDS).logits


def test_an_adapter_run_exports_as_a_plain_model_with_the_merged_weights(sft, tmp_path):
    done = export(sft.path, tmp_path / "plain")
    assert (done.path / "config.json").exists() and not (done.path / "adapter_config.json").exists()
    assert (done.path / "tokenizer.json").exists() and done.quantize is None and done.quantized == 0
    plain = AutoModelForCausalLM.from_pretrained(done.path)
    assert not hasattr(plain, "peft_config")
    assert torch.equal(_logits(plain), _logits(load_merged(str(sft.final))))


@pytest.mark.parametrize("kind", ["int8", "int4"])
def test_quantised_weights_load_in_plain_transformers_experts_included(sft, tmp_path, kind):
    full = export(sft.final, tmp_path / "full")
    done = export(sft.final, tmp_path / kind, quantize=kind)
    model = AutoModelForCausalLM.from_pretrained(done.path)  # no r1rl, no extra arguments
    experts = model.model.layers[0].mlp.experts.gate_up_proj
    assert type(experts.data) is not torch.Tensor  # the 3-D expert weights are stored as integers
    assert type(model.model.layers[0].self_attn.q_proj.weight.data) is not torch.Tensor
    assert done.quantized / done.total > 0.7 and done.bytes < 0.6 * full.bytes
    ref, got = _logits(AutoModelForCausalLM.from_pretrained(full.path)), _logits(model)
    assert (ref - got).abs().max() < (0.05 if kind == "int8" else 0.5)
    assert (
        json.loads((done.path / "config.json").read_text())["quantization_config"]["quant_method"]
        == "torchao"
    )


def test_bad_input_is_one_line_and_writes_nothing(sft, tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope"), str(tmp_path / "out")]) == 2
    assert "r1rl: error: export: no such run directory or model folder" in capsys.readouterr().err
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    assert main(["export", str(sft.path), str(busy)]) == 2
    assert "is not empty" in capsys.readouterr().err and sorted(p.name for p in busy.iterdir()) == [
        "keep.txt"
    ]
    assert not (tmp_path / "out").exists()
