"""The PPO loop on a micro model: estimators, gradient accumulation, KL placement and guards."""

import copy
import json
import sys
from pathlib import Path

import pytest
import torch
from r1rl.rewards.hierarchy import RewardHierarchy, Tier

from r1rl.algorithms.ppo import group_advantages, kl_penalty
from r1rl.config import LoraConfigModel, PPOSettings, RewardsConfig
from r1rl.config.sections import PPO_MOVED
from r1rl.models.factory import build_config, build_model
from r1rl.rundir import RunDir
from r1rl.train.ppo.context import PPOContext
from r1rl.train.ppo.roles import ActorCritic
from r1rl.train.ppo.rollout import rollout
from r1rl.train.ppo.trainer import NonFiniteError, train_ppo, update

sys.path.insert(0, str(Path(__file__).parent))
from ppo_micro import TASK, micro_ac, micro_tokenizer  # noqa: E402


@pytest.fixture(scope="module")
def tokenizer():
    return micro_tokenizer()


def _ac(tokenizer, critic=True):
    return micro_ac(tokenizer, critic)


def _settings(**kw):
    """PPOSettings from option names (each put in its section: kl_coef -> algorithm.kl_coef)."""
    base = dict(prompts_per_step=2, samples_per_prompt=4, max_new_tokens=12, minibatch_size=8, ppo_epochs=1)
    nested: dict = {}
    for key, value in {**base, **kw}.items():
        *sections, name = PPO_MOVED[f"ppo.{key}"].split(".")
        node = nested
        for section in sections:
            node = node.setdefault(section, {})
        node[name] = value
    return PPOSettings.model_validate(nested)


HIERARCHY = RewardHierarchy.from_config(RewardsConfig(tiers=TASK.rewards))
PROBLEMS = [p.record for p in TASK.problems("train", 2, seed=3)]


def _opts(ac, lr=1e-2):
    opts = {"policy": torch.optim.SGD(ac.adapter_parameters("policy"), lr=lr)}
    if ac.has_critic:
        opts["critic"] = torch.optim.SGD(ac.adapter_parameters("critic"), lr=lr)
    return opts


def _trainable(ac):
    return {n: p.detach().clone() for n, p in ac.named_parameters() if "lora_" in n or "value_head" in n}


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean"])
def test_gradient_accumulation_matches_one_big_batch(tokenizer, agg):
    torch.manual_seed(0)
    ac = _ac(tokenizer)
    ro = rollout(PPOContext(ac, tokenizer, HIERARCHY, _settings()), PROBLEMS, kl_coef=0.05)
    results = []
    for micro in (None, 3):
        clone = copy.deepcopy(ac)
        cfg = _settings(micro_batch_size=micro, loss_agg_mode=agg)
        update(
            PPOContext(clone, tokenizer, HIERARCHY, cfg),
            ro,
            _opts(clone),
            torch.Generator().manual_seed(0),
            kl_coef=0.05,
        )
        results.append(_trainable(clone))
    before = _trainable(ac)
    assert any(not torch.equal(before[k], results[0][k]) for k in before)  # the step did something
    for k in results[0]:
        assert torch.allclose(results[0][k], results[1][k], atol=1e-6), k


@pytest.mark.parametrize("estimator", ["grpo", "rloo", "reinforce_pp"])
def test_critic_free_estimators_run_without_a_critic(tokenizer, estimator):
    torch.manual_seed(0)
    ac = _ac(tokenizer, critic=False)
    assert not ac.has_critic and not any("critic" in n for n, _ in ac.named_parameters())
    cfg = _settings(advantage_estimator=estimator)
    ro = rollout(PPOContext(ac, tokenizer, HIERARCHY, cfg), PROBLEMS, kl_coef=0.05)
    if estimator != "reinforce_pp":  # one advantage per sequence, centred within each prompt's group
        seq = ro.advantages.sum(1) / ro.mask.sum(1).clamp_min(1)
        assert seq.view(2, 4).sum(1).abs().max().item() < 1e-4
        assert torch.allclose(ro.advantages, seq[:, None] * ro.mask, atol=1e-6)
    stats = update(
        PPOContext(ac, tokenizer, HIERARCHY, cfg),
        ro,
        _opts(ac),
        torch.Generator().manual_seed(0),
        kl_coef=0.05,
    )
    assert "value/loss" not in stats and stats["skipped_updates"] == 0


def test_remax_baseline_is_the_greedy_completions_reward(tokenizer):
    from r1rl.models.encoding import encode_prompts
    from r1rl.models.generation import generate

    torch.manual_seed(0)
    ac = _ac(tokenizer, critic=False)
    cfg = _settings(advantage_estimator="remax", kl_coef=0.0)
    spread = RewardHierarchy(
        [Tier("spread", lambda prompts, completions, **kw: [len(c) % 5 / 4 for c in completions])]
    )
    ro = rollout(PPOContext(ac, tokenizer, spread, cfg), PROBLEMS, kl_coef=0.0)
    prompts = [r["prompt"] for r in PROBLEMS]
    greedy = generate(ac.generation_model, tokenizer, encode_prompts(tokenizer, prompts), max_new_tokens=12,
                      do_sample=False)  # fmt: skip
    baseline = spread(prompts, greedy.texts).rewards
    expected = ro.scores - torch.tensor(baseline).repeat_interleave(
        4
    )  # (B,) sample minus its prompt's greedy
    seq = ro.advantages.sum(1) / ro.mask.sum(1)
    assert torch.allclose(seq, expected, atol=1e-6) and torch.allclose(ro.advantages, seq[:, None] * ro.mask)
    assert seq.abs().sum() > 0  # some sample differs from greedy decoding's reward


def test_kl_as_loss_term_is_logged_and_not_in_the_reward(tokenizer):
    torch.manual_seed(0)
    ac = _ac(tokenizer)
    cfg = _settings(kl_in="loss", kl_estimator="k3", advantage_estimator="grpo", whiten_advantages=False)
    ro = rollout(PPOContext(ac, tokenizer, HIERARCHY, cfg), PROBLEMS, kl_coef=0.5)

    # the advantages come from the scores alone: no KL folded into the reward
    assert torch.allclose(ro.advantages, group_advantages(ro.scores, 4)[:, None] * ro.mask, atol=1e-6)
    stats = update(
        PPOContext(ac, tokenizer, HIERARCHY, cfg),
        ro,
        _opts(ac),
        torch.Generator().manual_seed(0),
        kl_coef=0.5,
    )
    assert stats["kl_loss"] > 0 and ro.metrics["kl"] > 0


def test_non_finite_loss_skips_steps_then_halts_with_finite_checkpoints(tokenizer, tmp_path):
    torch.manual_seed(0)
    ac = _ac(tokenizer)
    run = RunDir(tmp_path / "ppo").start(_settings())
    cfg = _settings(steps=6, checkpoint_every=1, max_consecutive_skips=2)
    pool = [p.record for p in TASK.problems("train", 20, seed=1)]
    train_ppo(
        PPOContext(ac, tokenizer, HIERARCHY, cfg.model_copy(update={"steps": 2}), run=run), pool, seed=0
    )
    # from now on every forward pass with gradients (the update's) yields NaN logits
    head = ac.peft.get_base_model().lm_head
    head.register_forward_hook(lambda m, i, out: out * float("nan") if torch.is_grad_enabled() else out)
    with pytest.raises(NonFiniteError, match="2 steps in a row"):
        train_ppo(PPOContext(ac, tokenizer, HIERARCHY, cfg, run=run), pool, seed=0)
    rows = [json.loads(line) for line in run.metrics.read_text().splitlines()]
    assert rows[-1]["skipped_steps"] == 1 and rows[-1]["skipped_updates"] > 0
    for ckpt in run.checkpoints.iterdir():
        state = torch.load(ckpt / "state.pt", weights_only=False)
        assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_gradient_checkpointing_gives_the_same_update(tokenizer):
    torch.manual_seed(0)
    ac = _ac(tokenizer)
    ro = rollout(PPOContext(ac, tokenizer, HIERARCHY, _settings()), PROBLEMS, kl_coef=0.05)
    results, calls = [], []
    for checkpointing in (False, True):
        clone = copy.deepcopy(ac)
        if checkpointing:
            clone.enable_gradient_checkpointing()
        norm = clone.peft.get_base_model().model.layers[0].input_layernorm  # inside the checkpointed forward
        n = [0]
        norm.register_forward_hook(lambda *a, n=n: n.__setitem__(0, n[0] + 1))
        update(
            PPOContext(clone, tokenizer, HIERARCHY, _settings()),
            ro,
            _opts(clone),
            torch.Generator().manual_seed(0),
            kl_coef=0.05,
        )
        results.append(_trainable(clone))
        calls.append(n[0])
    assert calls[1] > calls[0]  # activations were recomputed in the backward pass
    for k in results[0]:
        assert torch.allclose(results[0][k], results[1][k], atol=1e-6), k


def test_bf16_autocast_rollout_and_update(tokenizer):
    torch.manual_seed(0)
    ac = _ac(tokenizer)
    ac.autocast_dtype = torch.bfloat16
    with ac.autocast():
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
    ro = rollout(PPOContext(ac, tokenizer, HIERARCHY, _settings()), PROBLEMS, kl_coef=0.05)
    assert ro.old_logprobs.dtype == torch.float32 and torch.isfinite(ro.old_logprobs).all()
    stats = update(
        PPOContext(ac, tokenizer, HIERARCHY, _settings()),
        ro,
        _opts(ac),
        torch.Generator().manual_seed(0),
        kl_coef=0.05,
    )
    assert stats["skipped_updates"] == 0


def test_full_parameter_mode_trains_policy_and_critic_not_the_reference(tokenizer, tmp_path):
    from r1rl.train.ppo.roles import FullActorCritic

    torch.manual_seed(0)
    cfg = build_config(
        "micro", len(tokenizer), pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id
    )
    ac = FullActorCritic(build_model(cfg, seed=0))
    ac.autocast_dtype = torch.bfloat16  # the shared autocast context works for this layout too
    with ac.autocast():
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
    ac.autocast_dtype = None
    ref_before = {k: v.clone() for k, v in ac.reference.state_dict().items()}
    policy_before = {k: v.clone() for k, v in ac.policy.state_dict().items()}
    assert not any(k.startswith("reference.") for k in ac.trainable_state())
    run = RunDir(tmp_path / "ppo").start(_settings())
    settings = _settings(steps=3, checkpoint_every=1, kl_coef=0.1)
    spread = RewardHierarchy(
        [Tier("length", lambda prompts, completions, **kw: [len(c) % 3 for c in completions])]
    )
    train_ppo(
        PPOContext(ac, tokenizer, spread, settings, run=run),
        [p.record for p in TASK.problems("train", 20, seed=1)],
        seed=0,
    )
    assert all(torch.equal(v, ac.reference.state_dict()[k]) for k, v in ref_before.items())
    assert any(not torch.equal(v, ac.policy.state_dict()[k]) for k, v in policy_before.items())
    rows = run.read_metrics()
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-6) and rows[-1]["kl"] != 0.0
    state = torch.load(sorted(run.checkpoints.iterdir())[-1] / "state.pt", weights_only=False)
    assert any(k.startswith("critic_body.") for k in state["model"])


def test_separate_critic_model_is_trained_in_full(tokenizer):
    torch.manual_seed(0)
    cfg = build_config(
        "micro", len(tokenizer), pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id
    )
    small = build_config(
        "micro", len(tokenizer), pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        overrides={"hidden_size": 16, "num_hidden_layers": 1, "head_dim": 8},
    )  # fmt: skip
    ac = ActorCritic(
        build_model(cfg, seed=0), LoraConfigModel(r=4, alpha=8), critic_model=build_model(small, 1)
    )
    assert not any(".critic." in n for n, _ in ac.peft.named_parameters())  # no critic adapter on the base
    assert any(k.startswith("critic_body.") for k in ac.trainable_state())
    before = {k: v.clone() for k, v in ac.critic_body.state_dict().items()}
    ro = rollout(PPOContext(ac, tokenizer, HIERARCHY, _settings()), PROBLEMS, kl_coef=0.05)
    ro.returns = torch.randn_like(ro.returns) * ro.mask  # a target the critic must move towards
    # two optimizer steps: the zero-initialised value head passes gradient to the body from the second
    update(
        PPOContext(ac, tokenizer, HIERARCHY, _settings(minibatch_size=4)),
        ro,
        _opts(ac),
        torch.Generator().manual_seed(0),
        kl_coef=0.05,
    )
    assert any(not torch.equal(v, ac.critic_body.state_dict()[k]) for k, v in before.items())
    wrong_vocab = build_config("micro", len(tokenizer) + 5, pad_token_id=0, eos_token_id=1)
    with pytest.raises(ValueError, match="share a tokenizer"):
        ActorCritic(
            build_model(cfg, seed=0), LoraConfigModel(r=4, alpha=8), critic_model=build_model(wrong_vocab, 1)
        )


def test_scheduled_rewards_follow_the_training_step(tokenizer, tmp_path):
    from r1rl.config import RewardsConfig as RC

    rewards = RC(
        mode="scheduled", schedule_start=0, schedule_end=2,
        tiers=[{"name": "syntax", "reward": "arithmetic_syntax", "weight": 1.0, "weight_end": 0.0},
               {"name": "task", "reward": "arithmetic_task", "weight": 0.0, "weight_end": 1.0}],
    )  # fmt: skip
    hierarchy = RewardHierarchy.from_config(rewards)
    run = RunDir(tmp_path / "ppo").start(_settings())
    train_ppo(
        PPOContext(_ac(tokenizer), tokenizer, hierarchy, _settings(steps=3), run=run),
        [p.record for p in TASK.problems("train", 20, seed=1)],
        0,
    )
    weights = [r["reward/tier/task/weight"] for r in run.read_metrics()]
    assert weights == pytest.approx([0.0, 0.5, 1.0])


def test_on_policy_step_skips_the_old_logprob_pass_without_changing_the_update(tokenizer):
    import dataclasses

    torch.manual_seed(0)
    ac = _ac(tokenizer)
    cfg = _settings(advantage_estimator="grpo", kl_in="loss", kl_estimator="k3", minibatch_size=8)
    ro = rollout(PPOContext(ac, tokenizer, HIERARCHY, cfg), PROBLEMS, kl_coef=0.1)
    assert ro.old_logprobs is None  # one step on the whole batch, KL as a loss: nothing to recompute
    with torch.no_grad():
        old, _, _ = ac.policy_logprobs(ro.input_ids, ro.attention_mask, ro.n_completion)
    explicit = dataclasses.replace(ro, old_logprobs=old, metrics=dict(ro.metrics))
    results = []
    for r in (ro, explicit):
        clone = copy.deepcopy(ac)
        update(
            PPOContext(clone, tokenizer, HIERARCHY, cfg),
            r,
            _opts(clone),
            torch.Generator().manual_seed(0),
            kl_coef=0.1,
        )
        results.append(_trainable(clone))
    for k in results[0]:
        assert torch.allclose(results[0][k], results[1][k], atol=1e-6), k
    kl_ref = kl_penalty(old, ro.ref_logprobs, "k3") * ro.mask  # the KL metric comes from the update's pass
    assert ro.metrics["kl"] == pytest.approx(float(kl_ref.sum(1).mean()), abs=1e-5)


def test_gspo_token_update_equals_gspo_off_policy(tokenizer):
    """Several epochs over minibatches (ratios move off 1): the two GSPO forms take the same steps
    when every sequence has one advantage (GRPO)."""
    torch.manual_seed(0)
    ac = _ac(tokenizer, critic=False)
    common = dict(advantage_estimator="grpo", loss_agg_mode="seq-mean-token-mean", ppo_epochs=3,
                  minibatch_size=4, clip_eps=0.5)  # fmt: skip
    ro = rollout(PPOContext(ac, tokenizer, HIERARCHY, _settings(**common)), PROBLEMS, kl_coef=0.05)
    assert ro.old_logprobs is not None  # off-policy: π_old recorded before the update
    results = []
    for level in ("sequence", "sequence_token"):
        clone = copy.deepcopy(ac)
        cfg = _settings(**common, importance_sampling_level=level)
        stats = update(
            PPOContext(clone, tokenizer, HIERARCHY, cfg),
            ro,
            _opts(clone),
            torch.Generator().manual_seed(0),
            kl_coef=0.05,
        )
        assert stats["policy/ratio_var"] > 0  # the ratios did move
        results.append(_trainable(clone))
    before = _trainable(ac)
    assert any(not torch.equal(before[k], results[0][k]) for k in before)
    for k in results[0]:
        assert torch.allclose(results[0][k], results[1][k], atol=1e-6), k
