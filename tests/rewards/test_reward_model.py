"""A learned reward model as a tier: a tiny one-label classifier built here (nothing downloaded)
scores exactly what a direct forward pass of it scores, batched or not; long inputs keep their end
and are counted; bad checkpoints are refused in one line; a micro PPO run gates it behind syntax."""

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from r1rl.rewards import RewardHierarchy
from r1rl.rewards.protocol import call_reward
from r1rl.rewards.reward_model import RewardModel, load_reward_model
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    Qwen3Config,
    Qwen3ForCausalLM,
    Qwen3ForSequenceClassification,
)

from r1rl.config import PPOConfig, RewardsConfig, load_config, validate
from r1rl.config.rewards import RewardModelSpec
from r1rl.errors import UserError
from r1rl.models.tokenizer import train_tokenizer
from r1rl.report.plots import TIER_COUNTS
from r1rl.run.stages import STAGES
from r1rl.tasks.arithmetic import ArithmeticTask, arithmetic_syntax
from r1rl.train.ppo.trainer import COUNT_METRICS

MICRO = Path(__file__).parents[2] / "recipes" / "configs" / "micro"
WINDOW = 64  # the tiny model's positions
PROMPTS = ["1+2=", "3*4-5=", "(7+8)*9=", "2+2="]
COMPLETIONS = [
    "<think>1+2=3</think><answer>3</answer>",  # passes syntax
    "7",
    "<think>7+8=15;15*9=135</think><answer>135</answer>",  # passes syntax
    "<answer>4</answer> and some more words after it",
]


def _config(tok, **over):
    kw = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
              num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=WINDOW,
              num_labels=1, pad_token_id=tok.pad_token_id)  # fmt: skip
    return Qwen3Config(**{**kw, **over})


def _save(folder, model, tok):
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tok():
    rows = ArithmeticTask(min_operands=2, max_operands=3, digits=1, seed=0).records("train")[:200]
    return train_tokenizer([r["prompt"] + r["completion"] for r in rows], vocab_size=300)


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory, tok):
    torch.manual_seed(0)
    return _save(tmp_path_factory.mktemp("rm") / "rm", Qwen3ForSequenceClassification(_config(tok)), tok)


@pytest.fixture(scope="module")
def direct(rm_dir):
    """A direct, unbatched forward pass of the saved classifier on the chat-templated sample."""
    model = AutoModelForSequenceClassification.from_pretrained(rm_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(rm_dir)

    def score(prompt, completion, keep=None, start=False):
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]
        text = tokenizer.apply_chat_template(messages, tokenize=False)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            kept = ids if keep is None else ids[:keep] if start else ids[-keep:]
            return model(torch.tensor([kept])).logits[0, 0].item(), len(ids)

    return score


def _hierarchy(rm_dir, mode="gated", **spec):
    tiers = [
        {"name": "syntax", "reward": "arithmetic_syntax"},
        {"name": "rm", "reward": {"type": "reward_model", "path": str(rm_dir), **spec}},
    ]
    return RewardHierarchy.from_config(RewardsConfig(mode=mode, tiers=tiers))


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_scores_equal_a_direct_forward_pass_batched_or_not(rm_dir, direct, batch_size):
    res = _hierarchy(rm_dir, batch_size=batch_size)(PROMPTS, COMPLETIONS)
    want = [direct(p, c)[0] for p, c in zip(PROMPTS, COMPLETIONS)]
    assert res.scores["rm"] == pytest.approx(want, abs=1e-5)
    assert len({round(s, 4) for s in want}) == len(want)  # the samples really score differently
    assert res.metrics()["reward/tier/rm/truncated_inputs"] == 0.0


def test_the_tokenizers_padding_side_does_not_matter(rm_dir, direct):
    """The policy's tokenizers pad on the left; the reward model pads on the right itself."""
    model = AutoModelForSequenceClassification.from_pretrained(rm_dir)
    tokenizer = AutoTokenizer.from_pretrained(rm_dir)
    tokenizer.padding_side = "left"
    scores = RewardModel(model, tokenizer, batch_size=4, max_length=WINDOW)(PROMPTS, COMPLETIONS)
    assert scores == pytest.approx([direct(p, c)[0] for p, c in zip(PROMPTS, COMPLETIONS)], abs=1e-5)


def test_what_it_reads_is_the_chat_template_or_the_plain_concatenation(rm_dir):
    model = AutoModelForSequenceClassification.from_pretrained(rm_dir)
    rm = RewardModel(model, AutoTokenizer.from_pretrained(rm_dir))
    chatml = "<|im_start|>user\n1+2=<|im_end|>\n<|im_start|>assistant\n3<|im_end|>\n"
    assert rm.text("1+2=", "3") == chatml
    conversation = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "1+2="}]
    assert rm.text(conversation, [{"role": "assistant", "content": "3"}]) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n" + chatml
    )
    plain = AutoTokenizer.from_pretrained(rm_dir)
    plain.chat_template = None
    rm = RewardModel(model, plain)
    assert rm.text("1+2=", "3") == "1+2=3"
    assert rm.text(conversation, "3") == "Be brief.\n1+2=3"
    (empty,) = call_reward(rm, [""], [""])  # nothing to read: a typed error, not a score of padding
    assert (empty.kind, empty.detail) == ("error", "sample 0: the input has no tokens")


def test_long_inputs_keep_their_end_and_are_counted(rm_dir, direct):
    keep = 40
    res = _hierarchy(rm_dir, max_length=keep)(PROMPTS, COMPLETIONS)
    lengths = [direct(p, c)[1] for p, c in zip(PROMPTS, COMPLETIONS)]
    assert sorted(lengths)[0] <= keep < sorted(lengths)[-1]  # some are cut, some are not
    assert res.metrics()["reward/tier/rm/truncated_inputs"] == sum(n > keep for n in lengths)
    want = [direct(p, c, keep=keep)[0] for p, c in zip(PROMPTS, COMPLETIONS)]
    assert res.scores["rm"] == pytest.approx(want, abs=1e-5)
    start = [direct(p, c, keep=keep, start=True)[0] for p, c in zip(PROMPTS, COMPLETIONS)]
    assert [abs(a - b) > 1e-4 for a, b in zip(res.scores["rm"], start)] == [n > keep for n in lengths]


def test_the_window_is_the_default_and_the_limit(rm_dir):
    assert load_reward_model(RewardModelSpec(type="reward_model", path=str(rm_dir))).max_length == WINDOW
    with pytest.raises(UserError, match=f"max_length 65 is longer than its window of {WINDOW} tokens"):
        load_reward_model(RewardModelSpec(type="reward_model", path=str(rm_dir), max_length=WINDOW + 1))


def test_gating_thresholds_and_normalisation_apply_as_to_any_tier(rm_dir, direct):
    rm = [direct(p, c)[0] for p, c in zip(PROMPTS, COMPLETIONS)]
    syntax = arithmetic_syntax(PROMPTS, COMPLETIONS)
    assert syntax == [1.0, 0.0, 1.0, 0.0]
    res = _hierarchy(rm_dir)(PROMPTS, COMPLETIONS)  # gated: rm counts only where syntax passed
    assert res.rewards == pytest.approx([(s + r * (s >= 1.0)) / 2 for s, r in zip(syntax, rm)], abs=1e-5)
    tau = sum(sorted(rm)[1:3]) / 2  # between the second and third scores: two pass, two fail
    spec = {"type": "reward_model", "path": str(rm_dir)}
    cfg = RewardsConfig(
        mode="weighted", tiers=[{"name": "rm", "reward": spec, "threshold": tau, "normalize": "batch"}]
    )
    res = RewardHierarchy.from_config(cfg)(PROMPTS, COMPLETIONS)
    assert res.passed["rm"] == [r >= tau for r in rm] and sum(res.passed["rm"]) == 2  # on the raw scores
    mean, std = sum(rm) / 4, (sum((r - sum(rm) / 4) ** 2 for r in rm) / 4) ** 0.5
    assert res.rewards == pytest.approx([(r - mean) / (std + 1e-8) for r in rm], abs=1e-3)


# --- loading: every refusal is one line naming the tier and the checkpoint ---------------------


def _refusal(path):
    with pytest.raises(UserError) as e:
        _hierarchy(path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("rewards.tiers[1] (rm): ")
    return msg


def test_a_missing_directory_is_refused(tmp_path):
    assert _refusal(tmp_path / "nowhere").endswith(f"no such model directory: {tmp_path / 'nowhere'}")


def test_an_adapter_is_refused(tmp_path):
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": "org/base"})
    )
    assert _refusal(tmp_path / "adapter").endswith(
        "is an adapter (no config.json); merge it into its base first"
    )


def test_more_than_one_label_is_refused(tmp_path, tok):
    folder = _save(tmp_path / "three", Qwen3ForSequenceClassification(_config(tok, num_labels=3)), tok)
    msg = _refusal(folder)
    assert f"reward model {folder} has 3 labels (num_labels=3)" in msg and "one label" in msg


def test_a_language_model_is_not_a_reward_model(tmp_path, tok):
    folder = _save(tmp_path / "lm", Qwen3ForCausalLM(_config(tok)), tok)
    msg = _refusal(folder)
    assert (
        f"reward model {folder} is a Qwen3ForCausalLM checkpoint, not a sequence-classification model" in msg
    )


def test_a_checkpoint_without_the_score_head_is_refused(tmp_path, tok):
    folder = _save(tmp_path / "headless", Qwen3ForCausalLM(_config(tok)), tok)
    config = json.loads((folder / "config.json").read_text())
    del config["architectures"]  # nothing says what it is: the missing head gives it away
    (folder / "config.json").write_text(json.dumps(config))
    assert "its weights lack score.weight; it is not a trained sequence-classification model" in _refusal(
        folder
    )


def test_unreadable_weights_are_refused(tmp_path, rm_dir):
    folder = Path(shutil.copytree(rm_dir, tmp_path / "damaged"))
    (folder / "model.safetensors").write_bytes(b"not weights at all")
    assert "model.safetensors is not a readable weights file" in _refusal(folder)


def test_the_spec_is_checked_as_config():
    def tiers(reward):
        return {
            "output_dir": "x",
            "model_path": "m",
            "rewards": {"tiers": [{"name": "rm", "reward": reward}]},
        }

    cfg = validate(PPOConfig, tiers({"type": "reward_model", "path": "org/rm", "batch_size": 2}))
    spec = cfg.rewards.tiers[0].reward
    assert (spec.path, spec.batch_size, spec.max_length, spec.device) == ("org/rm", 2, None, None)
    assert validate(PPOConfig, tiers("arithmetic_task")).rewards.tiers[0].reward == "arithmetic_task"
    for reward, msg in [
        ({"type": "reward_model", "path": "p", "batch_sise": 2},
         "unknown config key 'rewards.tiers.0.reward.batch_sise' (did you mean 'batch_size'?)"),
        ({"type": "reward_model"}, "missing required config key 'rewards.tiers.0.reward.path'"),
        ({"type": "judge", "path": "p"}, "bad value for 'rewards.tiers.0.reward.type'"),
        ({"type": "reward_model", "path": "p", "batch_size": 0},
         "bad value for 'rewards.tiers.0.reward.batch_size'"),
    ]:  # fmt: skip
        with pytest.raises(UserError, match=msg.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
            validate(PPOConfig, tiers(reward))


def test_the_rewards_package_imports_without_torch():
    code = "import sys, r1rl.rewards; print(sorted({'torch', 'transformers', 'pydantic'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "[]\n", out.stderr


def test_the_count_is_summed_over_ranks_and_drawn_with_the_other_counts():
    assert "reward/tier/rm/truncated_inputs".endswith(COUNT_METRICS)
    assert not "response/truncated".endswith(COUNT_METRICS)  # a fraction: averaged, not summed
    assert re.fullmatch(TIER_COUNTS.pattern, "reward/tier/rm/truncated_inputs")


# --- in the loop ----------------------------------------------------------------------------


def test_micro_ppo_with_the_reward_model_gated_by_syntax(micro_pretrained, rm_dir, direct, tmp_path):
    keep = 16
    tiers = (
        "rewards.tiers=[{name: syntax, reward: arithmetic_syntax}, "
        f"{{name: rm, reward: {{type: reward_model, path: '{rm_dir}', batch_size: 3, max_length: {keep}}}}}]"
    )
    over = [f"output_dir={tmp_path / 'ppo'}", f"model_path={micro_pretrained}", "steps=2", tiers]
    run = STAGES["ppo"](load_config(PPOConfig, MICRO / "ppo.yaml", over))
    rows = [r for r in run.read_metrics() if "reward/tier/rm/mean" in r]
    assert len(rows) == 2
    for r in rows:
        assert r["reward/tier/rm/errors"] == 0.0 and r["reward/tier/rm/truncated_inputs"] > 0
        assert math.isfinite(r["reward/tier/rm/mean"])
    logged = [
        s
        for line in (run.path / "rollouts.jsonl").read_text().splitlines()
        for s in json.loads(line)["samples"]
    ]
    assert logged
    for s in logged:  # the logged reward is syntax's and, only where syntax passed, the model's
        (syntax,) = arithmetic_syntax([s["prompt"]], [s["completion"]])
        rm = direct(s["prompt"], s["completion"], keep=keep)[0]
        assert s["reward"] == pytest.approx((syntax + rm * (syntax >= 1.0)) / 2, abs=1e-5)
        assert abs(rm) > 1e-3  # so a closed gate shows: the micro policy's 2 steps never pass syntax
