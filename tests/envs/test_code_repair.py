"""A multi-turn code-repair PPO run on real MBPP rows: every answer runs in the sandbox, a failing one
comes back with the tests' report, and the model's next turn is written after that report."""

import json

import pytest

from r1rl.config import EvalConfig, PPOConfig, validate
from r1rl.run.stages import STAGES


@pytest.fixture(scope="module")
def mbpp_dir():
    from r1rl.eval.data import default_data_dir

    folder = default_data_dir() / "mbpp"
    if not folder.is_dir():
        pytest.skip(f"mbpp data not found under {folder} (set R1RL_DATA_DIR)")
    return folder


def test_code_repair_turns_run_code_and_see_its_output(micro_pretrained, mbpp_dir, tmp_path):
    cfg = validate(
        PPOConfig,
        {
            "output_dir": str(tmp_path / "ppo"), "model_path": str(micro_pretrained), "threads": 1,
            "task": {"name": "mbpp", "chat_tools": True, "limit": 8, "eval_limit": 4},
            "lora": {"r": 4, "alpha": 8}, "steps": 2,
            "rollout": {"prompts_per_step": 2, "samples_per_prompt": 2, "max_new_tokens": 12},
            "optim": {"minibatch_size": 4, "ppo_epochs": 1},
            "env": {"environment": "python", "max_turns": 2, "max_tokens": 400},
        },
    )  # fmt: skip
    run = STAGES["ppo"](cfg)
    rows = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert all(r["env/programs_run"] > 0 for r in rows)  # every episode's answers ran in the sandbox
    assert all(r["env/turns"] == 2.0 and r["env/env_tokens"] > 0 for r in rows)
    logged = [json.loads(line) for line in (run.path / "rollouts.jsonl").read_text().splitlines()]
    for sample in logged[0]["samples"]:
        roles = [m["role"] for m in sample["episode"]]
        assert roles == ["assistant", "user", "assistant"]  # answer, the tests' report, the revision
        assert (
            "tests passed" in sample["episode"][1]["content"] or "no code" in sample["episode"][1]["content"]
        )
    assert (run.path / "final").is_dir()
    from r1rl.report.hub.upload import push_run

    dry = tmp_path / "dry"
    push_run(run.path, "acme/repair", dry_run=dry)  # the card a push would upload names the environment
    card = (dry / "README.md").read_text()
    assert "## Tools and environments" in card and "| ppo |  | `python` | 2 | 400 |" in card


def test_eval_runs_episodes(micro_pretrained, mbpp_dir, tmp_path):
    cfg = validate(
        EvalConfig,
        {
            "output_dir": str(tmp_path / "eval"), "model_path": str(micro_pretrained), "threads": 1,
            "task": {"name": "mbpp", "chat_tools": True, "limit": 4, "eval_limit": 3}, "max_new_tokens": 12,
            "env": {"environment": "python", "max_turns": 2, "max_tokens": 400},
        },
    )  # fmt: skip
    run = STAGES["eval"](cfg)
    result = json.loads((run.path / "eval_results.json").read_text())["tasks"]["mbpp"]
    assert result["n"] == 3 and result["env/turns"] == 2.0 and result["env/programs_run"] > 0
    samples = [json.loads(line) for line in (run.path / "samples.jsonl").read_text().splitlines()]
    assert [m["role"] for m in samples[0]["episode"]] == ["assistant", "user", "assistant"]
