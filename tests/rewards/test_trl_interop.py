"""The reward functions and the hierarchy plug into TRL's GRPOTrainer unchanged: one real step."""

import math

import pytest
import torch
from r1rl.rewards.hierarchy import RewardHierarchy

from r1rl.config import RewardsConfig, TierConfig
from r1rl.models.factory import build_config, build_model
from r1rl.models.tokenizer import train_tokenizer
from r1rl.tasks.arithmetic import ArithmeticTask, arithmetic_logic, arithmetic_syntax, arithmetic_task

trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")


def test_one_grpo_step_with_builtin_tiers_and_hierarchy(tmp_path):
    task = ArithmeticTask(min_operands=2, max_operands=2, digits=1)
    problems = task.problems("train", 8, seed=0)
    tok = train_tokenizer(
        [p.prompt + p.completion for p in task.problems("train", 60, seed=0)], vocab_size=300
    )
    cfg = build_config("micro", len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    model = build_model(cfg, seed=0)
    # TRL's forward pass breaks transformers' router aux loss (a mask/batch size mismatch) when
    # the model returns router logits; r1rl keeps them on, TRL runs without them.
    model.config.output_router_logits = False
    data = datasets.Dataset.from_dict(
        {"prompt": [p.prompt for p in problems], "answer": [p.answer for p in problems]}
    )
    hierarchy = RewardHierarchy.from_config(
        RewardsConfig(
            mode="scheduled",
            schedule_end=10,
            tiers=[
                TierConfig(name="syntax", reward="arithmetic_syntax", weight=1.0, weight_end=0.0),
                TierConfig(name="task", reward="arithmetic_task", weight=0.0, weight_end=1.0),
            ],
        )  # fmt: skip
    )
    args = trl.GRPOConfig(
        output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=4, num_generations=2,
        max_completion_length=8, gradient_accumulation_steps=1, learning_rate=1e-3, logging_steps=1,
        report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True, bf16=False, seed=0,
    )  # fmt: skip
    trainer = trl.GRPOTrainer(
        model=model,
        reward_funcs=[arithmetic_syntax, arithmetic_logic, arithmetic_task, hierarchy.as_reward_function()],
        args=args,
        train_dataset=data,
        processing_class=tok,
    )
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer.train()

    assert trainer.state.global_step == 1
    log = next(h for h in trainer.state.log_history if "reward" in h)
    for name in ("arithmetic_syntax", "arithmetic_logic", "arithmetic_task", "hierarchy_reward"):
        assert math.isfinite(log[f"rewards/{name}/mean"]), name
    # The hierarchy's own metrics arrive through TRL's log_metric hook, and it followed the step.
    assert log["reward/tier/syntax/errors"] == 0.0 and log["reward/tier/task/timeouts"] == 0.0
    assert 0.0 <= log["reward/tier/syntax/pass_rate"] <= 1.0
    assert log["reward/tier/syntax/weight"] == pytest.approx(1.0)  # step 0 of a 10-step schedule
    assert hierarchy.last_result is not None and len(hierarchy.last_result.rewards) == 4
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters())  # the step updated
