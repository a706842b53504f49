"""Every stage under ``accelerate launch`` with 2 CPU processes (gloo) against the same run in 1 process.

The global batch is the same in both runs, so the optimizer steps must agree: pretrain (with the
router's load-balancing loss, taken over the global batch) and SFT to 1e-4 of the update, PPO
(greedy rollouts, so both runs see the same completions) to 3e-2. Only the main
process writes the run directory; every run ends with a check that all ranks hold bit-identical
trained weights (``r1rl.train.common.check_in_sync``), and a 2-process PPO run killed after its second
checkpoint resumes to the same weights as the straight run.

The same runs under FSDP2 (``recipes/accelerate/fsdp2_cpu.yaml``: the frozen base sharded per
decoder layer, the adapters and value head trained, generation synchronised across the shards)
meet the same tolerances, save sharded checkpoints with ``torch.distributed.checkpoint`` and
resume bitwise after a SIGKILL.
"""

from __future__ import annotations

import json
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from r1rl.config import PPOConfig, PretrainConfig, SFTConfig, load_config
from r1rl.errors import UserError
from r1rl.parallel.distributed import Parallel, cpu_launch
from r1rl.run.stages import STAGES
from r1rl.train.common import check_in_sync
from r1rl.train.loop import Checkpointer, rng_state_of

MICRO = Path(__file__).parents[2] / "recipes" / "configs" / "micro"
RECIPES_ACCELERATE = Path(__file__).parents[2] / "recipes" / "accelerate"

REWARD = """
def spread(prompts, completions, **columns):
    # varies across prompts whatever the completion, so every step has a learning signal
    return [((len(p) + len(c)) % 5) / 4 for p, c in zip(prompts, completions)]
"""


FSDP2_CPU = str(RECIPES_ACCELERATE / "fsdp2_cpu.yaml")


def _launch_cmd(stage: str, recipe: Path, args: list[str], config_file: str | None = None) -> list[str]:
    return cpu_launch(["-m", "r1rl", stage, str(recipe), *args], config_file=config_file)[0]


def _env() -> dict[str, str]:
    return cpu_launch([])[1]


LAUNCH_TIMEOUT_S = 900  # a micro run takes under a minute; a hung launch fails instead of stalling CI


def signal_tree(pid: int, sig: signal.Signals) -> None:
    """``sig`` to a launcher and every process under it: its workers run in sessions of their own
    (torch elastic starts them so), so a signal to the launcher's process group misses them."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for proc in procs:
        try:
            proc.send_signal(sig)
        except psutil.NoSuchProcess:
            pass


def run_launch(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """``cmd`` to its end, within :data:`LAUNCH_TIMEOUT_S`; past it, the launcher and its workers are
    killed and the test fails with what they printed."""
    child = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = child.communicate(timeout=LAUNCH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        signal_tree(child.pid, signal.SIGKILL)
        out, err = child.communicate()
        pytest.fail(f"launch still running after {LAUNCH_TIMEOUT_S} s: {cmd}\n{out[-2000:]}\n{err[-3000:]}")
    return subprocess.CompletedProcess(cmd, child.returncode, out, err)


def launch2(
    stage: str, recipe: Path, args: list[str], config_file: str | None = None
) -> subprocess.CompletedProcess:
    cmd = _launch_cmd(stage, recipe, args, config_file)
    res = run_launch(cmd, _env())
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _rel_diff(a: dict, b: dict, base: dict) -> float:
    """‖a − b‖ / ‖a − base‖ over shared tensors: disagreement as a fraction of the update."""
    num = sum(float(((a[k].float() - b[k].float()) ** 2).sum()) for k in a)
    den = sum(float(((a[k].float() - base[k].float()) ** 2).sum()) for k in a)
    return (num / den) ** 0.5


def _files(run: Path) -> list[str]:
    return sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())


# ---------------------------------------------------------------------------------------------
# one process: everything is a no-op


def test_parallel_alone_is_a_no_op():
    par = Parallel()
    assert not par.enabled and par.is_main and par.world == 1
    batch = {"input_ids": torch.arange(6).view(3, 2)}
    assert par.shard(batch)["input_ids"] is batch["input_ids"]  # alone on the CPU: the same tensor
    assert par.shard_list([1, 2, 3]) == [1, 2, 3]
    assert par.all_mean({"a": 2.0}) == {"a": 2.0}
    x = torch.tensor([1.0, 2.0])
    assert par.all_sum(x) is x
    assert par.all_true(False) is False
    assert par.gather_objects("x") == ["x"]
    assert set(rng_state_of(par)) == {"rng"}
    check_in_sync(par, [x], "weights")


COLLECTIVES = """
import torch
from r1rl.parallel.distributed import Parallel, cpu_launch, main_decides, rank
from r1rl.errors import UserError
from r1rl.algorithms.ppo import masked_whiten, normalize
from r1rl.train.common import check_in_sync

# before any Parallel: what the main process decides is what every process does (a run directory
# that changes between two processes' looks cannot split them), and its refusal is everyone's
assert main_decides(lambda: f"decided on rank {rank()}") == "decided on rank 0"
def refuse():
    raise UserError(f"refused on rank {rank()}")
try:
    main_decides(refuse)
    raise AssertionError("the main process's refusal was not shared")
except UserError as e:
    assert str(e) == "refused on rank 0"
par = Parallel()  # takes over the process group main_decides started
assert main_decides(lambda: rank() + 10) == 10
assert par.enabled and par.world == 2
torch.manual_seed(0)
x, mask = torch.randn(4, 5), (torch.rand(4, 5) > 0.3).float()
mine = slice(2 * par.rank, 2 * par.rank + 2)
# whitening over both ranks' halves equals whitening the whole batch in one process
whole = masked_whiten(x, mask)[mine]
torch.testing.assert_close(masked_whiten(x[mine], mask[mine], all_sum=par.all_sum), whole, atol=1e-5, rtol=0)
# reward normalisation over both ranks' scores equals one process's on all of them
scores = torch.randn(4)
shared = normalize(scores[mine], all_sum=par.all_sum)
torch.testing.assert_close(shared, normalize(scores)[mine], atol=1e-6, rtol=0)
# the Switch load-balancing loss over both ranks' rows: its mean over ranks is the whole batch's
from transformers.models.qwen3_moe.modeling_qwen3_moe import load_balancing_loss_func
from r1rl.algorithms.router import switch_loss_global
logits, m = torch.randn(2, 4, 3, 6), (torch.rand(4, 3) > 0.2).long()  # L=2 layers, B=4, S=3, E=6
whole = load_balancing_loss_func(tuple(logits.reshape(2, 12, 6)), 6, 2, m)
share = switch_loss_global(tuple(logits[:, mine].reshape(2, 6, 6)), 2, m[mine], par.all_sum, par.world)
torch.testing.assert_close(par.all_sum(share) / 2, whole)
# shard takes contiguous rows; shard_list likewise
assert par.shard({"a": torch.arange(4)})["a"].tolist() == [2 * par.rank, 2 * par.rank + 1]
assert par.shard_list(list("abcd")) == list("abcd")[mine]
# gradients: summed over ranks; missing on one rank = zero there; missing everywhere stays None
p, q, r = (torch.nn.Parameter(torch.zeros(3)) for _ in range(3))
p.grad = torch.full((3,), float(par.rank + 1))
if par.rank == 0:
    q.grad = torch.ones(3)
par.sync_grads([p, q, r])
assert p.grad.tolist() == [3.0] * 3 and q.grad.tolist() == [1.0] * 3 and r.grad is None
assert par.all_mean({"m": float(par.rank)}) == {"m": 0.5}
means = par.all_mean({"a": float("nan") if par.rank else 3.0, "b": float("nan")})
assert means["a"] == 3.0 and means["b"] != means["b"]  # NaN left out; NaN everywhere stays NaN
assert par.all_true(par.rank == 0) is False and par.all_true(True) is True
# broadcast makes rank 1 hold rank 0's values; check_in_sync then passes, and fails before it
w = torch.full((2,), float(par.rank))
try:
    check_in_sync(par, [w], "weights")
    raise AssertionError("differing weights passed check_in_sync")
except RuntimeError as e:
    assert "differ across ranks" in str(e)
par.broadcast_([w])
assert w.tolist() == [0.0, 0.0]
check_in_sync(par, [w], "weights")
try:
    par.check_divisible(3, "rollout.prompts_per_step")
    raise AssertionError("3 split across 2 processes")
except Exception as e:
    assert "does not split across 2 processes" in str(e)
if par.is_main:
    print("COLLECTIVES-OK")
"""


def test_collectives_with_two_processes(tmp_path):
    script = tmp_path / "collectives.py"
    script.write_text(textwrap.dedent(COLLECTIVES))
    res = run_launch(*cpu_launch([str(script)]))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "COLLECTIVES-OK" in res.stdout


# ---------------------------------------------------------------------------------------------
# every stage: 1 process vs 2 processes


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Pretrain, SFT and PPO, each once alone and once under a 2-process launcher, from the same inputs."""
    tmp = tmp_path_factory.mktemp("dist")
    reward = tmp / "spread.py"
    reward.write_text(REWARD)
    pre_args = ["steps=6", "checkpoint.every=3"]
    pre1 = STAGES["pretrain"](
        load_config(PretrainConfig, MICRO / "pretrain.yaml", [f"output_dir={tmp}/pre1", *pre_args])
    ).path
    launch2("pretrain", MICRO / "pretrain.yaml", [f"output_dir={tmp}/pre2", *pre_args])
    sft_args = [f"model_path={pre1}/final", "checkpoint.every=3"]
    sft1 = STAGES["sft"](
        load_config(SFTConfig, MICRO / "sft.yaml", [f"output_dir={tmp}/sft1", *sft_args])
    ).path
    launch2("sft", MICRO / "sft.yaml", [f"output_dir={tmp}/sft2", *sft_args])
    ppo_args = [
        f"model_path={sft1}/final", "steps=6", "checkpoint.every=1", "checkpoint.keep=10",
        "rollout.top_p=0.000001", "optim.minibatch_size=8", "algorithm.advantage_estimator=gae",
        # running per-tier normalisation: statistics over every rank's scores, checkpointed
        f"rewards.tiers=[{{name: spread, reward: '{reward}:spread', normalize: running}}]",
    ]  # fmt: skip
    STAGES["ppo"](load_config(PPOConfig, MICRO / "ppo.yaml", [f"output_dir={tmp}/ppo1", *ppo_args]))
    launch2("ppo", MICRO / "ppo.yaml", [f"output_dir={tmp}/ppo2", *ppo_args])
    return {"tmp": tmp, "ppo_args": ppo_args}


def _full_model(path: Path) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path).state_dict()


@pytest.mark.slow
def test_pretrain_two_processes_match_one(runs):
    from transformers import AutoConfig

    from r1rl.models.factory import build_model

    tmp = runs["tmp"]
    a, b = _full_model(tmp / "pre1" / "final"), _full_model(tmp / "pre2" / "final")
    init = build_model(AutoConfig.from_pretrained(tmp / "pre1" / "final"), 0).state_dict()
    assert _rel_diff(a, b, init) < 1e-4
    la, lb = _metrics(tmp / "pre1"), _metrics(tmp / "pre2")
    assert [r["step"] for r in la] == [r["step"] for r in lb]  # one writer: no duplicated rows
    for ra, rb in zip(la, lb):
        assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-5)
        assert rb["moe/aux_loss"] == pytest.approx(ra["moe/aux_loss"], rel=1e-5)
        assert rb["grad_norm"] == pytest.approx(ra["grad_norm"], rel=1e-3)
    assert _files(tmp / "pre1") == _files(tmp / "pre2")


@pytest.mark.slow
def test_sft_two_processes_match_one(runs):
    tmp = runs["tmp"]
    a = load_file(tmp / "sft1" / "final" / "adapter_model.safetensors")
    b = load_file(tmp / "sft2" / "final" / "adapter_model.safetensors")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5
    la, lb = _metrics(tmp / "sft1"), _metrics(tmp / "sft2")
    assert len(la) == len(lb)
    for ra, rb in zip(la, lb):
        assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-5)
    assert _files(tmp / "sft1") == _files(tmp / "sft2")


@pytest.mark.slow
def test_ppo_two_processes_match_one(runs):
    tmp = runs["tmp"]
    from r1rl.models.factory import load_merged

    a, b = _full_model(tmp / "ppo1" / "final"), _full_model(tmp / "ppo2" / "final")
    base = load_merged(str(tmp / "sft1" / "final")).state_dict()  # the SFT model PPO started from
    assert _rel_diff(a, b, base) < 3e-2  # measured 9.0e-3 (1.5e-4 after one step)
    la, lb = _metrics(tmp / "ppo1"), _metrics(tmp / "ppo2")
    assert [r["step"] for r in la] == [r["step"] for r in lb]
    for ra, rb in zip(la, lb):
        assert rb["reward/mean"] == pytest.approx(ra["reward/mean"], abs=1e-6)  # same greedy completions
        assert rb["value/loss"] == pytest.approx(ra["value/loss"], rel=1e-2, abs=1e-6)
        assert rb["reward/tier/spread/running_mean"] == pytest.approx(ra["reward/tier/spread/running_mean"])
    assert len(Checkpointer(tmp / "ppo2" / "checkpoints").paths()) == 6  # every step's, the final one too


@pytest.mark.slow
def test_ppo_two_processes_killed_and_resumed(runs):
    _kill_after_checkpoint_2_and_resume(runs, runs["tmp"] / "ppo2", runs["tmp"] / "ppo2-resumed")


def _kill_after_checkpoint_2_and_resume(
    runs: dict, straight: Path, out: Path, config_file: str | None = None, extra: tuple[str, ...] = ()
):
    """SIGKILL a 2-process PPO run once its second checkpoint exists, resume it with the same command,
    and compare it bit for bit with ``straight``, the same run uninterrupted (``extra`` arguments too)."""
    args = [f"output_dir={out}", *runs["ppo_args"], *extra]
    child = subprocess.Popen(
        _launch_cmd("ppo", MICRO / "ppo.yaml", args, config_file),
        env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while not (out / "checkpoints" / "step-00000002").exists():
        assert child.poll() is None and time.monotonic() < deadline, "ended before checkpoint 2"
        time.sleep(0.01)
    signal_tree(child.pid, signal.SIGKILL)  # the launcher and both workers, as when a node is lost
    child.wait()
    assert not (out / "final").exists()
    assert Checkpointer(out / "checkpoints").paths()[-1].name < "step-00000005"
    resumed = launch2("ppo", MICRO / "ppo.yaml", args, config_file)
    assert f"[ppo] {out} has the same config; resuming it" in resumed.stdout
    a = load_file(straight / "final" / "model.safetensors")
    b = load_file(out / "final" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["step"] for r in _metrics(out)] == [r["step"] for r in _metrics(straight)]


@pytest.mark.slow
def test_ppo_two_processes_stopped_by_sigterm_and_resumed(runs):
    """SIGTERM to the launcher and both workers: they agree at a step boundary, write a checkpoint,
    the main process says so in one line and each worker exits 143; the same command resumes."""
    tmp, out = runs["tmp"], runs["tmp"] / "ppo2-sigterm"
    args = [f"output_dir={out}", *runs["ppo_args"], "checkpoint.every=0"]
    cmd = _launch_cmd("ppo", MICRO / "ppo.yaml", args)
    child = subprocess.Popen(
        cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.monotonic() + 180
    while not (out / "metrics.jsonl").exists() or len((out / "metrics.jsonl").read_text().splitlines()) < 2:
        assert child.poll() is None and time.monotonic() < deadline, "ended before its second step"
        time.sleep(0.01)
    signal_tree(child.pid, signal.SIGTERM)  # as Slurm does: every process of the job
    _, err = child.communicate(timeout=180)
    lines = [line for line in err.splitlines() if line.startswith("r1rl: stopped by SIGTERM")]
    assert len(lines) == 1, err[-3000:]  # from the main process only
    assert "exitcode  : 143" in err or child.returncode != 0  # the launcher reports its workers' 143
    assert not (out / "final").exists() and Checkpointer(out / "checkpoints").paths()
    assert f"[ppo] {out} has the same config; resuming it" in launch2("ppo", MICRO / "ppo.yaml", args).stdout
    a = load_file(tmp / "ppo2" / "final" / "model.safetensors")
    b = load_file(out / "final" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_sft_gradient_compression_and_trackers_under_two_processes(runs):
    tmp = runs["tmp"]
    args = [
        f"model_path={tmp}/pre1/final", "comm.grad_compression=powersgd", "comm.powersgd_rank=1",
        "comm.powersgd_start_iter=2", "report_to=[tensorboard]",
    ]  # fmt: skip
    launch2("sft", MICRO / "sft.yaml", [f"output_dir={tmp}/sft2-powersgd", *args])
    # trackers live on the main process and close without tearing down the process group
    assert list((tmp / "sft2-powersgd" / "trackers").rglob("events.out.tfevents.*"))
    plain, compressed = _metrics(tmp / "sft1"), _metrics(tmp / "sft2-powersgd")
    assert compressed[0]["loss"] == pytest.approx(plain[0]["loss"], rel=1e-5)  # before compression starts
    assert compressed[-1]["loss"] == pytest.approx(plain[-1]["loss"], rel=1e-2)


def test_batch_that_does_not_split_is_a_one_line_error(monkeypatch):
    par = Parallel()
    par.world = 2  # the arithmetic only: no process group is needed to refuse an uneven split
    with pytest.raises(UserError, match="batch_size=7 does not split across 2 processes"):
        par.check_divisible(7, "batch_size")


@pytest.mark.slow
def test_rerun_decisions_under_two_processes(runs):
    """Skip, refuse and overwrite under a launcher: the main process decides, says so once, and the
    other process follows it (none waits for a decision another never took)."""
    tmp = runs["tmp"]
    run = tmp / "pre2-rerun"
    args = [f"output_dir={run}", "steps=3"]
    launch2("pretrain", MICRO / "pretrain.yaml", args)
    skipped = launch2("pretrain", MICRO / "pretrain.yaml", args)
    assert skipped.stdout.count(f"[pretrain] {run} is finished; skipping") == 1
    changed = [f"output_dir={run}", "steps=2"]
    refused = run_launch(_launch_cmd("pretrain", MICRO / "pretrain.yaml", changed), _env())
    errors = [line for line in refused.stderr.splitlines() if line.startswith("r1rl: error:")]
    assert refused.returncode != 0 and len(errors) == 2 and errors[0] == errors[1], refused.stderr[-2000:]
    assert "holds a run with another config (steps: 3 → 2)" in errors[0]
    assert "exitcode  : 2" in refused.stderr  # a clean exit with the CLI's status, not an abort
    redone = launch2("pretrain", MICRO / "pretrain.yaml", [*changed, "--overwrite"])
    assert redone.stdout.count(f"moved the run in {run} to {run}.prev-1; starting afresh") == 1
    assert (tmp / "pre2-rerun.prev-1" / "final").is_dir() and _metrics(run)[-1]["step"] == 2


@pytest.mark.slow
def test_uneven_split_under_a_launcher_is_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "pre"
    cmd = _launch_cmd("pretrain", MICRO / "pretrain.yaml", [f"output_dir={out}", "batch_size=7"])
    res = run_launch(cmd, _env())
    assert res.returncode != 0
    errors = [line for line in res.stderr.splitlines() if line.startswith("r1rl: error:")]
    assert errors and all(e == errors[0] for e in errors), res.stderr[-2000:]
    assert errors[0] == ("r1rl: error: batch_size=7 does not split across 2 processes; use a multiple of it")
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# FSDP2 (recipes/accelerate/fsdp2_cpu.yaml): the frozen base sharded per decoder layer over 2 gloo
# processes, against the same 1-process runs and DDP's tolerances


# FSDP2's PPO runs multi-turn episodes (an environment that answers each first turn): the sharded model
# generates in step on every rank, turn by turn, and the environment's tokens are context
ASK_ONCE = Path(__file__).parents[1] / "envs" / "trl_style.py"
EPISODES = [f"env.environment={ASK_ONCE}:AskOnce", "env.max_turns=2", "env.max_tokens=96"]


@pytest.fixture(scope="module")
def fsdp_runs(runs):
    tmp = runs["tmp"]
    launch2("pretrain", MICRO / "pretrain.yaml", [f"output_dir={tmp}/pre-fsdp", "steps=6"], FSDP2_CPU)
    sft_args = [f"output_dir={tmp}/sft-fsdp", f"model_path={tmp}/pre1/final", "checkpoint.every=3"]
    launch2("sft", MICRO / "sft.yaml", sft_args, FSDP2_CPU)
    ppo_args = [*runs["ppo_args"], *EPISODES]
    STAGES["ppo"](load_config(PPOConfig, MICRO / "ppo.yaml", [f"output_dir={tmp}/ppo1-env", *ppo_args]))
    launch2("ppo", MICRO / "ppo.yaml", [f"output_dir={tmp}/ppo-fsdp", *ppo_args], FSDP2_CPU)
    return tmp


@pytest.mark.slow
def test_fsdp2_pretrain_and_sft_match_one_process(fsdp_runs):
    from transformers import AutoConfig

    from r1rl.models.factory import build_model

    tmp = fsdp_runs
    a, b = _full_model(tmp / "pre1" / "final"), _full_model(tmp / "pre-fsdp" / "final")
    init = build_model(AutoConfig.from_pretrained(tmp / "pre1" / "final"), 0).state_dict()
    assert _rel_diff(a, b, init) < 1e-4
    for ra, rb in zip(_metrics(tmp / "pre1"), _metrics(tmp / "pre-fsdp"), strict=True):
        assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-5)
    a = load_file(tmp / "sft1" / "final" / "adapter_model.safetensors")
    b = load_file(tmp / "sft-fsdp" / "final" / "adapter_model.safetensors")
    assert sorted(a) == sorted(b)
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5  # measured 5.5e-7
    for ra, rb in zip(_metrics(tmp / "sft1"), _metrics(tmp / "sft-fsdp"), strict=True):
        assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-5)
    unsharded = [f for f in _files(tmp / "sft-fsdp") if not f.startswith("checkpoints/")]
    assert unsharded == [f for f in _files(tmp / "sft1") if not f.startswith("checkpoints/")]


@pytest.mark.slow
def test_fsdp2_ppo_matches_one_process_with_sharded_checkpoints(fsdp_runs):
    from r1rl.models.factory import load_merged

    tmp = fsdp_runs
    a, b = _full_model(tmp / "ppo1-env" / "final"), _full_model(tmp / "ppo-fsdp" / "final")
    base = load_merged(str(tmp / "sft1" / "final")).state_dict()
    assert _rel_diff(a, b, base) < 3e-2  # measured 2.3e-5
    for ra, rb in zip(_metrics(tmp / "ppo1-env"), _metrics(tmp / "ppo-fsdp"), strict=True):
        assert rb["reward/mean"] == pytest.approx(ra["reward/mean"], abs=1e-6)
        assert rb["value/loss"] == pytest.approx(ra["value/loss"], rel=1e-2, abs=1e-6)
        assert rb["env/turns"] == ra["env/turns"] and rb["env/env_tokens"] == ra["env/env_tokens"] > 0
    last = Checkpointer(tmp / "ppo-fsdp" / "checkpoints").paths()[-1]
    # torch.distributed.checkpoint: one shard file per process, its metadata, and the unsharded rest
    assert sorted(p.name for p in last.iterdir()) == [".metadata", "__0_0.distcp", "__1_0.distcp", "extra.pt"]


@pytest.mark.slow
def test_fsdp2_ppo_killed_and_resumed_bitwise(fsdp_runs, runs):
    _kill_after_checkpoint_2_and_resume(
        runs, fsdp_runs / "ppo-fsdp", fsdp_runs / "ppo-fsdp-resumed", FSDP2_CPU, tuple(EPISODES)
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ACCELERATE_USE_DEEPSPEED": "true"}, "accelerate distributed_type DEEPSPEED is not supported"),
        ({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "1"}, "accelerate FSDP version 1 is not supported"),
    ],
)
def test_deepspeed_and_fsdp1_launches_are_refused_in_one_line(monkeypatch, env, message):
    from r1rl.parallel.distributed import _sharding_requested

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(UserError, match=message) as e:
        _sharding_requested()
    assert "\n" not in str(e.value)


def test_fsdp2_launch_is_accepted(monkeypatch):
    from r1rl.parallel.distributed import _sharding_requested

    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_VERSION", "2")
    assert _sharding_requested()
