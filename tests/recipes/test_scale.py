"""Scale-out recipes: every accelerate config parses and validates the way ``accelerate launch`` reads it
(the two-machine ones through to torchrun's launch config and the device mesh), every real-checkpoint
recipe is a valid r1rl config, and the memory estimator's counts are exact and its arithmetic is
worked out by hand."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from r1rl.config import LoraConfigModel, PPOConfig, SFTConfig, load_config
from r1rl.report.memory import ARCHITECTURES, architecture, count_parameters, estimate, table

RECIPES = Path(__file__).parents[2] / "recipes"
ACCELERATE = sorted((RECIPES / "accelerate").glob("*.yaml"))
MULTINODE = [p for p in ACCELERATE if p.stem.endswith("_multinode")]
PLACEHOLDER_IP = "192.0.2.1"  # TEST-NET-1 (RFC 5737): never a real machine, so an unedited file fails fast


def test_every_strategy_has_a_config():
    assert {p.stem for p in ACCELERATE} == {
        "ddp", "ddp_cpu", "fsdp2", "fsdp2_cpu", "zero2", "zero3", "fsdp2_multinode", "hsdp_multinode",
    }  # fmt: skip


def _launch_args(path: Path, *extra: str):
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    parser = launch_command_parser()
    argv = ["--config_file", str(path), *extra, "train.py"]
    args, defaults, _ = _validate_launch_command(parser.parse_args(argv))
    return parser, args, defaults


@pytest.mark.parametrize("path", ACCELERATE, ids=lambda p: p.stem)
def test_accelerate_config_parses_and_validates(path, monkeypatch):
    from accelerate.utils import DeepSpeedPlugin, DistributedType, FullyShardedDataParallelPlugin
    from accelerate.utils.launch import prepare_multi_gpu_env

    parser, args, defaults = _launch_args(path)
    # every nested option is one the launcher knows (unknown ones would be silently ignored)
    known = {a.dest for a in parser._actions}
    for section in ("fsdp_config", "deepspeed_config", "parallelism_config"):
        unknown = set(getattr(defaults, section) or {}) - known
        assert not unknown, f"{path.name}: {section} keys accelerate does not know: {unknown}"
    assert args.num_processes >= 2 and args.num_machines == (2 if path in MULTINODE else 1)
    kind = defaults.distributed_type
    if kind == DistributedType.FSDP:
        monkeypatch.setattr("accelerate.utils.launch.is_port_in_use", lambda port: False)
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


def _torchrun_config(args):
    """What accelerate's multi-GPU launcher hands torchrun (``multi_gpu_launcher``), short of starting it."""
    import torch.distributed.run as distrib_run
    from accelerate.utils.launch import _filter_args, prepare_multi_gpu_env

    env = prepare_multi_gpu_env(args)
    script = ["--training_script", args.training_script, "--training_script_args", args.training_script_args]
    launch, _, _ = distrib_run.config_from_args(_filter_args(args, distrib_run.get_args_parser(), script))
    return env, launch


def _mesh_groups(pc, rank: int, world: int):
    """This rank's shard group and replica group in the device mesh accelerate builds for FSDP2; torch's
    in-process fake process group stands in for the ``world`` processes."""
    import torch.distributed as dist
    from torch.testing._internal.distributed.fake_pg import FakeStore

    dist.init_process_group("fake", store=FakeStore(), rank=rank, world_size=world)
    try:
        mesh = pc.build_device_mesh("cpu")
        fsdp = mesh[tuple(pc.fsdp_dim_names)]  # the mesh accelerate's fully_shard gets
        return mesh["dp_shard"].mesh.tolist(), mesh["dp_replicate"].mesh.tolist(), fsdp.mesh_dim_names
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("machine_rank", [0, 1])
@pytest.mark.parametrize("path", MULTINODE, ids=lambda p: p.stem)
def test_two_machine_launch_as_accelerate_reads_it(path, machine_rank, monkeypatch, tmp_path):
    from accelerate.parallelism_config import ParallelismConfig
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    raw = yaml.safe_load(path.read_text())
    assert "machine_rank" not in raw and raw["main_process_ip"] == PLACEHOLDER_IP  # rank given at launch
    monkeypatch.setattr("accelerate.utils.launch.is_port_in_use", lambda port: False)  # nothing binds it
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # else torchrun sets it in this process
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # torchrun's log folder
    _, args, _ = _launch_args(path, "--machine_rank", str(machine_rank))
    env, launch = _torchrun_config(args)
    assert (launch.min_nodes, launch.max_nodes, launch.nproc_per_node) == (2, 2, 8)
    assert (launch.rdzv_backend, launch.rdzv_endpoint) == ("static", f"{PLACEHOLDER_IP}:29500")
    assert launch.rdzv_configs["rank"] == machine_rank
    for k, v in env.items():  # each process's Accelerator reads what the launcher set
        if k.startswith(("FSDP_", "PARALLELISM_CONFIG_", "ACCELERATE_")):
            monkeypatch.setenv(k, v)
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
    world = launch.max_nodes * launch.nproc_per_node
    hybrid = env.get("ACCELERATE_USE_PARALLELISM_CONFIG") == "true"
    assert hybrid == (path.stem == "hsdp_multinode")  # else one flat shard group of all 16
    if not hybrid:
        return
    pc = ParallelismConfig()
    assert (pc.dp_replicate_size, pc.dp_shard_size, pc.total_size) == (2, 8, world)
    accelerator = SimpleNamespace(
        multi_device=True, num_processes=world, is_fsdp2=True, distributed_type=DistributedType.FSDP,
        is_main_process=True,
    )  # fmt: skip
    pc._validate_accelerator(accelerator)  # Accelerator()'s own check of the sizes against the world
    local_rank = 3
    shard, replica, dims = _mesh_groups(pc, machine_rank * 8 + local_rank, world)  # torchrun's global rank
    assert shard == list(range(machine_rank * 8, machine_rank * 8 + 8))  # shard within this machine
    assert replica == [local_rank, 8 + local_rank]  # replicate across the two
    assert dims == ("dp_replicate", "dp_shard_cp")  # a 2-D mesh: fully_shard's HSDP


def test_multinode_files_shard_as_fsdp2_yaml():
    one = yaml.safe_load((RECIPES / "accelerate" / "fsdp2.yaml").read_text())
    for path in MULTINODE:
        raw = yaml.safe_load(path.read_text())
        assert raw["fsdp_config"] == one["fsdp_config"], f"{path.name} and fsdp2.yaml shard differently"
        assert raw["mixed_precision"] == one["mixed_precision"], path.name


@pytest.mark.parametrize("page", ["docs/distributed.md", "recipes/accelerate/README.md"])
def test_docs_two_machine_commands_launch_those_files(page):
    """Each page's two-machine launch: a rank-0 and a rank-1 line, the same multi-node file and the same
    stage and (valid) r1rl config on both."""
    from accelerate.commands.launch import launch_command_parser

    root = RECIPES.parent
    text = (root / page).read_text().replace("\\\n", " ")
    commands = [
        line.split(maxsplit=2)[2] for line in text.splitlines() if line.startswith("accelerate launch")
    ]
    launches: dict[int, tuple[str, list[str]]] = {}
    for command in commands:
        args = launch_command_parser().parse_args(command.split())
        if args.machine_rank is not None:
            launches[args.machine_rank] = (
                args.config_file,
                [args.training_script, *args.training_script_args],
            )
    assert set(launches) == {0, 1} and launches[0] == launches[1], launches
    config_file, (script, stage, config) = launches[0]
    assert (root / config_file) in MULTINODE and (args.module, script) == (True, "r1rl")
    load_config({"sft": SFTConfig, "ppo": PPOConfig}[stage], root / config, [])


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
    from r1rl.models.factory import build_model
    from r1rl.train.ppo.roles import ActorCritic

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
    from r1rl.report.memory import main

    main(["--models", "micro", "--setups", "ddp:2", "--seq-len", "64"])
    assert "ddp × 2" in capsys.readouterr().out
    assert os.environ.get("WORLD_SIZE", "1") == "1" and torch.get_default_device().type == "cpu"
