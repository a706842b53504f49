"""Recipe: supervised fine-tuning — a LoRA adapter trained on the task's rows, loss on the completion only.

Text rows train on the completion and EOS; chat rows on every assistant turn. ``final/`` is a PEFT
adapter whose ``base_model_name_or_path`` is the absolute path of the model it adapts. r1rl runs
its own loop (:func:`r1rl.train.supervised.train_supervised`, shared with pretraining: one checkpoint
and resume path, one metric schema, the MoE telemetry) rather than TRL's ``SFTTrainer``.

The CLI's ``r1rl sft CONFIG.yaml`` runs :func:`run`; ``r1rl cp sft my_sft.py`` copies it to edit.
"""

from __future__ import annotations

from r1rl.eval.heldout import evaluate_heldout

from r1rl.config import SFTConfig
from r1rl.envs.episodes import EnvSpec
from r1rl.models.factory import add_lora, load_merged, load_tokenizer, resolve_model_path, torch_dtype
from r1rl.parallel.distributed import Parallel
from r1rl.rundir import RunDir
from r1rl.train.prepare import hierarchy_of, sft_examples, task_of
from r1rl.train.stage import StageRun
from r1rl.train.supervised import example_batches, train_supervised


def run(cfg: SFTConfig) -> RunDir:
    stage = StageRun(cfg, "sft", Parallel.for_training(cfg))  # the run directory and the processes
    base_path = resolve_model_path(cfg.model_path)
    task = task_of(cfg)  # the rows, and the rewards the held-out eval scores with
    splits = ("test",) if cfg.log.eval_every else ()
    hierarchy = hierarchy_of(cfg.rewards, task, splits=splits, device=str(stage.parallel.device))
    tokenizer = load_tokenizer(base_path)
    env = EnvSpec.from_config(cfg.env) if cfg.env.enabled else None  # tools the prompts list, episodes eval
    tools = env.schemas() if env is not None else None
    examples = sft_examples(
        task, tokenizer, cfg.num_examples, "sft", stage.parallel, tools
    )  # bad rows fail here
    stage.start(task)  # config.yaml and task.json; seeds and threads
    model = add_lora(load_merged(base_path, torch_dtype(cfg.base_dtype)), cfg.lora)
    model.peft_config["default"].base_model_name_or_path = base_path

    def periodic_eval() -> dict[str, float]:
        n, length = cfg.log.eval_examples, cfg.log.eval_max_new_tokens or 48
        return evaluate_heldout(
            model, tokenizer, task, hierarchy, n=n, max_new_tokens=length, progress=False, env=env
        )[0]

    get_batch = example_batches(examples, cfg.batch_size, cfg.seed, tokenizer.pad_token_id)
    train_supervised(model, get_batch, cfg, stage, evaluate=periodic_eval)
    return stage.finish(model, tokenizer)


if __name__ == "__main__":
    from r1rl.run.cli import recipe_main

    raise SystemExit(recipe_main(run, SFTConfig))
