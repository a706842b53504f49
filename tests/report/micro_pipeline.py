"""The micro pipeline the Hub tests push from, cut to a few seconds: only the run-directory layout matters."""

from pathlib import Path

MICRO = Path(__file__).parents[2] / "recipes" / "configs" / "micro" / "pipeline.yaml"
FAST = [
    "pretrain.steps=2",
    "pretrain.data.num_problems=200",
    "pretrain.tokenizer.num_texts=200",
    "sft.steps=1",
    "sft.num_examples=8",
    "ppo.steps=1",
    "ppo.rollout.prompts_per_step=2",
    "ppo.rollout.max_new_tokens=8",
    "eval.num_examples=4",
    "eval.max_new_tokens=8",
]
