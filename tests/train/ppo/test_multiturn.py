"""Multi-turn PPO on the micro model: the environment's tokens are context — no log-prob, KL, value or
advantage of theirs counts, GAE steps over them, and the update never trains on them."""

import copy
import dataclasses
import sys
import types
from pathlib import Path

import pytest
import torch
from r1rl.rewards.hierarchy import RewardHierarchy

from r1rl.algorithms import ppo
from r1rl.config import RewardsConfig
from r1rl.envs.base import Environment, Step
from r1rl.envs.episodes import EnvSpec
from r1rl.train.ppo.context import PPOContext
from r1rl.train.ppo.rollout import rollout
from r1rl.train.ppo.trainer import update

sys.path.insert(0, str(Path(__file__).parent))
from ppo_micro import TASK, micro_ac, micro_tokenizer  # noqa: E402
from test_trainer import _opts, _settings, _trainable  # noqa: E402

HIERARCHY = RewardHierarchy.from_config(RewardsConfig(tiers=TASK.rewards))
PROBLEMS = [p.record for p in TASK.problems("train", 2, seed=3)]


class AskTwice(Environment):
    """Answers the model's first turn with a user message, so every episode has environment tokens."""

    def reset(self, **row):
        self.asked = False

    def step(self, message):
        if self.asked:
            return Step(done=True)
        self.asked = True
        return Step([{"role": "user", "content": "again?"}], done=False, reward=1.0)


@pytest.fixture(scope="module")
def tokenizer():
    return micro_tokenizer()


def _rollout(tokenizer, estimator, **kw):
    torch.manual_seed(0)
    ac = micro_ac(tokenizer, critic=estimator == "gae")
    cfg = _settings(advantage_estimator=estimator, max_new_tokens=6, **kw)
    env = EnvSpec(factory=AskTwice, max_turns=2, max_tokens=40)
    # turns end at any digit or sign the untrained model writes, so the environment gets to answer
    task = types.SimpleNamespace(stop=tuple("0123456789+-=<>/"), system_prompt=None)
    ctx = PPOContext(ac, tokenizer, HIERARCHY, cfg, task=task, env=env)
    return ac, cfg, ctx, rollout(ctx, PROBLEMS, kl_coef=0.1)


@pytest.mark.parametrize("estimator", ["gae", "grpo", "rloo", "reinforce_pp", "remax"])
def test_environment_tokens_carry_nothing(tokenizer, estimator):
    _, _, _, ro = _rollout(tokenizer, estimator)
    real = ro.attention_mask[:, -ro.n_completion :].float()
    env = real * (1 - ro.mask)  # attended, not the model's
    assert env.sum() > 0 and ro.metrics["env/env_tokens"] > 0  # every episode had the environment speak
    for name in ("advantages", "returns", "values", "ref_logprobs"):
        assert getattr(ro, name)[env > 0].abs().sum() == 0, name
    if ro.old_logprobs is not None:
        assert ro.old_logprobs[env > 0].abs().sum() == 0
    assert ro.metrics["env/turns"] > 1.0  # episodes whose first turn ended (not cut) went on
    # the model's tokens after the environment's are real: it wrote on after "again?"
    spoke = [i for i in range(env.shape[0]) if env[i].sum() > 0]
    assert all(ro.mask[i, int(torch.nonzero(env[i]).max()) + 1 :].sum() > 0 for i in spoke)


def test_gae_steps_over_environment_tokens():
    """GAE on a row with a hole equals GAE on the row with the hole cut out (not zero-reward steps)."""
    torch.manual_seed(0)
    rewards, values = torch.randn(1, 7), torch.randn(1, 7)
    mask = torch.tensor([[1, 1, 0, 0, 1, 1, 0]])
    keep = mask[0].bool()
    adv, ret = ppo.gae(rewards, values, mask, gamma=0.9, gae_lambda=0.8)
    dense_adv, dense_ret = ppo.gae(rewards[:, keep], values[:, keep], torch.ones(1, 4), 0.9, 0.8)
    assert torch.allclose(adv[:, keep], dense_adv) and torch.allclose(ret[:, keep], dense_ret)
    assert adv[:, ~keep].abs().sum() == 0
    scores, kl = torch.tensor([2.0]), torch.zeros(1, 7)
    assert ppo.token_rewards(scores, kl, mask, 0.1)[0, 5] == 2.0  # the score lands on the last real token


def test_the_update_never_trains_on_environment_tokens(tokenizer):
    """Whatever the environment's positions hold — advantages, returns, log-probs, values — the update
    takes the same step: the loss, the KL and the value loss never read them."""
    ac, cfg, ctx, ro = _rollout(tokenizer, "gae", ppo_epochs=2, minibatch_size=4)
    env = ro.attention_mask[:, -ro.n_completion :].float() * (1 - ro.mask) > 0
    noisy = dataclasses.replace(ro, metrics=dict(ro.metrics))
    for name in ("advantages", "returns", "values", "ref_logprobs", "old_logprobs"):
        t = getattr(ro, name)
        if t is not None:  # any values (log-probs: any log-probabilities)
            noise = -torch.rand_like(t) * 10 if "logprobs" in name else torch.randn_like(t) * 100
            setattr(noisy, name, torch.where(env, noise, t))
    results = []
    for r in (ro, noisy):
        clone = copy.deepcopy(ac)
        update(
            PPOContext(clone, tokenizer, HIERARCHY, cfg),
            r,
            _opts(clone),
            torch.Generator().manual_seed(0),
            0.1,
        )
        results.append(_trainable(clone))
    moved = any(not torch.equal(results[0][k], _trainable(ac)[k]) for k in results[0])
    assert moved
    for k in results[0]:
        assert torch.equal(results[0][k], results[1][k]), k
