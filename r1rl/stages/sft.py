"""Supervised fine-tuning with a LoRA adapter, loss on completion (or assistant) tokens only.

r1rl runs its own loop (``r1rl.stages.supervised``) rather than TRL's ``SFTTrainer``: the
same loop pretrains, so both stages share one checkpoint/resume path, one metric schema and
the MoE telemetry, and a step costs one forward and one backward with no trainer overhead.
The rows are the task's training split (:func:`r1rl.stages.common.sft_examples`: text
prompt + completion, or chat conversations trained on their assistant turns). ``final/`` is a
PEFT adapter whose ``base_model_name_or_path`` is the absolute path of the model it adapts.
"""

from __future__ import annotations

import torch

from r1rl.config import SFTConfig
from r1rl.distributed import Parallel
from r1rl.errors import UserError
from r1rl.eval.heldout import evaluate_heldout
from r1rl.model import add_lora, load_merged, load_tokenizer, resolve_model_path
from r1rl.rundir import RunDir, render_plots
from r1rl.stages.common import Example, hierarchy_of, resolved_rewards, sft_examples, task_of, write_task_info
from r1rl.stages.supervised import train_supervised
from r1rl.tasks.encoding import IGNORE
from r1rl.training import setup


def collate(examples: list[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch of ``(input_ids, labels)``; labels are ``-100`` on untrained and padding tokens."""
    width = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), width), pad_id)
    labels = torch.full((len(examples), width), IGNORE)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, (row, lab) in enumerate(examples):
        ids[i, : len(row)] = torch.tensor(row)
        labels[i, : len(lab)] = torch.tensor(lab)
        mask[i, : len(row)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def run(cfg: SFTConfig) -> RunDir:
    rd = RunDir(cfg.output_dir)
    if rd.is_finished():
        return rd
    base_path = resolve_model_path(cfg.model_path)
    task = task_of(cfg)
    hierarchy = hierarchy_of(cfg.rewards, task, splits=("test",) if cfg.train.eval_every else ())
    par = Parallel.for_training(cfg.train)
    tokenizer = load_tokenizer(base_path)
    examples = sft_examples(task, tokenizer, cfg.num_examples, "sft", par)  # bad rows fail before any write
    if cfg.num_examples is not None and len(examples) < cfg.num_examples:
        raise UserError(
            f"num_examples={cfg.num_examples} but {task.name!r} has {len(examples)} training rows; "
            "ask for fewer"
        )
    rd.start(cfg.model_copy(update={"rewards": resolved_rewards(cfg.rewards, task)}))
    if par.is_main:
        write_task_info(rd.path, task)
    par.barrier()
    setup(cfg.seed, cfg.threads)
    model = add_lora(load_merged(base_path), cfg.lora)
    model.peft_config["default"].base_model_name_or_path = base_path
    bs = cfg.train.batch_size

    def get_batch(step: int) -> dict[str, torch.Tensor]:
        per_epoch = max(1, len(examples) // bs)
        epoch, i = divmod(step, per_epoch)
        perm = torch.randperm(len(examples), generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch))
        return collate([examples[j] for j in perm[i * bs : (i + 1) * bs].tolist()], tokenizer.pad_token_id)

    def periodic_eval() -> dict[str, float]:
        metrics, _ = evaluate_heldout(
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
