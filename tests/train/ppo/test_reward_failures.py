"""A reward that fails is loud, in PPO and in eval: a broken contract stops the run on its first call, a
tier that fails on every sample stops it after ``rewards.max_failed_steps`` steps; one that fails on
some samples only trains on."""

import json
from pathlib import Path

import pytest

from r1rl.run.cli import main

MICRO = Path(__file__).parents[3] / "recipes" / "configs" / "micro"

REWARDS = """
from r1rl.rewards import reward_error


def one_too_few(prompts, completions, **columns):
    return [1.0] * (len(completions) - 1)


def not_a_number(prompts, completions, **columns):
    return ["1.0"] * len(completions)


def raises(prompts, completions, answer, **columns):
    return [len(c) / (answer[i] - answer[i]) for i, c in enumerate(completions)]


def every_other(prompts, completions, **columns):
    return [reward_error("judge said no") if i % 2 else 1.0 for i in range(len(completions))]
"""


@pytest.fixture
def rewards_file(tmp_path):
    path = tmp_path / "my_rewards.py"
    path.write_text(REWARDS)
    return path


def run_cli(stage, micro_pretrained, out, reward, *more):
    tiers = f"rewards.tiers=[{{name: syntax, reward: arithmetic_syntax}}, {{name: task, reward: '{reward}'}}]"
    over = [f"output_dir={out}", f"model_path={micro_pretrained}", tiers, *more]
    return main([stage, str(MICRO / f"{stage}.yaml"), *over])


def error_line(capsys) -> str:
    """The one ``r1rl: error:`` line; it is the last thing on stderr (after progress bars and warnings)."""
    err = capsys.readouterr().err.strip()
    errors = [line for line in err.splitlines() if "r1rl: error:" in line]
    assert len(errors) == 1 and err.endswith(errors[0]), err
    return errors[0].split("r1rl: error: ", 1)[1]


@pytest.mark.parametrize(
    "fn,says",
    [
        ("one_too_few", "returned 7 scores for 8 completions"),
        ("not_a_number", "returned '1.0' for sample 0"),
    ],
)
def test_a_broken_contract_stops_ppo_on_its_first_call(
    micro_pretrained, tmp_path, rewards_file, capsys, fn, says
):
    out = tmp_path / "ppo"
    assert run_cli("ppo", micro_pretrained, out, f"{rewards_file}:{fn}", "steps=3") == 2
    msg = error_line(capsys)
    assert msg.startswith(f"reward {fn!r} in tier 'task' {says}; a reward function returns")
    assert (out / "config.yaml").is_file() and not (out / "final").exists()
    assert not (out / "metrics.jsonl").exists() or not (out / "metrics.jsonl").read_text().strip()


def test_a_tier_failing_everywhere_stops_ppo(micro_pretrained, tmp_path, rewards_file, capsys):
    out = tmp_path / "ppo"
    more = ("steps=6", "rewards.max_failed_steps=2", "checkpoint.every=1")
    assert run_cli("ppo", micro_pretrained, out, f"{rewards_file}:raises", *more) == 2
    log = out / "reward_errors.log"
    assert error_line(capsys) == (
        "reward 'raises' (tier 'task') failed on every sample for 2 steps in a row "
        "(rewards.max_failed_steps=2); "
        f"first: raised ZeroDivisionError: division by zero; traceback in {log}"
    )
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "len(c) / (answer[i] - answer[i])" in text
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1]  # the second all-failed step stopped the run before its row
    assert rows[0]["reward/tier/task/errors"] == 8
    assert not (out / "final").exists()


def test_a_tier_failing_on_some_samples_trains_to_the_end(micro_pretrained, tmp_path, rewards_file, capsys):
    out = tmp_path / "ppo"
    assert run_cli("ppo", micro_pretrained, out, f"{rewards_file}:every_other", "steps=2") == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["reward/tier/task/errors"] for r in rows] == [4, 4]
    assert (out / "final").is_dir() and not (out / "reward_errors.log").exists()
    assert "reward_errors=4" in capsys.readouterr().err  # on the progress bar


def test_eval_is_as_loud(micro_pretrained, tmp_path, rewards_file, capsys):
    assert run_cli("eval", micro_pretrained, tmp_path / "e1", f"{rewards_file}:one_too_few") == 2
    assert error_line(capsys).startswith("reward 'one_too_few' in tier 'task' returned 15 scores for 16")
    out = tmp_path / "e2"
    assert run_cli("eval", micro_pretrained, out, f"{rewards_file}:raises") == 2
    msg = error_line(capsys)
    assert msg.startswith(
        "reward 'raises' (tier 'task') failed on every one of the 16 held-out samples; first"
    )
    assert msg.endswith(f"traceback in {out / 'reward_errors.log'}")
    assert not (out / "eval_results.json").exists()
    # the reward fixed, the same command goes through and leaves no stale log behind
    rewards_file.write_text(REWARDS.replace("def raises", "def broken") + "\nraises = every_other\n")
    assert run_cli("eval", micro_pretrained, out, f"{rewards_file}:raises") == 0
    results = json.loads((out / "eval_results.json").read_text())
    assert results["tasks"]["arithmetic"]["tier/task/errors"] == 8
    assert not (out / "reward_errors.log").exists()
    assert "reward_errors=8" in capsys.readouterr().err  # on the progress bar
