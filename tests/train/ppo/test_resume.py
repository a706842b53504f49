"""Exact resume: a PPO run killed mid-way and resumed ends bitwise equal to a straight run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from r1rl.config import PPOConfig, PretrainConfig, SFTConfig, load_config
from r1rl.run.stages import STAGES
from r1rl.train.loop import Checkpointer

MICRO = Path(__file__).parents[3] / "recipes" / "configs" / "micro"


REWARD = """
def spread(prompts, completions, **columns):
    # a reward that varies between samples, so every step moves policy and critic
    return [(len(c) % 5) / 4 for c in completions]
"""


def _ppo_args(out: Path, sft: Path, reward: Path) -> list[str]:
    return [
        f"output_dir={out}", f"model_path={sft}", "steps=6", "checkpoint.every=1",
        "checkpoint.keep=10", f"rewards.tiers=[{{name: spread, reward: '{reward}:spread'}}]",
    ]  # fmt: skip


def _tensors(obj, prefix=""):
    """Flatten nested state into {path: tensor} (non-tensor leaves kept as-is)."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(_tensors(v, f"{prefix}{k}/"))
        return out
    if isinstance(obj, np.ndarray):
        return {prefix: torch.from_numpy(obj.copy())}
    if isinstance(obj, (list, tuple)):
        out = {}
        for i, v in enumerate(obj):
            out.update(_tensors(v, f"{prefix}{i}/"))
        return out
    return {prefix: obj}


@pytest.fixture(scope="module")
def sft(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume")
    pre = STAGES["pretrain"](load_config(PretrainConfig, MICRO / "pretrain.yaml", [f"output_dir={tmp}/pre"]))
    return STAGES["sft"](
        load_config(SFTConfig, MICRO / "sft.yaml", [f"output_dir={tmp}/sft", f"model_path={pre.final}"])
    )


@pytest.mark.slow
def test_ppo_killed_and_resumed_is_bitwise_equal(tmp_path, sft):
    reward = tmp_path / "spread.py"
    reward.write_text(REWARD)
    args = {name: _ppo_args(tmp_path / name, sft.final, reward) for name in ("a", "b")}
    straight = STAGES["ppo"](load_config(PPOConfig, MICRO / "ppo.yaml", args["a"]))
    assert straight.read_metrics()[-1]["grad_norm"] > 0

    # the same run in a child process, SIGKILLed once its third checkpoint exists
    b = tmp_path / "b"
    cmd = [sys.executable, "-m", "r1rl", "ppo", str(MICRO / "ppo.yaml"), *args["b"]]
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (b / "checkpoints" / "step-00000003").exists():
        assert child.poll() is None and time.monotonic() < deadline, "child ended before its third checkpoint"
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert not (b / "final").exists()
    killed_at = Checkpointer(b / "checkpoints").paths()[-1].name
    assert killed_at < "step-00000005"  # the resumed run really has steps left to redo
    resumed = STAGES["ppo"](load_config(PPOConfig, MICRO / "ppo.yaml", args["b"]))

    # parameters, optimizer and scheduler state at the last checkpoint, then the final weights
    sa = _tensors(torch.load(straight.checkpoints / "step-00000005" / "state.pt", weights_only=False))
    sb = _tensors(torch.load(resumed.checkpoints / "step-00000005" / "state.pt", weights_only=False))
    assert sa.keys() == sb.keys()
    for k in sa:
        if isinstance(sa[k], torch.Tensor):
            assert torch.equal(sa[k], sb[k]), f"{k} differs (killed after {killed_at})"
        else:
            assert sa[k] == sb[k], k
    fa, fb = load_file(straight.final / "model.safetensors"), load_file(resumed.final / "model.safetensors")
    assert all(torch.equal(fa[k], fb[k]) for k in fa)
    # metrics were truncated to the checkpoint and re-logged: one row per step
    assert [r["step"] for r in resumed.read_metrics()] == list(range(1, 7))


@pytest.mark.slow
def test_sigterm_checkpoints_at_a_step_boundary_exits_143_and_resumes_bitwise(tmp_path, sft):
    reward = tmp_path / "spread.py"
    reward.write_text(REWARD)
    args = {name: [*_ppo_args(tmp_path / name, sft.final, reward), "checkpoint.every=0", "steps=8"]
            for name in ("a", "b")}  # fmt: skip
    straight = STAGES["ppo"](load_config(PPOConfig, MICRO / "ppo.yaml", args["a"]))
    b = tmp_path / "b"
    cmd = [sys.executable, "-m", "r1rl", "ppo", str(MICRO / "ppo.yaml"), *args["b"]]
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (b / "metrics.jsonl").exists() or len((b / "metrics.jsonl").read_text().splitlines()) < 2:
        assert child.poll() is None and time.monotonic() < deadline, "child ended before its second step"
        time.sleep(0.01)
    child.send_signal(signal.SIGTERM)  # what Slurm and Kubernetes send before killing
    _, err = child.communicate(timeout=120)
    last = err.strip().splitlines()[-1]
    assert child.returncode == 143, err[-2000:]
    assert (
        last.startswith("r1rl: stopped by SIGTERM after step ") and "run the same command to resume" in last
    )
    stopped_at = int(last.split("after step ")[1].split(";")[0])
    assert 2 <= stopped_at < 8 and not (b / "final").exists()
    assert (
        Checkpointer(b / "checkpoints").paths()[-1].name == f"step-{stopped_at:08d}"
    )  # written at the boundary
    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0 and "resuming it" in resumed.stdout, resumed.stderr[-2000:]
    fa, fb = load_file(straight.final / "model.safetensors"), load_file(b / "final" / "model.safetensors")
    assert all(torch.equal(fa[k], fb[k]) for k in fa)


def test_kill_during_checkpoint_write_leaves_previous_loadable(tmp_path, monkeypatch):
    ckpts = tmp_path / "checkpoints"
    ckpt = Checkpointer(ckpts, keep=2)
    ckpt.save(1, {"step": 1, "w": torch.ones(3)})

    def dies_mid_write(obj, f, *a, **k):
        f.write(b"\x80partial")  # a torn file, then the process "dies"
        raise SystemExit("killed")

    monkeypatch.setattr(torch, "save", dies_mid_write)
    with pytest.raises(SystemExit):
        ckpt.save(2, {"step": 2, "w": torch.zeros(3)})
    monkeypatch.undo()
    assert [p.name for p in ckpt.paths()] == ["step-00000001"]
    assert ckpt.load_latest()["step"] == 1
    ckpt.save(2, {"step": 2, "w": torch.zeros(3)})  # the next write succeeds
    assert ckpt.load_latest()["step"] == 2
    assert not any(p.name.startswith(".tmp") for p in ckpts.iterdir())
