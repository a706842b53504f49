"""Scaled-down copies of the published architectures keep what makes them those architectures."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from r1rl.models.architectures import ARCHITECTURES, FFN_WIDTHS, main, miniature_kwargs, published

SWITCHES = ("norm_topk_prob", "tie_word_embeddings", "rope_theta", "rms_norm_eps", "router_aux_loss_coef")


def _ratios(kw):
    head_dim = kw.get("head_dim") or kw["hidden_size"] // kw["num_attention_heads"]
    ratios = {
        "experts per routed expert": kw["num_experts"] / kw["num_experts_per_tok"],
        "query heads per KV head": kw["num_attention_heads"] / kw["num_key_value_heads"],
        "attention width / hidden": kw["num_attention_heads"] * head_dim / kw["hidden_size"],
    }
    return ratios | {f"{k} / hidden": kw[k] / kw["hidden_size"] for k in FFN_WIDTHS if k in kw}


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_a_miniature_keeps_the_published_ratios_and_switches(name):
    _, full = published(name)
    mini = miniature_kwargs(name, layers=2, hidden_size=64)
    assert _ratios(mini) == pytest.approx(_ratios(full), rel=0.05)
    assert {k: mini[k] for k in SWITCHES} == {k: full[k] for k in SWITCHES}
    assert (mini["num_hidden_layers"], mini["hidden_size"], mini["num_experts_per_tok"]) == (2, 64, 2)


def test_hand_worked_shapes():
    """OLMoE: 64 experts / top-8 → 16 / top-2; 16 heads of 128 (no GQA) → 4 of 16; FFN 1024 of 2048 → 32
    of 64. Qwen3-30B-A3B: 128 / top-8 → 32 / top-2; 32 query heads over 4 KV heads of 128 → 8 over 1
    of 16 (attention twice the hidden width, as published); FFNs 768 and 6144 of 2048 → 24 and 192."""
    olmoe = miniature_kwargs("allenai/OLMoE-1B-7B-0924")
    assert [olmoe[k] for k in ("num_experts", "num_attention_heads", "num_key_value_heads")] == [16, 4, 4]
    assert olmoe["intermediate_size"] == 32 and "head_dim" not in olmoe and not olmoe["norm_topk_prob"]
    qwen = miniature_kwargs("Qwen/Qwen3-30B-A3B")
    keys = ("num_experts", "num_attention_heads", "num_key_value_heads", "head_dim")
    assert [qwen[k] for k in keys] == [32, 8, 1, 16] and qwen["norm_topk_prob"]
    assert (qwen["moe_intermediate_size"], qwen["intermediate_size"]) == (24, 192)


def test_cli_writes_a_model_folder_and_refuses_bad_input(tmp_path, capsys):
    text = tmp_path / "text.txt"
    text.write_text("Natalia sold clips to 48 of her friends in April.\n" * 50)
    out = tmp_path / "olmoe"
    args = [
        "--arch",
        "allenai/OLMoE-1B-7B-0924",
        "--out",
        str(out),
        "--text",
        str(text),
        "--vocab-size",
        "300",
    ]
    assert main(args) == 0 and "16 experts top-2" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "olmoe" and config["architectures"] == ["OlmoeForCausalLM"]
    assert config["vocab_size"] == len(AutoTokenizer.from_pretrained(out))  # the model fits its tokenizer
    assert main(["--arch", "Qwen/Qwen3-30B", "--out", str(tmp_path / "q")]) == 2
    assert "did you mean 'Qwen/Qwen3-30B-A3B'" in capsys.readouterr().err
    assert main(["--arch", "Qwen/Qwen3-30B-A3B", "--out", str(tmp_path / "q"), "--hidden-size", "63"]) == 2
    assert "hidden_size=63" in capsys.readouterr().err and not (tmp_path / "q").exists()
