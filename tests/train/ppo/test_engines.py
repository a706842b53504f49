"""Rollout engines: the same rules for every engine, their log-probs against the training pass,
the on-policy shortcut only for the training model, and truncated importance sampling."""

import copy
import dataclasses
import sys
from pathlib import Path

import pytest
import torch
from r1rl.rewards.hierarchy import RewardHierarchy, Tier

from r1rl.algorithms.ppo import policy_loss, truncated_is_weights
from r1rl.config import PPOConfig, PPOSettings, validate
from r1rl.errors import UserError
from r1rl.models.encoding import encode_prompts
from r1rl.models.generation import StopOnStrings, generate, stop_lengths
from r1rl.rundir import RunDir
from r1rl.train.ppo.context import PPOContext
from r1rl.train.ppo.engines import (
    ENGINES,
    ContinuousBatchingEngine,
    GenerateEngine,
    Sampling,
    build_engine,
    resolve_engine,
)
from r1rl.train.ppo.rollout import on_policy, rollout
from r1rl.train.ppo.trainer import train_ppo
from r1rl.train.ppo.update import update

sys.path.insert(0, str(Path(__file__).parent))
from ppo_micro import TASK, micro_ac, micro_tokenizer  # noqa: E402

PROBLEMS = [p.record for p in TASK.problems("train", 2, seed=3)]
# a reward that varies between samples, so every step moves the policy
HIERARCHY = RewardHierarchy(
    [Tier("spread", lambda prompts, completions, **_: [len(c) % 5 / 4 for c in completions])]
)
STOP = ("1", "+", "=")


@pytest.fixture(scope="module")
def tokenizer():
    return micro_tokenizer()


def _ac(tokenizer, critic=False):
    return micro_ac(tokenizer, critic)


def _settings(optim=None, **rollout):
    return PPOSettings.model_validate(
        {"rollout": {"prompts_per_step": 2, "samples_per_prompt": 4, "max_new_tokens": 12, **rollout},
         "optim": optim or {"minibatch_size": 8, "ppo_epochs": 1},
         "algorithm": {"advantage_estimator": "grpo"}}
    )  # fmt: skip


def _prompt_ids(tokenizer, n=8):
    prompts = [p.record["prompt"] for p in TASK.problems("train", n, seed=3)]
    return encode_prompts(tokenizer, prompts, None)


def _training_logprobs(ac, g):
    ac.use("policy")
    with torch.no_grad():
        ids = torch.cat([g.prompt_ids, g.completion_ids], 1)
        am = torch.cat([g.prompt_mask, g.completion_mask], 1)
        return ac.policy_logprobs(ids, am, g.completion_ids.shape[1])[0]  # (B, T)


def test_generate_engine_samples_what_generate_samples_and_scores_it_as_training_does(tokenizer):
    ac = _ac(tokenizer)
    ids = _prompt_ids(tokenizer)
    torch.manual_seed(0)
    g = GenerateEngine(ac.generation_model, tokenizer).generate(ids, Sampling(12, temperature=0.7), stop=STOP)
    torch.manual_seed(0)
    plain = generate(ac.generation_model, tokenizer, ids, max_new_tokens=12, do_sample=True, temperature=0.7,
                     stop=STOP)  # fmt: skip
    assert (
        torch.equal(g.completion_ids, plain.completion_ids) and g.texts == plain.texts
    )  # recording changes nothing
    assert plain.logprobs is None
    mask = g.completion_mask.float()
    assert 0 < mask.sum() < mask.numel()  # some rows ended early: padding is checked too
    assert torch.all(g.logprobs[mask == 0] == 0)
    untempered = _training_logprobs(ac, g)
    ac.temperature = 0.7  # the training pass scores the tempered policy the engine sampled from
    diff = (g.logprobs - _training_logprobs(ac, g)).abs() * mask
    assert diff.max() < 1e-5  # the KV cache against one full forward: float noise only
    assert ((g.logprobs - untempered).abs() * mask).max() > 1e-2
    assert torch.all(g.logprobs[mask == 1] < 0)


def test_stop_lengths_finds_where_stop_on_strings_stops(tokenizer):
    torch.manual_seed(0)
    rows = torch.randint(0, len(tokenizer), (16, 20))  # (B, T)
    stopper = StopOnStrings(tokenizer, STOP, prompt_len=0, batch_size=16)
    for t in range(1, rows.shape[1] + 1):  # as generate calls it: after every new token
        stopper(rows[:, :t], torch.zeros(16, 1))
    expected = stopper.stopped_at.tolist()
    assert 0 in expected and any(n > 0 for n in expected)  # rows that stop and rows that do not
    assert stop_lengths(tokenizer, rows.tolist(), STOP) == expected


def test_continuous_batching_follows_generates_rules_and_scores_as_training_does(tokenizer):
    ac = _ac(tokenizer)
    model = ac.generation_model
    model.train()
    impl = model.config._attn_implementation
    engine = ENGINES.get("continuous_batching")(model, tokenizer)
    assert not engine.is_training_model
    ids = _prompt_ids(tokenizer)
    gens = []
    for _ in range(2):
        torch.manual_seed(0)
        gens.append(engine.generate(ids, Sampling(12), stop=STOP))
    g = gens[0]
    assert torch.equal(g.completion_ids, gens[1].completion_ids)  # its seed comes from torch's stream
    assert model.training and model.config._attn_implementation == impl  # put back for the update
    mask = g.completion_mask
    raw = [row[: int(n)] for row, n in zip(g.completion_ids.tolist(), mask.sum(1))]
    stopped = [n > 0 for n in stop_lengths(tokenizer, raw, STOP)]
    assert any(stopped)
    for row, text, n, stop in zip(raw, g.texts, mask.sum(1).tolist(), stopped):
        # a row ends at its stop sequence or the first EOS, its text cut before the stop sequence
        assert stop or tokenizer.eos_token_id in row or n == 12
        assert not any(s in text for s in STOP)
    assert g.completion_ids.shape[1] == int(mask.sum(1).max())  # as wide as its longest row, like generate
    assert torch.equal(
        g.truncated, ~(torch.tensor(stopped) | (g.completion_ids == tokenizer.eos_token_id).any(1))
    )
    diff = (g.logprobs - _training_logprobs(ac, g)).abs() * mask
    assert diff.max() < 1e-4  # the policy adapter was on: the training pass scores the same tokens


def test_continuous_batching_drops_tempered_logprobs_and_refuses_what_it_cannot_do(tokenizer):
    ac = _ac(tokenizer)
    engine = ContinuousBatchingEngine(ac.generation_model, tokenizer)
    ids = _prompt_ids(tokenizer, 2)
    assert engine.generate(ids, Sampling(4, temperature=0.7)).logprobs is None  # not π's: they are tempered
    with pytest.raises(UserError, match="cannot sample from a sharded"):
        engine.generate(ids, Sampling(4), synced=True)
    with pytest.raises(UserError, match="needs a transformers model with generate_batch"):
        ContinuousBatchingEngine(torch.nn.Linear(2, 2), tokenizer)
    tempered = {"tis_cap": 2.0, "temperature": 0.7}
    with pytest.raises(UserError, match="needs temperature 1 and top_p 1"):  # auto chose it, on CUDA
        build_engine(_settings(**tempered).rollout, ac.generation_model, tokenizer, torch.device("cuda"))
    with pytest.raises(UserError, match="needs temperature 1 and top_p 1"):  # named: refused with the config
        validate(PPOConfig, {"output_dir": "x", "model_path": "m",
                             "rollout": {"engine": "continuous_batching", **tempered}})  # fmt: skip
    with pytest.raises(UserError, match="rollout.engine.*'vllm'"):
        validate(PPOConfig, {"output_dir": "x", "model_path": "m", "rollout": {"engine": "vllm"}})


def test_auto_picks_generate_on_cpu_and_continuous_batching_on_cuda(tokenizer):
    assert resolve_engine("auto", torch.device("cpu")) == "generate"
    assert resolve_engine("auto", torch.device("cuda")) == "continuous_batching"
    assert resolve_engine("auto", torch.device("cuda"), sharded=True) == "generate"  # FSDP2: synced generate
    assert resolve_engine("continuous_batching", torch.device("cpu")) == "continuous_batching"
    named = _settings(engine="continuous_batching").rollout
    with pytest.raises(UserError, match="cannot sample from a sharded"):  # before any training
        build_engine(named, _ac(tokenizer).generation_model, tokenizer, torch.device("cpu"), sharded=True)
    engine = build_engine(_settings().rollout, _ac(tokenizer).generation_model, tokenizer)
    assert engine.name == "generate" and engine.is_training_model


def test_on_policy_shortcut_only_when_the_engine_is_the_training_model(tokenizer):
    cfg = _settings()
    assert on_policy(cfg, 8, 1, 0.0) and not on_policy(cfg, 8, 1, 0.0, engine_is_training_model=False)
    ac = _ac(tokenizer)
    torch.manual_seed(0)
    own = rollout(PPOContext(ac, tokenizer, HIERARCHY, cfg), PROBLEMS, 0.0)
    assert own.old_logprobs is None and "rollout/logprob_diff" not in own.metrics
    frozen = {"policy": torch.optim.SGD(ac.adapter_parameters("policy"), lr=0.0)}
    update(
        PPOContext(ac, tokenizer, HIERARCHY, cfg), own, frozen, torch.Generator().manual_seed(0), kl_coef=0.0
    )
    assert 0 <= own.metrics["rollout/logprob_diff"] <= own.metrics["rollout/logprob_diff_max"] < 1e-5
    cb = ContinuousBatchingEngine(ac.generation_model, tokenizer)
    torch.manual_seed(0)
    other = rollout(PPOContext(ac, tokenizer, HIERARCHY, cfg, engine=cb), PROBLEMS, 0.0)
    assert other.old_logprobs is not None  # π_old is the training model's own pass
    expected = ((other.engine_logprobs - other.old_logprobs).abs() * other.mask).sum() / other.mask.sum()
    assert other.metrics["rollout/logprob_diff"] == pytest.approx(float(expected), abs=1e-9)
    assert other.metrics["rollout/logprob_diff"] < 1e-4


def test_truncated_is_weights_by_hand_and_in_the_policy_loss():
    old = torch.tensor([[-1.0, -2.0, -0.5]])
    engine = torch.tensor([[-1.0, -2.5, float("-inf")]])
    w = truncated_is_weights(old, engine, cap=1.5)
    assert torch.allclose(w, torch.tensor([[1.0, 1.5, 1.5]]))  # e^0; e^0.5 = 1.65 and e^inf cut at 1.5
    lp = torch.tensor([[-0.9, -2.2, -0.4]], requires_grad=True)
    adv, mask = torch.tensor([[1.0, -1.0, 2.0]]), torch.ones(1, 3)
    weighted, _ = policy_loss(lp, old, adv, mask, is_weights=w, agg_mode="seq-mean-token-sum")
    plain, _ = policy_loss(lp, old, adv * w, mask, agg_mode="seq-mean-token-sum")  # w > 0 scales A_t
    assert weighted.item() == pytest.approx(plain.item(), abs=1e-7)


def test_tis_weighs_the_update_as_scaled_advantages_would(tokenizer):
    """Off-policy updates (two epochs of minibatches): TIS with the engine's log-probs shifted from
    π_old equals no TIS with each token's advantage scaled by its truncated weight."""
    ac = _ac(tokenizer)
    cfg, tis = (_settings({"minibatch_size": 4, "ppo_epochs": 2}, tis_cap=cap) for cap in (None, 2.0))
    torch.manual_seed(0)
    ro = rollout(PPOContext(ac, tokenizer, HIERARCHY, cfg), PROBLEMS, 0.05)
    assert ro.old_logprobs is not None
    shift = torch.tensor([0.0, 0.3, -0.3, -2.0, 2.0, 0.0, 0.1, -0.1])[:, None]  # (B, 1) log π_old − log π_eng
    shifted = dataclasses.replace(ro, engine_logprobs=ro.old_logprobs - shift)
    w = truncated_is_weights(ro.old_logprobs, shifted.engine_logprobs, cap=2.0)
    scaled = dataclasses.replace(ro, advantages=ro.advantages * w, engine_logprobs=None)
    results = []
    agreeing = dataclasses.replace(ro, engine_logprobs=ro.old_logprobs)
    for r, c in ((shifted, tis), (scaled, cfg), (agreeing, tis), (ro, cfg)):
        clone = copy.deepcopy(ac)
        opts = {"policy": torch.optim.SGD(clone.adapter_parameters("policy"), lr=1e-2)}
        stats = update(
            PPOContext(clone, tokenizer, HIERARCHY, c),
            r,
            opts,
            torch.Generator().manual_seed(0),
            kl_coef=0.05,
        )
        results.append({n: p.detach().clone() for n, p in clone.named_parameters() if "lora_" in n})
        if c is tis and r is shifted:
            assert stats["rollout/tis_clipfrac"] == pytest.approx(1 / 8, abs=1e-6)  # the row at e^2 > 2
    for k in results[0]:
        assert torch.allclose(results[0][k], results[1][k], atol=1e-6), k
        assert torch.equal(results[2][k], results[3][k]), k  # the engine agreeing exactly: weights of 1
    assert any(not torch.allclose(results[0][k], results[3][k], atol=1e-6) for k in results[0])


def test_ppo_with_continuous_batching_logs_the_mismatch_and_resumes_exactly(tokenizer, tmp_path):
    cfg = _settings(engine="continuous_batching", tis_cap=2.0)
    cfg = cfg.model_copy(update={"steps": 2, "checkpoint": cfg.checkpoint.model_copy(update={"every": 1})})
    pool = [p.record for p in TASK.problems("train", 20, seed=1)]
    runs = {}
    for name, stops in (("straight", [2]), ("resumed", [1, 2])):
        ac, run = _ac(tokenizer), RunDir(tmp_path / name).start(cfg)
        for steps in stops:  # the second call resumes from the first one's checkpoint
            train_ppo(
                PPOContext(ac, tokenizer, HIERARCHY, cfg.model_copy(update={"steps": steps}), run=run),
                pool,
                seed=0,
            )
        runs[name] = (ac.trainable_state(), run.read_metrics())
    (a, rows), (b, _) = runs["straight"], runs["resumed"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(0 < r["rollout/logprob_diff"] < 1e-4 for r in rows)
    assert all(0 < r["rollout/tis_weight_mean"] for r in rows)
