"""Scale-out recipes: every accelerate config parses and validates the way ``accelerate launch`` reads it,
every real-checkpoint recipe is a valid r1rl config, and the memory estimator's counts are exact."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from r1rl.config import LoraConfigModel, PPOConfig, SFTConfig, load_config
from r1rl.memory import ARCHITECTURES, architecture, count_parameters, estimate, table

RECIPES = Path(__file__).parents[1] / "recipes"
ACCELERATE = sorted((RECIPES / "accelerate").glob("*.yaml"))


def test_every_strategy_has_a_config():
    assert {p.stem for p in ACCELERATE} == {"ddp", "ddp_cpu", "fsdp2", "fsdp2_cpu", "zero2", "zero3"}


def _launch_args(path: Path):
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    parser = launch_command_parser()
    args, defaults, _ = _validate_launch_command(parser.parse_args(["--config_file", str(path), "train.py"]))
    return parser, args, defaults


@pytest.mark.parametrize("path", ACCELERATE, ids=lambda p: p.stem)
def test_accelerate_config_parses_and_validates(path, monkeypatch):
    from accelerate.utils import DeepSpeedPlugin, DistributedType, FullyShardedDataParallelPlugin
    from accelerate.utils.launch import prepare_multi_gpu_env

    parser, args, defaults = _launch_args(path)
    # every nested option is one the launcher knows (unknown ones would be silently ignored)
    known = {a.dest for a in parser._actions}
    for section in ("fsdp_config", "deepspeed_config"):
        unknown = set(getattr(defaults, section) or {}) - known
        assert not unknown, f"{path.name}: {section} keys accelerate does not know: {unknown}"
    assert args.num_processes >= 2 and args.num_machines == 1
    kind = defaults.distributed_type
    if kind == DistributedType.FSDP:
        env = prepare_multi_gpu_env(args)
        for k, v in env.items():
            if k.startswith("FSDP_") or k == "ACCELERATE_USE_FSDP":
                monkeypatch.setenv(k, v)
        plugin = FullyShardedDataParallelPlugin()  # validates every value
        assert plugin.fsdp_version == 2
        assert set(plugin.transformer_cls_names_to_wrap) == {"Qwen3MoeDecoderLayer", "OlmoeDecoderLayer"}
    elif kind == DistributedType.DEEPSPEED:
        ds = {k: v for k, v in defaults.deepspeed_config.items()}
        plugin = DeepSpeedPlugin(**ds)
        stage = plugin.deepspeed_config["zero_optimization"]["stage"]
        assert stage == int(path.stem[-1])
        assert plugin.deepspeed_config["gradient_clipping"] == 1.0
    else:
        assert kind == DistributedType.MULTI_GPU and args.multi_gpu  # the launcher that starts N processes
        assert not args.cpu  # on CPU, ACCELERATE_USE_CPU=true at launch (MULTI_CPU starts one process)


def test_decoder_layer_classes_in_fsdp_config_exist():
    import transformers

    for name in ("Qwen3MoeDecoderLayer", "OlmoeDecoderLayer"):
        module = "qwen3_moe" if name.startswith("Qwen") else "olmoe"
        mod = __import__(f"transformers.models.{module}.modeling_{module}", fromlist=[name])
        assert hasattr(mod, name), f"transformers {transformers.__version__} has no {name}"


@pytest.mark.parametrize("model", ["olmoe-1b-7b", "qwen3-30b-a3b"])
def test_real_checkpoint_recipes_validate(model):
    sft = load_config(SFTConfig, RECIPES / "configs" / model / "sft.yaml", [])
    ppo = load_config(PPOConfig, RECIPES / "configs" / model / "ppo.yaml", [])
    assert sft.model_path in ARCHITECTURES  # the estimator knows the base the recipe starts from
    assert ppo.model_path == f"{sft.output_dir}/final"
    assert ppo.compute.bf16 and ppo.compute.gradient_checkpointing
    assert ppo.rollout.prompts_per_step % 8 == 0 and ppo.optim.minibatch_size % 8 == 0  # split over 8 GPUs


def test_parameter_counts_are_exact_on_a_real_model():
    """meta-device counts equal the counts of the model r1rl actually builds (policy + critic)."""
    from r1rl.model import build_model
    from r1rl.ppo.roles import ActorCritic

    config = architecture("micro")
    lora = LoraConfigModel(r=4, alpha=8)
    counts = count_parameters(config, lora)
    model = build_model(config, seed=0)
    assert counts.total == sum(p.numel() for p in model.parameters())
    ac = ActorCritic(model, lora)
    trainable = sum(p.numel() for p in [*ac.adapter_parameters("policy"), *ac.adapter_parameters("critic")])
    assert counts.adapters == trainable
    assert counts.active < counts.total


def test_published_sizes():
    """The embedded architectures reproduce the published parameter counts."""
    olmoe = count_parameters(architecture("allenai/OLMoE-1B-7B-0924"))
    qwen = count_parameters(architecture("Qwen/Qwen3-30B-A3B"))
    assert olmoe.total / 1e9 == pytest.approx(6.92, abs=0.05) and olmoe.active / 1e9 == pytest.approx(
        1.28, abs=0.05
    )
    assert qwen.total / 1e9 == pytest.approx(30.5, abs=0.1) and qwen.active / 1e9 == pytest.approx(
        3.35, abs=0.1
    )


def test_sharding_arithmetic():
    config = architecture("micro")
    counts = count_parameters(config)
    one = estimate(config, "ddp", 1, counts=counts, rollout_sequences=8)
    ddp = estimate(config, "ddp", 8, counts=counts, rollout_sequences=8)
    z2 = estimate(config, "zero2", 8, counts=counts, rollout_sequences=8)
    z3 = estimate(config, "zero3", 8, counts=counts, rollout_sequences=8)
    assert ddp["base"] == one["base"] and ddp["grads+adam"] == one["grads+adam"]
    assert ddp["rollout_kv"] == pytest.approx(one["rollout_kv"] / 8)  # the rollout batch is split
    assert z2["grads+adam"] == pytest.approx(ddp["grads+adam"] / 8) and z2["base"] == ddp["base"]
    layers = config.num_hidden_layers
    assert z3["base"] == pytest.approx(ddp["base"] / 8 + ddp["base"] / layers)  # + one gathered layer
    assert z3["total"] < z2["total"] < ddp["total"]
    with pytest.raises(ValueError, match="choose one of"):
        estimate(config, "zero4", 8, counts=counts)


def test_table_lists_every_setup():
    text = table(["micro"], [("ddp", 1), ("fsdp2", 4)], rollout_sequences=4, micro_batch=1, seq_len=64)
    assert text.count("| micro |") == 2 and "fsdp2 × 4" in text


def test_estimator_cli(capsys):
    from r1rl.memory import main

    main(["--models", "micro", "--setups", "ddp:2", "--seq-len", "64"])
    assert "ddp × 2" in capsys.readouterr().out
    assert os.environ.get("WORLD_SIZE", "1") == "1" and torch.get_default_device().type == "cpu"
