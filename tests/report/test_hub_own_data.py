"""A pushed model trained on your own data with your own reward file: the card names the data as the task,
not the recipe's default task, and the repository carries the reward code the card links to."""

import json
import sys
from pathlib import Path

import pytest
import yaml

from r1rl.report.hub import push_run
from r1rl.tasks.arithmetic import ArithmeticTask

sys.path.insert(0, str(Path(__file__).parent))
from micro_pipeline import FAST, MICRO  # noqa: E402

REWARD = '''
def has_answer(prompts, completions, answer, **columns):
    """1.0 when the completion writes the answer."""
    return [float(str(a) in c) for c, a in zip(completions, answer)]
'''


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Path, Path]:
    from r1rl.config import PipelineConfig, load_config
    from r1rl.run import pipeline

    root = tmp_path_factory.mktemp("own")
    data = root / "sums.jsonl"
    rows = ArithmeticTask(min_operands=2, max_operands=2, digits=1, seed=0).records("train")[:60]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code = root / "code" / "my_rewards.py"
    code.parent.mkdir()
    code.write_text(REWARD)
    tiers = (
        "rewards.tiers=[{name: syntax, reward: arithmetic_syntax}, "
        f"{{name: task, reward: '{code}:has_answer'}}]"
    )
    over = [f"output_dir={root / 'run'}", f"data.path={data}", tiers, *FAST]
    pipeline.run(load_config(PipelineConfig, MICRO, over))
    return root / "run", data, code


def test_the_card_names_the_data_as_the_task_and_carries_the_reward_code(run, tmp_path):
    out, data, code = run
    ppo = yaml.safe_load((out / "ppo" / "config.yaml").read_text())
    assert ppo["task"] is None and ppo["data"]["name"] == "sums"  # not task: {name: arithmetic, ...}
    assert (out / "ppo" / "rewards" / "my_rewards.py").read_text() == REWARD  # the code the run used

    folder = tmp_path / "upload"
    push_run(out, "acme/sums-moe", dry_run=folder)
    assert (folder / "rewards" / "my_rewards.py").read_text() == REWARD
    card = (folder / "README.md").read_text()
    assert "Trained on `sums`, the rows of `sums.jsonl` (your own data)." in card
    assert "| task | [`rewards/my_rewards.py:has_answer`](rewards/my_rewards.py) |" in card
    assert "reward: rewards/my_rewards.py:has_answer" in card  # in each stage's config, too
    assert str(code) not in card and str(code.parent) not in card  # no path of the training machine
    assert "name: arithmetic" not in card
