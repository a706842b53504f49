"""Fuzzing the config loader and the CLI: random bytes, random YAML and random override strings are
either accepted or refused in one line (exit status 2) — never a traceback. Seeded, a few seconds."""

import random
import string
from pathlib import Path

import pytest
import yaml

from r1rl.config import EvalConfig, PipelineConfig, PPOConfig, PretrainConfig, SFTConfig, load_config
from r1rl.errors import UserError
from r1rl.run.cli import main

MICRO = Path(__file__).parents[2] / "recipes" / "configs" / "micro"
TYPES = [PretrainConfig, SFTConfig, PPOConfig, EvalConfig, PipelineConfig]
KEYS = [
    "output_dir", "model_path", "steps", "seed", "task", "task.name", "task.digits", "data", "data.path",
    "rollout.temperature", "optim.lr", "algorithm.kl_coef", "rewards.tiers", "rewards.mode", "log.every",
    "ppo.kl_coef", "train.lr", "lora.r", "moe.routing_replay", "data.eval_fraction", "a.b.c", "",
]  # fmt: skip
VALUES = [
    "1", "-1", "0", "1e-3", "inf", "nan", "null", "[]", "{}", "[1, 2", "x", "'", "{a: [b]}", "true",
    "gsm8k", "mbpp", "1e400", "0x10", "~", "{name: arithmetic, digits: 9}", "[{name: t, reward: x}]",
]  # fmt: skip


def _random_yaml(rng: random.Random, depth: int = 0):
    kind = rng.randrange(6 if depth < 3 else 3)
    if kind == 0:
        return rng.choice([None, True, 0, -3, 2.5, float("inf"), "", "runs/x", "arithmetic"])
    if kind == 1:
        return "".join(rng.choice(string.printable) for _ in range(rng.randrange(12)))
    if kind == 2:
        return rng.randrange(-(10**6), 10**6)
    if kind == 3:
        return [_random_yaml(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = KEYS + ["".join(rng.choice(string.ascii_lowercase) for _ in range(4))]
    return {
        rng.choice(keys).split(".")[0] or "k": _random_yaml(rng, depth + 1) for _ in range(rng.randrange(5))
    }


def _random_override(rng: random.Random) -> str:
    if rng.random() < 0.2:
        return "".join(rng.choice(string.printable) for _ in range(rng.randrange(20)))
    return f"{rng.choice(KEYS)}={rng.choice(VALUES)}"


def test_the_config_loader_takes_or_refuses_anything(tmp_path):
    rng = random.Random(0)
    path = tmp_path / "c.yaml"
    outcomes = {"ok": 0, "refused": 0}
    for i in range(300):
        if i % 3 == 0:
            path.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randrange(200))))
        else:
            path.write_text(yaml.safe_dump(_random_yaml(rng), allow_unicode=True))
        overrides = [_random_override(rng) for _ in range(rng.randrange(3))]
        try:
            load_config(rng.choice(TYPES), path, overrides)
            outcomes["ok"] += 1
        except UserError as e:
            assert "\n" not in str(e) and str(e), repr(e)
            outcomes["refused"] += 1
    assert outcomes["refused"] > 200  # most random input is wrong, and every refusal was a UserError


@pytest.mark.parametrize("stage", ["sft", "ppo", "eval", "pretrain"])
def test_the_cli_never_shows_a_traceback(capsys, tmp_path, stage):
    rng = random.Random(stage)
    for _ in range(40):
        overrides = [_random_override(rng) for _ in range(rng.randrange(1, 4))]
        # what could train stops first: an absent model, or (pretrain) an invalid step count
        stopper = ["steps=0"] if stage == "pretrain" else [f"model_path={tmp_path}/absent"]
        try:
            code = main(
                [stage, str(MICRO / f"{stage}.yaml"), *overrides, f"output_dir={tmp_path}/o", *stopper]
            )
        except (
            SystemExit
        ) as e:  # argparse's own refusal (an override that looks like an option): usage + error
            code, err = e.code, capsys.readouterr().err
            assert code == 2 and err.splitlines()[-1].startswith("r1rl: error: "), err
            continue
        err = capsys.readouterr().err
        assert code == 2, (overrides, err)
        assert "Traceback" not in err and err.startswith("r1rl: error: ") and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()
