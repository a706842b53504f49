"""The micro actor-critic the PPO tests build: a tokenizer trained on one-digit sums and LoRA roles
whose policy differs from the reference."""

import torch

from r1rl.config import LoraConfigModel
from r1rl.models.factory import build_config, build_model
from r1rl.models.tokenizer import train_tokenizer
from r1rl.tasks.arithmetic import ArithmeticTask
from r1rl.train.ppo.roles import ActorCritic

TASK = ArithmeticTask(min_operands=2, max_operands=2, digits=1)


def micro_tokenizer():
    texts = [p.prompt + p.completion for p in TASK.problems("train", 60, seed=0)]
    return train_tokenizer(texts, vocab_size=300)


def micro_ac(tokenizer, critic: bool) -> ActorCritic:
    cfg = build_config(
        "micro", len(tokenizer), pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id
    )
    ac = ActorCritic(build_model(cfg, seed=0), LoraConfigModel(r=4, alpha=8), critic=critic)
    torch.manual_seed(1)
    for n, p in ac.named_parameters():  # a policy that differs from the reference
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.05)
    return ac
