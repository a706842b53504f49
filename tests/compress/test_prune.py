"""``r1rl prune``: a smaller plain checkpoint, the least-used experts dropped, bad input in one line."""

import json

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from r1rl.compress.prune import least_used_kept, random_kept
from r1rl.run.cli import main
from tests.conftest import MICRO


def _prune(source, out, *args):
    return main(["prune", str(source), str(out), "--threads", "1", *args])


def _experts(model, layer):
    return model.model.layers[layer].mlp.experts


def test_least_used_experts_are_dropped_and_ties_keep_the_lower_index():
    load = torch.tensor([[5.0, 1.0, 3.0, 1.0], [0.0, 9.0, 9.0, 2.0]])  # (L, E)
    assert least_used_kept(load, 2) == [[0, 2], [1, 2]]
    assert least_used_kept(load, 1) == [[0, 1, 2], [1, 2, 3]]  # expert 3 ties with 1 in layer 0: 3 goes


def test_random_ranking_is_seeded_and_keeps_the_same_count_per_layer():
    kept = random_kept(4, 8, 3, seed=1)
    assert kept == random_kept(4, 8, 3, seed=1) != random_kept(4, 8, 3, seed=2)
    assert all(len(row) == 5 and row == sorted(set(row)) for row in kept)


def test_pruned_checkpoint_loads_in_plain_transformers_keeps_experts_bitwise_and_generates(
    micro_pretrained, tmp_path
):
    out = tmp_path / "pruned"
    calibration = ["--calibration", str(MICRO / "pretrain.yaml"), "--num-examples", "24"]
    assert _prune(micro_pretrained, out, "--fraction", "0.5", *calibration) == 0
    report = json.loads((out / "pruning.json").read_text())
    original = AutoModelForCausalLM.from_pretrained(micro_pretrained)
    pruned = AutoModelForCausalLM.from_pretrained(out)  # no r1rl code involved in loading
    assert pruned.config.num_experts == 2 and report["experts"] == {"before": 4, "after": 2, "per_token": 2}
    assert report["parameters"]["after"] == pruned.num_parameters() < original.num_parameters()
    for layer, kept in enumerate(report["kept"]):
        load = torch.tensor(report["tokens_per_expert"][layer])  # (E,)
        # every routed token counted k times; the two most used experts are the ones kept
        assert set(kept) == set(load.topk(2).indices.tolist())
        new, old = _experts(pruned, layer), _experts(original, layer)
        for name in ("gate_up_proj", "down_proj"):
            assert torch.equal(getattr(new, name), getattr(old, name)[kept])
        gate_new, gate_old = pruned.model.layers[layer].mlp.gate, original.model.layers[layer].mlp.gate
        assert torch.equal(gate_new.weight, gate_old.weight[kept])
    shared = {n: p for n, p in original.named_parameters() if ".mlp." not in n}
    assert all(torch.equal(p, shared[n]) for n, p in pruned.named_parameters() if n in shared)
    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = tokenizer("3+4=", return_tensors="pt").input_ids
    generated = pruned.generate(ids, max_new_tokens=5, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert generated.shape == (1, ids.shape[1] + 5)


def test_telemetry_ranks_the_experts(micro_pretrained, tmp_path):
    """A PPO run's expert_load.jsonl, summed over its steps, decides which experts go."""
    counts = [
        [[1, 9, 5, 0], [7, 0, 3, 8]],
        [[2, 0, 0, 1], [0, 1, 0, 0]],
    ]  # steps × (L, E); sums 3 9 5 1, 7 1 3 8
    rows = [{"step": step, "tokens_per_expert": c} for step, c in enumerate(counts, 1)]
    (tmp_path / "expert_load.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "pruned"
    assert _prune(micro_pretrained, out, "--fraction", "0.25", "--telemetry", str(tmp_path)) == 0
    assert json.loads((out / "pruning.json").read_text())["kept"] == [[0, 1, 2], [0, 2, 3]]


def test_the_smaller_softmax_routes_untouched_tokens_as_before(micro_pretrained, tmp_path):
    """With norm_topk_prob, a token whose top-k held no dropped expert gets the same experts and weights;
    the renormalised distribution is the original conditioned on the kept experts."""
    counts = [[5, 5, 5, 1], [5, 1, 5, 5]]  # (L, E): drop expert 3 in layer 0, expert 1 in layer 1
    (tmp_path / "expert_load.jsonl").write_text(json.dumps({"step": 1, "tokens_per_expert": counts}) + "\n")
    out = tmp_path / "pruned"
    assert _prune(micro_pretrained, out, "--fraction", "0.25", "--telemetry", str(tmp_path)) == 0
    original = AutoModelForCausalLM.from_pretrained(micro_pretrained)
    pruned = AutoModelForCausalLM.from_pretrained(out)
    hidden = torch.randn(256, original.config.hidden_size, generator=torch.Generator().manual_seed(0))
    for layer, kept in enumerate(([0, 1, 2], [0, 2, 3])):
        old_gate, new_gate = original.model.layers[layer].mlp.gate, pruned.model.layers[layer].mlp.gate
        with torch.no_grad():
            old_logits, old_scores, old_idx = old_gate(hidden)
            new_logits, new_scores, new_idx = new_gate(hidden)
        untouched = torch.isin(old_idx, torch.tensor(kept)).all(-1)  # (N,) top-k held only kept experts
        assert 0 < untouched.sum() < len(hidden)
        assert torch.equal(torch.tensor(kept)[new_idx[untouched]], old_idx[untouched])
        torch.testing.assert_close(new_scores[untouched], old_scores[untouched])
        old_p = torch.softmax(old_logits, -1)[:, kept]
        torch.testing.assert_close(torch.softmax(new_logits, -1), old_p / old_p.sum(-1, keepdim=True))


@pytest.mark.parametrize(
    "model_type, sizes",
    [
        ("olmoe", dict(intermediate_size=32, num_experts=4, num_experts_per_tok=2, norm_topk_prob=False)),
        ("mixtral", dict(intermediate_size=32, num_local_experts=4, num_experts_per_tok=2)),
    ],
)
def test_olmoe_and_mixtral_layouts_prune(micro_pretrained, tmp_path, model_type, sizes):
    source = _random_model(micro_pretrained, tmp_path / model_type, model_type, **sizes)
    out = tmp_path / "pruned"
    assert _prune(source, out, "--fraction", "0.25", "--ranking", "random", "--seed", "3") == 0
    config = AutoConfig.from_pretrained(out)
    assert getattr(config, "num_experts", None) or config.num_local_experts == 3
    assert AutoModelForCausalLM.from_pretrained(out).model.layers[0].mlp.experts.gate_up_proj.shape[0] == 3


def _random_model(tokenizer_from, path, model_type, **sizes):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_from)
    config = AutoConfig.for_model(
        model_type, vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=64, **sizes,
    )  # fmt: skip
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.mark.parametrize(
    "args, message",
    [
        (["--fraction", "1.5"], "--fraction must be between 0 and 1"),
        (["--fraction", "half"], "--fraction expects a number"),
        (["--fraction", "0.1"], "drops none"),
        (["--fraction", "0.75"], "fewer than the 2 each token is routed to"),
        (["--fraction", "0.5", "--ranking", "often"], "--ranking must be usage or random"),
        (["--fraction", "0.5", "--ranking", "usage"], "usage ranking needs rows to count on"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(micro_pretrained, tmp_path, capsys, args, message):
    out = tmp_path / "pruned"
    assert _prune(micro_pretrained, out, "--ranking", "random", *args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("r1rl: error: prune:") and message in err, err
    assert not out.exists() and not (tmp_path / "pruned.tmp").exists()


def test_a_layout_it_cannot_prune_is_refused_naming_the_model_type(micro_pretrained, tmp_path, capsys):
    source = _random_model(
        micro_pretrained, tmp_path / "dsv3", "deepseek_v3", intermediate_size=64, moe_intermediate_size=16,
        n_routed_experts=4, n_shared_experts=1, num_experts_per_tok=2, first_k_dense_replace=1,
        kv_lora_rank=16, q_lora_rank=None, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16,
        n_group=1, topk_group=1,
    )  # fmt: skip
    assert _prune(source, tmp_path / "pruned", "--fraction", "0.5", "--ranking", "random") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot prune deepseek_v3" in err
