"""Recipe: pretraining from scratch — a tokenizer and a Qwen3-MoE on the task's corpus.

The CLI's ``r1rl pretrain CONFIG.yaml`` runs :func:`run`. To change a piece, copy this file
(``r1rl cp pretrain my_pretrain.py``), edit it, and run ``python my_pretrain.py CONFIG.yaml
[key.sub=value ...]`` (or ``r1rl pretrain CONFIG.yaml --recipe my_pretrain.py``).
"""

from __future__ import annotations

from r1rl.config import PretrainConfig
from r1rl.models.factory import count_parameters
from r1rl.models.tokenizer import train_tokenizer
from r1rl.parallel.distributed import Parallel
from r1rl.rundir import RunDir
from r1rl.train.prepare import task_of
from r1rl.train.pretrain import batches, corpus, data_plan, model_for, pack, validation_loss
from r1rl.train.stage import StageRun
from r1rl.train.supervised import train_supervised


def run(cfg: PretrainConfig) -> RunDir:
    stage = StageRun(cfg, "pretrain", Parallel.for_training(cfg))  # the run directory and the processes
    plan = data_plan(cfg)  # bad sources, filters or data fail here, before anything is written
    docs, val_docs = corpus(cfg, None, None) if plan is None else ([], [])
    rd = stage.start(task_of(cfg))  # config.yaml and task.json; seeds and threads
    if plan is not None:
        docs, val_docs = corpus(cfg, plan, rd.path if stage.parallel.is_main else None)
    tokenizer = train_tokenizer(docs[: cfg.tokenizer.num_texts], vocab_size=cfg.tokenizer.vocab_size)
    model = model_for(cfg, tokenizer)
    if stage.parallel.is_main:
        print(f"[pretrain] {count_parameters(model) / 1e6:.2f}M parameters, {len(docs)} documents")
    rows = pack(tokenizer(docs, add_special_tokens=False).input_ids, tokenizer.eos_token_id, cfg.data.seq_len)
    train_supervised(model, batches(rows, cfg.batch_size, cfg.seed), cfg, stage)
    if val_docs and stage.parallel.is_main:
        ids = tokenizer(val_docs, add_special_tokens=False).input_ids
        val_rows = pack(ids, tokenizer.eos_token_id, cfg.data.seq_len)
        rd.log(cfg.steps, "pretrain", {"val/loss": validation_loss(model, val_rows, cfg.batch_size)})
    return stage.finish(model, tokenizer)


if __name__ == "__main__":
    from r1rl.run.cli import recipe_main

    raise SystemExit(recipe_main(run, PretrainConfig))
