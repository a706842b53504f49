"""The memory estimator's FSDP2, HSDP and ``base_dtype`` arithmetic, worked out by hand, and the tables in
recipes/accelerate/README.md, which must be what ``python -m r1rl.report.memory`` prints today."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from r1rl.config import LoraConfigModel
from r1rl.report.memory import ParamCounts, architecture, count_parameters, estimate, main, weights

README = Path(__file__).parents[2] / "recipes" / "accelerate" / "README.md"

# 4 decoder layers of 200 base parameters and 25 adapter parameters each (policy + critic); outside
# them 200 base parameters (embeddings, final norm, head) and a 10-parameter value head.
COUNTS = ParamCounts(total=1000, active=500, adapters=110, layers=800, layer_adapters=100)


def test_fsdp2_by_hand():
    """Per GPU over 8: the layers' 800/8 base parameters, the whole root (200) and two unsharded layers
    (2 × 200), in bf16: 2 × 700 bytes; adapters 4 × (100/8 + 10 + 2 × 25); fp32 gradients and the two
    AdamW moments of a shard 12 × 110/8, plus two layers' unsharded gradients 2 × 4 × 25."""
    w = weights(COUNTS, "fsdp2", gpus=8, layers=4, base_bytes=2)
    assert w == {"base": 1400, "adapters": 290, "grads+adam": 365}
    w16 = weights(COUNTS, "fsdp2", gpus=16, layers=4, base_bytes=2)
    assert w16 == {"base": 2 * (50 + 200 + 400), "adapters": 4 * (6.25 + 10 + 50), "grads+adam": 82.5 + 200}


def test_hsdp_holds_per_gpu_what_fsdp2_over_one_machine_holds():
    hsdp = weights(COUNTS, "hsdp", gpus=16, layers=4, base_bytes=2, gpus_per_node=8)
    assert hsdp == weights(COUNTS, "fsdp2", gpus=8, layers=4, base_bytes=2)
    assert weights(COUNTS, "hsdp", gpus=32, layers=4, base_bytes=2, gpus_per_node=8) == hsdp  # more replicas


def test_other_strategies_by_hand_in_float32():
    assert weights(COUNTS, "ddp", gpus=8, layers=4, base_bytes=4) == {
        "base": 4000, "adapters": 440, "grads+adam": 1320,
    }  # fmt: skip
    assert weights(COUNTS, "zero2", gpus=8, layers=4, base_bytes=4)["grads+adam"] == 165
    assert weights(COUNTS, "zero3", gpus=8, layers=4, base_bytes=4) == {
        "base": 4000 / 8 + 4000 / 4, "adapters": 55, "grads+adam": 165,
    }  # fmt: skip


def test_base_dtype_changes_only_the_base():
    config = architecture("micro")
    counts = count_parameters(config)
    kw = dict(counts=counts, rollout_sequences=16)
    for strategy, gpus in [("ddp", 1), ("zero3", 8), ("fsdp2", 8), ("hsdp", 16)]:
        bf16 = estimate(config, strategy, gpus, base_dtype="bfloat16", **kw)
        fp32 = estimate(config, strategy, gpus, base_dtype="float32", **kw)
        assert fp32["base"] == pytest.approx(2 * bf16["base"]), strategy
        for key in ("adapters", "grads+adam", "rollout_kv", "update_act"):
            assert fp32[key] == bf16[key], (strategy, key)  # the KV cache stays bf16 (compute.bf16)
    hsdp = estimate(config, "hsdp", 16, **kw)
    fsdp2 = estimate(config, "fsdp2", 8, **kw)
    assert hsdp["rollout_kv"] == pytest.approx(fsdp2["rollout_kv"] / 2)  # the rollout spans both machines
    assert hsdp["base"] == fsdp2["base"] > estimate(config, "fsdp2", 16, **kw)["base"]


def test_bad_setups_are_refused():
    config = architecture("micro")
    counts = count_parameters(config)
    with pytest.raises(ValueError, match="base_dtype 'float16'"):
        estimate(config, "fsdp2", 8, counts=counts, base_dtype="float16")
    for gpus in (8, 12):  # one machine, or not whole machines
        with pytest.raises(ValueError, match="several machines"):
            estimate(config, "hsdp", gpus, counts=counts, gpus_per_node=8)


def test_layer_counts_split_the_model_at_its_decoder_layers():
    """What lies outside the decoder layers is exactly the embeddings, the final norm, the LM head and
    (for the adapters) the critic's value head."""
    from r1rl.models.factory import build_model

    config = architecture("micro")
    counts = count_parameters(config, LoraConfigModel(r=4, alpha=8))
    model = build_model(config, seed=0)
    outside = {id(p): p.numel() for m in (model.model.embed_tokens, model.model.norm, model.lm_head)
               for p in m.parameters()}  # fmt: skip
    assert counts.total - counts.layers == sum(outside.values()) > 0
    assert counts.adapters - counts.layer_adapters == config.hidden_size + 1
    no_critic = count_parameters(config, LoraConfigModel(r=4, alpha=8), critic=False)
    assert 2 * no_critic.layer_adapters == counts.layer_adapters == 2 * no_critic.adapters


def _readme_tables() -> list[tuple[str, str]]:
    """``(arguments, table)`` for every ``python -m r1rl.report.memory ...`` line followed by a table."""
    text = README.read_text()
    found = re.findall(r"`python -m r1rl\.report\.memory([^`]*)`[^\n]*\n\n((?:\|[^\n]*\n)+)", text)
    return [(args.strip(), table.strip()) for args, table in found]


def test_readme_memory_tables_are_what_the_estimator_prints(capsys):
    tables = _readme_tables()
    assert len(tables) == 2, "expected an OLMoE table and a Qwen3 table"
    for args, table in tables:
        main(shlex.split(args))
        printed = capsys.readouterr().out.strip()
        assert printed == table, (
            f"recipes/accelerate/README.md drifted: rerun python -m r1rl.report.memory {args}"
        )
