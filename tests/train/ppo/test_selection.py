"""Prompt selection: the curriculum by pass rate, replay of failed prompts, dynamic sampling."""

import io
import sys
from pathlib import Path

import pytest
import torch
from r1rl.rewards.hierarchy import RewardHierarchy, Tier

from r1rl.config import PPOSettings, RewardsConfig
from r1rl.models.generation import concat_generations, take_generation
from r1rl.rundir import RunDir
from r1rl.tasks.sampler import EpochSampler
from r1rl.train.ppo.context import PPOContext
from r1rl.train.ppo.rollout import sample
from r1rl.train.ppo.selection import PromptSelector, SelectionSettings, keep_probability
from r1rl.train.ppo.trainer import PPOState, collect, train_ppo

sys.path.insert(0, str(Path(__file__).parent))
from ppo_micro import TASK, micro_ac, micro_tokenizer  # noqa: E402


def test_without_options_the_selector_draws_the_epoch_samplers_batches():
    selector, sampler = PromptSelector(50, 8, seed=3), EpochSampler(50, 8, seed=3)
    for _ in range(20):  # several epochs
        assert selector.next() == sampler.next()
        selector.observe([0, 1], [0.0, 1.0])  # statistics are kept but change nothing
    assert selector.metrics() == {}


def test_replay_brings_a_failed_prompt_back_until_it_passes_or_runs_out_of_visits():
    s = PromptSelector(100, 4, seed=0, settings=SelectionSettings(replay_fraction=0.5, replay_max_visits=2))
    first = s.next()
    s.observe(first, [0.0, 0.25, 0.5, 1.0])  # two below the 0.5 threshold
    again = s.next()
    assert again[:2] == first[:2] and len(set(again)) == 4
    s.observe(again, [1.0, 0.0, 0.5, 0.5])  # the first now passes and leaves; the second fails again
    assert list(s.buffer) == [first[1]] and s.buffer[first[1]] == 1
    third = s.next()
    assert third[0] == first[1] and len(third) == 4
    s.observe(third, [0.0, 1.0, 1.0, 1.0])  # its second replay fails too: given up (max 2 visits)
    assert first[1] not in s.buffer
    assert s.metrics()["selection/replayed"] == 1.0


def test_replay_buffer_keeps_its_newest_failures_within_capacity():
    s = PromptSelector(100, 10, seed=0, settings=SelectionSettings(replay_fraction=0.2, replay_capacity=3))
    batch = s.next()
    s.observe(batch, [0.0] * 10)
    assert list(s.buffer) == batch[-3:]


def test_curriculum_draws_always_and_never_solved_prompts_less():
    s = PromptSelector(40, 8, seed=1, settings=SelectionSettings(curriculum_floor=0.1))
    for i in range(
        40
    ):  # every prompt seen once: half always solved, a quarter never, a quarter half the time
        s.observe([i], [1.0 if i < 20 else 0.0 if i < 30 else 0.5])
    drawn = [i for _ in range(100) for i in s.next()]
    easy = sum(i < 20 for i in drawn) / 20
    hard = sum(20 <= i < 30 for i in drawn) / 10
    mid = sum(i >= 30 for i in drawn) / 10
    assert mid > 5 * easy and mid > 5 * hard  # kept with probability 1 against 0.1
    assert s.metrics()["selection/always_solved"] == 0.5 and s.metrics()["selection/never_solved"] == 0.25
    assert keep_probability(0.5, 0.1) == 1.0 and keep_probability(0.25, 0.1) == 0.75


def test_a_resumed_selector_draws_what_an_uninterrupted_one_would():
    settings = SelectionSettings(curriculum_floor=0.2, replay_fraction=0.25)
    a, b = PromptSelector(30, 4, seed=2, settings=settings), PromptSelector(30, 4, seed=2, settings=settings)
    rng = torch.Generator().manual_seed(0)

    def step(s, rates):
        batch = s.next()
        s.observe(batch, rates)
        return batch

    rates = [[float(x) for x in torch.randint(0, 5, (4,), generator=rng) / 4] for _ in range(40)]
    straight = [step(a, r) for r in rates]
    resumed = [step(b, r) for r in rates[:15]]
    c = PromptSelector(30, 4, seed=99, settings=settings)  # another seed: everything comes from the state
    buffer = io.BytesIO()
    torch.save(b.state_dict(), buffer)  # as a checkpoint holds it
    buffer.seek(0)
    c.load_state_dict(torch.load(buffer, weights_only=False))
    resumed += [step(c, r) for r in rates[15:]]
    assert resumed == straight


def test_concat_generations_then_take_is_the_original_rows():
    tok = micro_tokenizer()
    ac = micro_ac(tok, critic=False)
    cfg = PPOSettings(rollout={"prompts_per_step": 2, "samples_per_prompt": 2, "max_new_tokens": 8})
    hierarchy = RewardHierarchy.from_config(RewardsConfig(tiers=TASK.rewards))
    from r1rl.train.ppo.engines import GenerateEngine

    recs = [p.record for p in TASK.problems("train", 3, seed=5)]
    ctx = PPOContext(ac, tok, hierarchy, cfg, task=TASK, engine=GenerateEngine(ac.generation_model, tok))
    a = sample(ctx, recs[:2])
    b = sample(ctx, [dict(recs[2], prompt="(" + recs[2]["prompt"])])
    g = concat_generations([a.generation, b.generation], tok.pad_token_id)
    assert g.completion_ids.shape[0] == 6 and g.texts == a.generation.texts + b.generation.texts
    back = take_generation(g, [4, 5])
    n_prompt, n_comp = int(b.generation.prompt_mask.sum()), int(b.generation.completion_mask.sum())
    assert int(back.prompt_mask.sum()) == n_prompt and int(back.completion_mask.sum()) == n_comp
    real = back.completion_ids[back.completion_mask.bool()]
    assert torch.equal(real, b.generation.completion_ids[b.generation.completion_mask.bool()])


def _agree_on_even_prompts(prompts, completions, answer, **columns):
    """Rewards that vary within the groups of odd answers only."""
    return [float(len(c) % 2) if a % 2 else 1.0 for c, a in zip(completions, answer)]


@pytest.mark.parametrize("rounds", [1, 3])
def test_dynamic_sampling_trains_on_varying_groups_and_counts_every_completion(tmp_path, rounds):
    tok = micro_tokenizer()
    ac = micro_ac(tok, critic=False)
    hierarchy = RewardHierarchy([Tier("task", _agree_on_even_prompts, threshold=1.0)])
    pool = [p.record for p in TASK.problems("train", 40, seed=1)]
    cfg = PPOSettings(
        steps=3,
        rollout={"prompts_per_step": 4, "samples_per_prompt": 2, "max_new_tokens": 8,
                 "dynamic_sampling": True, "sampling_rounds": rounds},
        algorithm={"advantage_estimator": "grpo"},
        optim={"ppo_epochs": 1, "minibatch_size": 8},
    )  # fmt: skip
    run = RunDir(tmp_path / "ppo").start(cfg)
    train_ppo(PPOContext(ac, tok, hierarchy, cfg, run=run), pool, seed=0)
    rows = run.read_metrics()
    assert [r["rollout/generated"] for r in rows] == [sum(8 * x["rollout/rounds"] for x in rows[: i + 1])
                                                      for i in range(3)]  # fmt: skip
    assert any(0 < r["rollout/zero_variance"] < 1 for r in rows)
    for r in rows:
        varying = round((1 - r["rollout/zero_variance"]) * 4 * r["rollout/rounds"])
        # the varying groups up to the batch's 4, or every group of a step where none varied
        assert r["rollout/groups_kept"] == (min(varying, 4) if varying else 4)
    if rounds == 1:
        assert all(r["rollout/rounds"] == 1 for r in rows)
    else:
        assert any(r["rollout/rounds"] > 1 for r in rows)
    # the kept groups are exactly the varying ones: a fresh collect on the same state shows it
    state = PPOState(ac, cfg, 0, len(pool), hierarchy)
    from r1rl.train.ppo.engines import GenerateEngine

    engine = GenerateEngine(ac.generation_model, tok)
    ctx = PPOContext(ac, tok, hierarchy, cfg, task=TASK, engine=engine, state=state)
    seen = 0
    for _ in range(4):
        kept, metrics = collect(ctx, pool)
        assert len(kept.batch) == metrics["rollout/groups_kept"]
        if metrics["rollout/zero_variance"] < 1:
            assert all(kept.group_varies())
            seen += 1
    assert seen


def test_max_samples_ends_the_run_once_the_budget_is_spent(tmp_path):
    tok = micro_tokenizer()
    ac = micro_ac(tok, critic=False)
    hierarchy = RewardHierarchy.from_config(RewardsConfig(tiers=TASK.rewards))
    pool = [p.record for p in TASK.problems("train", 40, seed=1)]
    cfg = PPOSettings(
        steps=10,
        rollout={"prompts_per_step": 2, "samples_per_prompt": 2, "max_new_tokens": 8, "max_samples": 10},
        algorithm={"advantage_estimator": "grpo"},
        optim={"ppo_epochs": 1, "minibatch_size": 4},
    )  # fmt: skip
    run = RunDir(tmp_path / "ppo").start(cfg)
    train_ppo(PPOContext(ac, tok, hierarchy, cfg, run=run), pool, seed=0)
    rows = run.read_metrics()
    assert [r["step"] for r in rows] == [1, 2, 3] and rows[-1]["rollout/generated"] == 12
    assert rows[-1]["policy/update_norm"] > 0
