"""The real-checkpoint recipes, LoRA SFT then PPO, on scaled-down copies of their architectures.

``recipes/configs/olmoe-1b-7b/`` and ``recipes/configs/qwen3-30b-a3b/`` run as written on a 2-layer
OLMoE and a 2-layer Qwen3-MoE from :mod:`r1rl.models.architectures`; the overrides below change sizes
only (and the data source: the recipes read the Hub, the tests the local copies of GSM8K and MBPP).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from r1rl.eval.data import default_data_dir

from r1rl.config import PPOConfig, SFTConfig, load_config
from r1rl.models.architectures import default_texts, save_miniature
from r1rl.run.stages import STAGES

CONFIGS = Path(__file__).parents[2] / "recipes" / "configs"
RECIPES = {"olmoe-1b-7b": "olmoe", "qwen3-30b-a3b": "qwen3_moe"}  # recipe folder -> model type
DATA = {"olmoe-1b-7b": "gsm8k/test.jsonl", "qwen3-30b-a3b": "mbpp/sanitized-mbpp.json"}

# sizes only: a few rows, two steps, short completions, one thread
LOCAL = ["threads=1", "task.source=local", "task.limit=8", "task.eval_limit=2"]
SFT_SIZE = [*LOCAL, "steps=2", "batch_size=2", "log.every=1"]
PPO_SIZE = [*LOCAL, "steps=2", "rollout.prompts_per_step=2", "rollout.max_new_tokens=16",
            "optim.minibatch_size=4", "optim.micro_batch_size=2"]  # fmt: skip

SFT_METRICS = {"loss", "lr", "grad_norm", "moe/aux_loss", "moe/load_cv/0", "moe/load_cv/1", "perf/step_s",
               "perf/tokens_per_s"}  # fmt: skip
PPO_METRICS = {"reward/mean", "kl", "entropy", "policy/clipfrac", "policy/approx_kl", "loss", "grad_norm",
               "moe/load_cv/0", "moe/load_cv/1", "perf/step_s", "perf/generate_s"}  # fmt: skip


@pytest.fixture(scope="module")
def texts():
    return default_texts(max_files=30)


def _rows(rd, stage):
    rows = rd.read_metrics()
    assert [r["step"] for r in rows] == [1, 2] and all(r["stage"] == stage for r in rows)
    return rows


def _check_sft(sft, start):
    assert sft.config.exists() and not (sft.path / "final.tmp").exists()
    adapter = json.loads((sft.final / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(start.resolve())
    assert set(adapter["target_parameters"]) == {"mlp.experts.gate_up_proj", "mlp.experts.down_proj"}
    assert (sft.final / "tokenizer.json").exists()
    for row in _rows(sft, "sft"):
        assert SFT_METRICS <= set(row) and math.isfinite(row["loss"]) and row["loss"] > 0


def _check_ppo(ppo, model_type, critic):
    from transformers import AutoModelForCausalLM

    resolved = ppo.config.read_text()
    assert f"advantage_estimator: {'gae' if critic else 'grpo'}" in resolved and "bf16: true" in resolved
    for row in _rows(ppo, "ppo"):
        assert PPO_METRICS <= set(row) and math.isfinite(row["loss"]) and math.isfinite(row["kl"])
        for tier in ("syntax", "logic", "task"):
            assert 0 <= row[f"reward/tier/{tier}/pass_rate"] <= 1
            assert row[f"reward/tier/{tier}/errors"] == 0 and row[f"reward/tier/{tier}/timeouts"] == 0
        assert ("value/loss" in row) == critic  # GRPO trains no critic
        if critic:
            assert math.isfinite(row["value/loss"])
    assert "eval/accuracy" in row  # the held-out eval at the end
    model = AutoModelForCausalLM.from_pretrained(ppo.final)  # plain transformers, the same class
    assert model.config.model_type == model_type and not hasattr(model, "peft_config")
    return row


@pytest.mark.slow
@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_real_recipe_lora_sft_then_ppo_on_a_scaled_down_copy(recipe, texts, tmp_path):
    if not (default_data_dir() / DATA[recipe]).exists():
        pytest.skip(f"no local {DATA[recipe]} under {default_data_dir()}")
    sft_cfg = load_config(SFTConfig, CONFIGS / recipe / "sft.yaml", [f"output_dir={tmp_path / 'sft'}"])
    start = save_miniature(sft_cfg.model_path, tmp_path / "start", texts=texts, vocab_size=512)
    over = [f"output_dir={tmp_path / 'sft'}", f"model_path={start}", *SFT_SIZE]
    sft = STAGES["sft"](load_config(SFTConfig, CONFIGS / recipe / "sft.yaml", over))
    _check_sft(sft, start)
    over = [f"output_dir={tmp_path / 'ppo'}", f"model_path={sft.final}", *PPO_SIZE]
    cfg = load_config(PPOConfig, CONFIGS / recipe / "ppo.yaml", over)
    ppo = STAGES["ppo"](cfg)
    last = _check_ppo(ppo, RECIPES[recipe], critic=cfg.algorithm.advantage_estimator == "gae")
    if cfg.moe.routing_replay:  # Qwen3's recipe replays the rollout's experts in the update
        assert 0 < last["moe/routing_agreement"] <= 1
