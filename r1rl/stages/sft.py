"""Supervised fine-tuning with a LoRA adapter, loss on completion tokens only.

r1rl runs its own loop (``r1rl.stages.supervised``) rather than TRL's ``SFTTrainer``: the
same loop pretrains, so both stages share one checkpoint/resume path, one metric schema and
the MoE telemetry, and a step costs one forward and one backward with no trainer overhead.
``final/`` is a PEFT adapter whose ``base_model_name_or_path`` is the absolute path of the
model it adapts.
"""

from __future__ import annotations

import random

import torch

from r1rl.config import RewardsConfig, SFTConfig
from r1rl.distributed import Parallel
from r1rl.eval.embedded import evaluate_arithmetic
from r1rl.model import add_lora, load_merged, load_tokenizer, resolve_model_path
from r1rl.rewards.hierarchy import RewardHierarchy
from r1rl.rundir import RunDir, render_plots
from r1rl.stages.supervised import train_supervised
from r1rl.tasks.arithmetic import ArithmeticProblem, ArithmeticTask
from r1rl.training import setup


def encode_pairs(tokenizer, prompts: list[str], completions: list[str]) -> list[tuple[list[int], list[int]]]:
    """Token ids of each prompt and of its completion followed by EOS."""
    p_ids = tokenizer(prompts, add_special_tokens=False).input_ids
    c_ids = tokenizer(completions, add_special_tokens=False).input_ids
    return [(p, c + [tokenizer.eos_token_id]) for p, c in zip(p_ids, c_ids)]


def collate(pairs: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch; labels are ``-100`` on prompt and padding tokens."""
    width = max(len(p) + len(c) for p, c in pairs)
    ids = torch.full((len(pairs), width), pad_id)
    labels = torch.full((len(pairs), width), -100)
    mask = torch.zeros((len(pairs), width), dtype=torch.long)
    for i, (p, c) in enumerate(pairs):
        n = len(p) + len(c)
        ids[i, :n] = torch.tensor(p + c)
        labels[i, len(p) : n] = torch.tensor(c)
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def completions(problems: list[ArithmeticProblem], cfg: SFTConfig) -> list[str]:
    """Worked completions, except a seeded ``answer_only_fraction`` that state only the answer."""
    rng = random.Random(f"answer-only-{cfg.seed}")
    return [p.short_completion if rng.random() < cfg.answer_only_fraction else p.completion for p in problems]


def run(cfg: SFTConfig) -> RunDir:
    rd = RunDir(cfg.output_dir)
    if rd.is_finished():
        return rd
    base_path = resolve_model_path(cfg.model_path)
    par = Parallel.for_training(cfg.train)
    rd.start(cfg)
    par.barrier()
    setup(cfg.seed, cfg.threads)
    tokenizer = load_tokenizer(base_path)
    model = add_lora(load_merged(base_path), cfg.lora)
    model.peft_config["default"].base_model_name_or_path = base_path
    task = ArithmeticTask(**cfg.task.model_dump())
    problems = task.problems("train", cfg.num_examples, seed=cfg.seed + 1)
    pairs = encode_pairs(tokenizer, [p.prompt for p in problems], completions(problems, cfg))
    bs = cfg.train.batch_size

    def get_batch(step: int) -> dict[str, torch.Tensor]:
        per_epoch = max(1, len(pairs) // bs)
        epoch, i = divmod(step, per_epoch)
        perm = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch))
        return collate([pairs[j] for j in perm[i * bs : (i + 1) * bs].tolist()], tokenizer.pad_token_id)

    hierarchy = RewardHierarchy.from_config(RewardsConfig())

    def periodic_eval() -> dict[str, float]:
        metrics, _ = evaluate_arithmetic(
            model, tokenizer, task, hierarchy, n=cfg.train.eval_examples, progress=False
        )
        return metrics

    train_supervised(model, get_batch, cfg.train, rd, "sft", evaluate=periodic_eval, par=par)
    if not par.is_main:
        par.close()  # wait for the main process to write final/
        return rd
    render_plots(rd, "sft")
    with rd.writing_final() as final:
        model.save_pretrained(final)
        tokenizer.save_pretrained(final)
    par.close()
    return rd
