"""RL learns: on a task where the SFT model's usual answer is wrong but its samples are often right,
PPO must raise held-out greedy accuracy by a pinned margin, and must not with the advantages' sign
flipped (so the margin is RL's, not the pipeline's).

The task: the prompt is three digits, the answer the letter of the last one (``4 0 7`` → ``h``). The
training rows' answers are right 35% of the time and the *next* letter 50% of the time, so SFT
learns to say the next letter: greedy held-out accuracy ~10%, sampled ~30%. A reward that checks
the letter is all RL has; the held-out prompts are 200 digit strings no training row holds.
"""

import json
import random
from pathlib import Path

import pytest

from r1rl.config import EvalConfig, PPOConfig, PretrainConfig, SFTConfig, load_config
from r1rl.run.stages import STAGES
from r1rl.train.ppo import rollout

MICRO = Path(__file__).parents[3] / "recipes" / "configs" / "micro"
LETTERS = "abcdefghij"
REWARD = """
def right_letter(prompts, completions, answer, **columns):
    return [float(c.strip()[:1] == a) for c, a in zip(completions, answer)]
"""


def _rows(prompts: list[str], rng: random.Random, noisy: bool) -> list[dict]:
    rows = []
    for p in prompts:
        d = int(p.split()[-1])
        u = rng.random() if noisy else 0.0
        wrong = [x for x in range(10) if x not in (d, (d + 1) % 10)]
        y = d if u < 0.35 else (d + 1) % 10 if u < 0.85 else rng.choice(wrong)
        rows.append({"prompt": p, "completion": f" {LETTERS[y]}", "answer": LETTERS[d]})
    return rows


class Letters:
    """The task's files and the overrides every stage takes to train on them."""

    def __init__(self, root: Path) -> None:
        rng = random.Random(0)
        prompts = [f"{a} {b} {c}" for a in range(10) for b in range(10) for c in range(10)]
        rng.shuffle(prompts)
        (root / "data").mkdir()
        for split, part, noisy in (("train", prompts[:800], True), ("test", prompts[800:], False)):
            rows = _rows(part, rng, noisy)
            (root / "data" / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (root / "reward.py").write_text(REWARD)
        self.root = root
        self.data = [f"data.path={root / 'data'}", "data.eval_split=test"]
        self.rewards = f"rewards={{tiers: [{{name: task, reward: '{root / 'reward.py'}:right_letter'}}]}}"

    def stage(self, cls, name: str, out: str, *over: str):
        args = [f"output_dir={self.root / out}", *self.data, *over]
        return STAGES[name](load_config(cls, MICRO / f"{name}.yaml", args))

    def accuracy(self, model: Path, out: str) -> float:
        ev = self.stage(
            EvalConfig,
            "eval",
            out,
            f"model_path={model}",
            "num_examples=200",
            "max_new_tokens=4",
            self.rewards,
        )
        return json.loads(ev.eval_results.read_text())["tasks"]["data"]["accuracy"]

    def ppo(self, model: Path, out: str, estimator: str) -> Path:
        over = ["steps=30", "rollout.prompts_per_step=16", "rollout.samples_per_prompt=8"]
        over += ["rollout.max_new_tokens=4", "optim.minibatch_size=128", "optim.lr=3e-3"]
        over += [f"algorithm.advantage_estimator={estimator}", self.rewards]
        return self.stage(PPOConfig, "ppo", out, f"model_path={model}", *over).final


@pytest.fixture(scope="module")
def letters(tmp_path_factory):
    """The task and its SFT model (pretrained and fine-tuned on the noisy rows) with its accuracy."""
    task = Letters(tmp_path_factory.mktemp("letters"))
    pre = task.stage(PretrainConfig, "pretrain", "pre", "steps=300", "batch_size=16", "optim.lr=3e-3")
    sft_over = [
        "num_examples=800",
        "steps=150",
        "batch_size=32",
        "optim.lr=1e-2",
        "lora.r=8",
        "lora.alpha=16",
    ]
    sft = task.stage(SFTConfig, "sft", "sft", f"model_path={pre.final}", *sft_over)
    return task, sft.final, task.accuracy(sft.final, "eval-sft")


@pytest.mark.parametrize("estimator", ["grpo", "gae"])
def test_ppo_raises_held_out_accuracy_by_a_pinned_margin(letters, estimator):
    task, sft, before = letters
    assert before < 0.3  # the SFT model mostly says the next letter
    after = task.accuracy(task.ppo(sft, estimator, estimator), f"eval-{estimator}")
    assert after >= before + 0.4, (before, after)


def test_with_the_advantages_sign_flipped_accuracy_does_not_rise(letters, monkeypatch):
    task, sft, before = letters
    grpo = rollout.ESTIMATORS["grpo"]

    def flipped(*args):
        advantages, returns = grpo(*args)
        return -advantages, returns

    monkeypatch.setitem(rollout.ESTIMATORS._items, "grpo", flipped)
    after = task.accuracy(task.ppo(sft, "flipped", "grpo"), "eval-flipped")
    assert after <= before + 0.05, (before, after)
