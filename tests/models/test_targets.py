"""LoRA targets found from the model, on a tiny copy of every MoE architecture r1rl trains; router terms
and routing replay on each."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from r1rl.algorithms.router import sequence_balance_loss, switch_loss
from r1rl.config.sections import LoraConfigModel, MoEConfig
from r1rl.errors import UserError
from r1rl.models.architectures import TINY, main, tiny_config
from r1rl.models.factory import add_lora
from r1rl.models.moe import check_router_terms, check_routing_replay, router_scoring, routing_shape
from r1rl.models.targets import find_targets


class Vocab:
    """What a tiny config reads of a tokenizer."""

    pad_token_id, eos_token_id = 0, 1

    def __len__(self) -> int:
        return 64


def tiny(model_type: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(tiny_config(model_type, Vocab()))


# The attention projections each architecture has (layer-relative), MLA and linear attention included.
ATTENTION = {
    "deepseek_v2": {"self_attn.q_proj", "self_attn.kv_a_proj_with_mqa", "self_attn.kv_b_proj",
                    "self_attn.o_proj"},
    "deepseek_v3": {"self_attn.q_a_proj", "self_attn.q_b_proj", "self_attn.kv_a_proj_with_mqa",
                    "self_attn.kv_b_proj", "self_attn.o_proj"},
    "qwen3_next": {"linear_attn.in_proj_qkvz", "linear_attn.in_proj_ba", "linear_attn.out_proj",
                   "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"},
    "jamba": {"mamba.in_proj", "mamba.x_proj", "mamba.dt_proj", "mamba.out_proj",
              "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"},
    "dbrx": {"norm_attn_norm.attn.Wqkv", "norm_attn_norm.attn.out_proj"},
}  # fmt: skip
QKVO = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"}
EXPERTS = {
    "granitemoe": {"block_sparse_moe.experts.gate_up_proj", "block_sparse_moe.experts.down_proj"},
    "llama4_text": {"feed_forward.experts.gate_up_proj", "feed_forward.experts.down_proj"},
    "jamba": {"feed_forward.experts.gate_up_proj", "feed_forward.experts.down_proj"},
    "dbrx": {"ffn.experts.mlp.w1", "ffn.experts.mlp.v1", "ffn.experts.mlp.w2"},
}
SIGMOID = {"deepseek_v3", "glm4_moe", "dots1", "llama4_text"}


@pytest.mark.parametrize("model_type", sorted(TINY))
def test_targets_are_every_attention_projection_and_every_routed_experts_weights(model_type):
    model = tiny(model_type)
    found = find_targets(model)
    assert set(found.target_modules) == ATTENTION.get(model_type, QKVO)
    assert set(found.target_parameters) == EXPERTS.get(
        model_type, {"mlp.experts.gate_up_proj", "mlp.experts.down_proj"}
    )
    assert routing_shape(model.config) == (4, 1 if model_type == "llama4_text" else 2)
    assert router_scoring(model.config) == ("sigmoid" if model_type in SIGMOID else "softmax")


@pytest.mark.parametrize("model_type", ["granitemoe", "llama4_text", "deepseek_v3", "qwen3_next"])
def test_the_adapter_covers_what_was_found_and_says_so_in_one_line(model_type, capsys, tmp_path):
    model = tiny(model_type)
    found = find_targets(model)
    peft = add_lora(model, LoraConfigModel(r=2, alpha=4))
    line = capsys.readouterr().out.strip().splitlines()[-1]
    n_attention, n_experts = len(found.attention), len(found.expert_parameters)
    assert line.startswith(f"[lora] attention {n_attention}/{n_attention} projections, ")
    assert f"experts {n_experts}/{n_experts} weight tensors" in line and "trainable parameters" in line
    peft.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert set(saved["target_parameters"]) == set(found.target_parameters)
    assert set(saved["target_modules"]) == set(found.target_modules)


def test_a_named_target_that_matches_nothing_is_one_line_not_a_silent_skip():
    """PEFT only warns when a target parameter matches nothing, and the adapter then skips the experts."""
    refused = (
        r"lora.target_parameters: 'mlp.experts.gate_up_proj' matches nothing in GraniteMoeForCausalLM "
        r"\(found from the model: block_sparse_moe"
    )
    with pytest.raises(UserError, match=refused):
        add_lora(tiny("granitemoe"), LoraConfigModel(target_parameters=["mlp.experts.gate_up_proj"]))
    with pytest.raises(UserError, match="lora.target_modules: 'q_proj' matches nothing in DbrxForCausalLM"):
        add_lora(tiny("dbrx"), LoraConfigModel(target_modules=["q_proj"], target_parameters=[]))


def test_dbrx_is_refused_with_the_reason_and_trains_attention_when_asked(capsys):
    with pytest.raises(
        UserError, match="cannot adapt DbrxForCausalLM's experts: .* outside that module's forward"
    ):
        add_lora(tiny("dbrx"), LoraConfigModel())
    add_lora(tiny("dbrx"), LoraConfigModel(target_parameters=[]))
    assert "[lora] attention 4/4 projections, experts 0/6 weight tensors" in capsys.readouterr().out


def test_sequence_balance_loss_is_one_when_balanced_and_ignores_padding():
    E, k = 4, 2
    balanced = torch.tensor([[9.0, 9.0, -9, -9], [-9, -9, 9, 9]]).repeat(2, 1)  # (B·S=4, E): 2 per expert
    loss = sequence_balance_loss((balanced,), k, torch.ones(1, 4))
    assert float(loss) == pytest.approx(1.0, abs=1e-3)
    skewed = torch.tensor([[9.0, 9.0, -9, -9]]).repeat(4, 1)  # every token to experts 0 and 1
    assert float(sequence_balance_loss((skewed,), k, torch.ones(1, 4))) == pytest.approx(2.0, abs=1e-3)
    padded = torch.cat([balanced[:2], torch.randn(2, E)])
    mask = torch.tensor([[1, 1, 0, 0]])
    assert float(sequence_balance_loss((padded,), k, mask)) == pytest.approx(1.0, abs=1e-3)
    logits = torch.randn(4, E, requires_grad=True)
    sequence_balance_loss((logits,), k, torch.ones(1, 4)).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_switch_loss_from_the_logits_is_the_models_own():
    model = tiny("mixtral")
    with torch.no_grad():
        out = model(input_ids=torch.randint(0, 64, (2, 6)), output_router_logits=True)
    assert float(switch_loss(out.router_logits, 2, None)) == pytest.approx(float(out.aux_loss), rel=1e-5)


def test_router_terms_on_a_dense_model_are_one_line():
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(
        vocab_size=64, hidden_size=32, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16,
    )  # fmt: skip
    dense = Qwen3ForCausalLM(config)
    check_router_terms(MoEConfig(), dense)
    with pytest.raises(UserError, match="moe.router_aux_loss_coef: Qwen3ForCausalLM has no MoE routers"):
        check_router_terms(MoEConfig(router_aux_loss_coef=0.01), dense)


@pytest.mark.parametrize("model_type", ["qwen3_moe", "mixtral", "gpt_oss", "granitemoe", "phimoe", "jamba"])
def test_routing_replay_is_refused_where_it_would_recompute_other_gate_weights(model_type):
    model = tiny(model_type)
    if model_type in ("phimoe", "jamba"):  # a sparse mixer; an unnormalised top-k softmax
        with pytest.raises(UserError, match=r"moe.routing_replay: true: .*weighs its experts otherwise"):
            check_routing_replay(model)
    else:
        check_routing_replay(model)


def test_cli_writes_tiny_architectures_and_refuses_an_unknown_one(tmp_path, capsys):
    text = tmp_path / "text.txt"
    text.write_text("def f(x):\n    return x + 1\n" * 40)
    assert (
        main(
            ["--tiny", "olmoe", "--out", str(tmp_path / "olmoe"), "--text", str(text), "--vocab-size", "300"]
        )
        == 0
    )
    assert "olmoe at 2 layers, hidden 64" in capsys.readouterr().out
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "olmoe").config.model_type == "olmoe"
    assert main(["--tiny", "mixtrel", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "r1rl: error: --tiny: unknown architecture 'mixtrel' (did you mean 'mixtral'?)" in err
    assert not (tmp_path / "x").exists()
