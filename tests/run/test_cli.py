"""Bad input: one clear line on stderr, exit status 2, nothing touched."""

import subprocess
import sys
from pathlib import Path

import pytest

from r1rl.run.cli import main

MICRO = Path(__file__).parents[2] / "recipes" / "configs" / "micro"


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
        [sys.executable, "-m", "r1rl", cmd, str(tmp_path / "nope.yaml")],
        capture_output=True,
        text=True,
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


@pytest.mark.parametrize("stage", ["sft", "ppo", "distill", "eval"])
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
    if stage == "distill":
        args.append(f"teacher_path={tmp_path}/m")
    assert main(args) == 2
    err = capsys.readouterr().err  # datasets' progress bars may come first: the error is the last line
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("r1rl: error: ")
    assert message in err.strip().splitlines()[-1]
    assert not (tmp_path / "o").exists()


def _model_dir(tmp_path, name="m"):
    """A real (micro) model folder saved with save_pretrained, for the damaged-input cases."""
    from r1rl.models.factory import build_config, build_model

    path = tmp_path / name
    build_model(build_config("micro", 64, pad_token_id=0, eos_token_id=1), seed=0).save_pretrained(path)
    return path


def test_a_config_that_is_not_text_is_one_line(capsys, tmp_path):
    bad = tmp_path / "weights.yaml"
    bad.write_bytes(bytes(range(256)) * 4)
    assert main(["sft", str(bad)]) == 2
    assert "not a text file" in _one_line_error(capsys)


def test_deeply_nested_yaml_is_one_line(capsys, tmp_path):
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    assert main(["sft", str(deep)]) == 2
    assert "nested too deeply" in _one_line_error(capsys)


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", ".inf"])
def test_a_non_finite_number_is_one_line(capsys, tmp_path, value):
    assert main(["ppo", str(MICRO / "ppo.yaml"), f"optim.lr={value}", f"output_dir={tmp_path}/o"]) == 2
    assert "bad value for 'optim.lr': Input should be a finite number" in _one_line_error(capsys)


def test_an_unknown_preset_is_refused_before_any_work(capsys, tmp_path):
    assert (
        main(["pretrain", str(MICRO / "pretrain.yaml"), "model.preset=mikro", f"output_dir={tmp_path}/o"])
        == 2
    )
    assert "unknown preset 'mikro' (did you mean 'micro'?)" in _one_line_error(capsys)
    assert not (tmp_path / "o").exists()


def test_an_adapter_whose_base_is_missing_is_one_line(capsys, tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"base_model_name_or_path": "/no/such/base"}')
    assert main(["ppo", str(MICRO / "ppo.yaml"), f"model_path={adapter}", f"output_dir={tmp_path}/o"]) == 2
    assert "is an adapter whose base model /no/such/base does not exist" in _one_line_error(capsys)


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_damaged_weights_name_the_file(capsys, tmp_path, damage):
    model = _model_dir(tmp_path)
    capsys.readouterr()  # the save's progress bar
    weights = model / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\x00garbage" * 100)
    assert main(["ppo", str(MICRO / "ppo.yaml"), f"model_path={model}", f"output_dir={tmp_path}/o"]) == 2
    err = _one_line_error(capsys)
    assert f"{weights} is not a readable weights file" in err
    assert not (tmp_path / "o").exists()


def test_a_damaged_json_file_of_a_model_names_it(capsys, tmp_path):
    model = _model_dir(tmp_path)
    capsys.readouterr()
    (model / "config.json").write_text('{"model_type": "qwen3_moe", ')
    assert main(["sft", str(MICRO / "sft.yaml"), f"model_path={model}", f"output_dir={tmp_path}/o"]) == 2
    assert f"{model / 'config.json'} is not valid JSON" in _one_line_error(capsys)


def test_an_output_dir_that_cannot_be_created_is_one_line(capsys):
    assert main(["pretrain", str(MICRO / "pretrain.yaml"), "output_dir=/proc/r1rl/run"]) == 2
    err = _one_line_error(capsys)
    assert "output_dir /proc/r1rl/run" in err and ("not writable" in err or "cannot create" in err)


def test_a_reader_that_goes_away_is_no_traceback():
    """``r1rl config ppo | head``: the pipe closes before the YAML is written; r1rl stops quietly."""
    cmd = f"{sys.executable} -m r1rl config ppo | true"
    res = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True)
    assert res.stderr == "" and res.returncode in (0, 141)  # 0 when it all fit in the pipe first
