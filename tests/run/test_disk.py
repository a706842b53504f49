"""Failing disks, for real: a process under RLIMIT_FSIZE (the kernel refuses writes past the size, as a
full disk does) stops with one line naming the file; the previous checkpoint stays loadable, no
half-written file is left, and the same command without the limit carries on."""

import json
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

MICRO = Path(__file__).parents[2] / "recipes" / "configs" / "micro"


def _limited(max_bytes: int):
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG), not the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return preexec


def _cli(args: list[str], max_bytes: int | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "r1rl", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          preexec_fn=_limited(max_bytes) if max_bytes else None)  # fmt: skip


def _error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    return proc.stderr.strip().splitlines()[-1]


def _leftovers(run: Path) -> list[str]:
    return sorted(str(p.relative_to(run)) for p in run.rglob("*") if ".tmp" in p.name)


@pytest.fixture(scope="module")
def base(micro_pretrained):
    return micro_pretrained  # the session's micro pretrain (tests/conftest.py), read only


CHECKPOINTS = """
import resource, signal, sys
from pathlib import Path
import torch
from r1rl.errors import UserError
from r1rl.train.loop import Checkpointer
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
ckpt = Checkpointer(Path(sys.argv[1]), keep=3)
ckpt.save(1, {"step": 1, "w": torch.ones(10)})
resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))
try:
    ckpt.save(2, {"step": 2, "w": torch.ones(100_000)})  # 400 kB: past the limit
except UserError as e:
    print("error:", e)
print(sorted(p.name for p in Path(sys.argv[1]).iterdir()), ckpt.load_latest()["step"])
"""


def test_a_checkpoint_that_cannot_be_written_leaves_the_previous_one(tmp_path):
    out = subprocess.run([sys.executable, "-c", CHECKPOINTS, str(tmp_path)], capture_output=True, text=True)
    lines = out.stdout.strip().splitlines()
    assert out.returncode == 0, out.stderr
    assert lines[0].startswith(f"error: cannot write checkpoint {tmp_path}/step-00000002 (File too large)")
    assert lines[0].endswith(f"the newest intact one is {tmp_path}/step-00000001")
    assert lines[1] == "['step-00000001'] 1"


def test_ppo_stops_in_one_line_when_its_checkpoint_cannot_be_written_then_carries_on(base, tmp_path):
    out = tmp_path / "ppo"
    args = ["ppo", str(MICRO / "ppo.yaml"), f"model_path={base}", f"output_dir={out}", "checkpoint.every=1"]
    last = _error(_cli(args, max_bytes=200_000))  # metrics fit, a 260 kB checkpoint does not
    assert last == (
        f"r1rl: error: cannot write checkpoint {out}/checkpoints/step-00000001 (File too large); "
        "no earlier one exists"
    )
    assert _leftovers(out) == [] and not (out / "final").exists()
    assert [r["step"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())] == [1]
    again = _cli(args)
    assert again.returncode == 0 and "resuming it" in again.stdout, again.stderr[-2000:]
    assert (out / "final").is_dir()


def test_sft_stops_in_one_line_when_final_cannot_be_written(base, tmp_path):
    out = tmp_path / "sft"
    args = ["sft", str(MICRO / "sft.yaml"), f"model_path={base}", f"output_dir={out}", "lora.r=64"]
    last = _error(_cli(args, max_bytes=200_000))  # the plots fit, a rank-64 adapter (~0.5 MB) does not
    assert last.startswith(f"r1rl: error: cannot write {out}/final (File too large)")
    assert _leftovers(out) == [] and not (out / "final").exists() and (out / "config.yaml").is_file()
    assert _cli(args).returncode == 0 and (out / "final" / "adapter_model.safetensors").is_file()


def test_metrics_that_cannot_be_written_are_one_line(base, tmp_path):
    out = tmp_path / "sft"
    args = [
        "sft",
        str(MICRO / "sft.yaml"),
        f"model_path={base}",
        f"output_dir={out}",
        "log.every=1",
        "steps=20",
    ]
    last = _error(_cli(args, max_bytes=4_000))  # the config fits, 20 rows of metrics do not
    assert last.startswith(f"r1rl: error: cannot write {out}/metrics.jsonl (File too large)")


def test_a_torn_last_metrics_line_is_tolerated_on_resume(base, tmp_path):
    out = tmp_path / "ppo"
    args = ["ppo", str(MICRO / "ppo.yaml"), f"model_path={base}", f"output_dir={out}", "checkpoint.every=1"]
    assert _cli(args).returncode == 0
    (out / "final").rename(out / "away")  # an unfinished run: resumes from its newest checkpoint
    with (out / "metrics.jsonl").open("a") as f:
        f.write('{"step": 4, "stage": "ppo", "loss": 0.')  # killed mid-write
    again = _cli(args)
    assert again.returncode == 0, again.stderr[-2000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
