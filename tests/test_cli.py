"""Bad input: one clear line on stderr, exit status 2, nothing touched."""

import subprocess
import sys
from pathlib import Path

import pytest

from r1rl.cli import main

MICRO = Path(__file__).parents[1] / "recipes" / "configs" / "micro"


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("r1rl: error: ")
    return err


def test_unknown_key_exit_2(capsys, tmp_path):
    assert main(["sft", str(MICRO / "sft.yaml"), "lora.rank=4", f"output_dir={tmp_path}/o"]) == 2
    assert "unknown config key 'lora.rank'" in _one_line_error(capsys)
    assert not (tmp_path / "o").exists()


def test_mistyped_value_exit_2(capsys, tmp_path):
    assert main(["pretrain", str(MICRO / "pretrain.yaml"), "steps=many", f"output_dir={tmp_path}/o"]) == 2
    assert "bad value for 'steps'" in _one_line_error(capsys)


def test_missing_config_file_exit_2(capsys, tmp_path):
    assert main(["ppo", str(tmp_path / "missing.yaml")]) == 2
    assert "config file not found" in _one_line_error(capsys)


def test_missing_model_dir_exit_2(capsys, tmp_path):
    args = [
        "sft",
        str(MICRO / "sft.yaml"),
        f"model_path={tmp_path}/no/such/model",
        f"output_dir={tmp_path}/o",
    ]
    assert main(args) == 2
    assert "no such model directory" in _one_line_error(capsys)
    assert not (tmp_path / "o").exists()


def test_unknown_reward_exit_2(capsys, tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    args = [
        "ppo", str(MICRO / "ppo.yaml"), f"model_path={tmp_path}/m", f"output_dir={tmp_path}/o",
        "rewards.tiers=[{name: task, reward: arithmetic_tsak}]",
    ]  # fmt: skip
    assert main(args) == 2
    assert "did you mean 'arithmetic_task'" in _one_line_error(capsys)


@pytest.mark.parametrize("cmd", ["pretrain", "run"])
def test_console_script_exit_status(cmd, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "r1rl.cli", cmd, str(tmp_path / "nope.yaml")], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"r1rl: error: config file not found: {tmp_path / 'nope.yaml'}"
    ]


BAD_DATA = {
    "missing file": (lambda d: ["data.path=" + str(d / "nope.jsonl")], "no such file or folder"),
    "unknown column": (lambda d: ["data.path=" + str(d / "qa.jsonl"), "data.prompt_column=qestion"],
                       "did you mean 'question'"),
    "missing reward column": (lambda d: ["data.path=" + str(d / "qa.jsonl"), "data.prompt_column=question",
                                         "data.answer_column=null"], "needs a column 'answer'"),
    "unknown split": (lambda d: ["data.path=" + str(d / "qa.jsonl"), "data.prompt_column=question",
                                 "data.eval_split=tset"], "no split 'tset'"),
}  # fmt: skip


@pytest.mark.parametrize("stage", ["sft", "ppo", "eval"])
@pytest.mark.parametrize("case", sorted(BAD_DATA))
def test_bad_data_is_one_line_and_writes_nothing(capsys, tmp_path, stage, case):
    import json

    (tmp_path / "qa.jsonl").write_text(
        "".join(json.dumps({"question": f"{i}+1=", "sol": i}) + "\n" for i in range(20))
    )
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    over, message = BAD_DATA[case]
    args = [
        stage,
        str(MICRO / f"{stage}.yaml"),
        f"model_path={tmp_path}/m",
        f"output_dir={tmp_path}/o",
        *over(tmp_path),
    ]
    if stage == "sft":
        args.append("log.eval_every=2")  # the held-out eval's rewards need their columns too
    assert main(args) == 2
    err = capsys.readouterr().err  # datasets' progress bars may come first: the error is the last line
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("r1rl: error: ")
    assert message in err.strip().splitlines()[-1]
    assert not (tmp_path / "o").exists()
