"""Recipe: distillation — a student trained on the teacher's samples that pass the reward tiers, no RL.

What DeepSeek-R1 did after RL (DeepSeek-AI 2025, §2.4): the teacher (the PPO stage's ``final/``,
or any model) samples ``sampling.samples_per_prompt`` completions for each training prompt of the
task; the reward hierarchy keeps those that pass every tier (or ``sampling.accept_tier`` and the
tiers below it) and duplicates are dropped (:mod:`r1rl.train.distill.sampling`); the student — any model
with the teacher's tokenizer: the pretrained base, or a smaller preset pretrained on the same
corpus — is trained on the kept traces by the SFT loop, a LoRA adapter unless ``full_finetune``.
With ``logits.loss`` set, the student also matches the teacher's next-token distributions on those
traces (:mod:`r1rl.algorithms.distill`). The counts go to ``metrics.jsonl`` at step 0 and the traces to
``traces.jsonl``; ``final/`` is the student's adapter (base: the student's absolute path) or model.

The CLI's ``r1rl distill CONFIG.yaml`` runs :func:`run`; ``r1rl cp distill my_distill.py`` copies it to edit.
"""

from __future__ import annotations

from r1rl.eval.heldout import evaluate_heldout

from r1rl.config import DistillConfig
from r1rl.envs.episodes import EnvSpec
from r1rl.models.factory import add_lora, load_merged, load_tokenizer, resolve_model_path
from r1rl.parallel.distributed import Parallel
from r1rl.records import first
from r1rl.rundir import RunDir
from r1rl.train.distill import (
    Teacher,
    Traces,
    accept_tier,
    cached_traces,
    check_same_tokenizer,
    logit_hook,
    sample_traces,
)
from r1rl.train.prepare import (
    drop_long_prompts,
    encode_examples,
    hierarchy_of,
    task_of,
)
from r1rl.train.stage import StageRun
from r1rl.train.supervised import example_batches, train_supervised


def run(cfg: DistillConfig) -> RunDir:
    stage = StageRun(cfg, "distill", Parallel.for_training(cfg))  # the run directory and the processes
    par = stage.parallel
    student_path = resolve_model_path(cfg.model_path)
    teacher_path = resolve_model_path(cfg.teacher_path, "teacher_path")
    task = task_of(cfg)  # the prompts, and the tiers that accept the teacher's completions
    splits = ("train", "test") if cfg.log.eval_every else ("train",)
    hierarchy = hierarchy_of(cfg.rewards, task, splits=splits, device=str(par.device))
    accept_tier(hierarchy, cfg.sampling.accept_tier)  # an unknown tier fails now, naming the tiers
    tokenizer = load_tokenizer(student_path)
    check_same_tokenizer(tokenizer, load_tokenizer(teacher_path))
    env = EnvSpec.from_config(cfg.env) if cfg.env.enabled else None  # multi-turn traces: tools, environment
    tools = env.schemas() if env is not None else None
    prompts = drop_long_prompts(first(task.records("train"), cfg.sampling.num_prompts), tokenizer, task,
                                "distill", par, tools)  # fmt: skip
    rd = stage.start(task)  # config.yaml and task.json; seeds and threads
    teacher = load_merged(teacher_path).to(par.device)  # whole on every process, never sharded

    # 1. the traces: k samples per prompt, kept when they pass the tiers, deduplicated (read back on resume)
    def sample() -> Traces:
        return sample_traces(
            Teacher(teacher, tokenizer, task, env), prompts, hierarchy, cfg.sampling, cfg.seed, par
        )

    traces = cached_traces(rd, sample, par)
    examples = encode_examples(traces.records, tokenizer, task, "distill", par, tools)

    # 2. the student: a LoRA adapter on its base (or every weight), trained by the SFT loop
    model = load_merged(student_path)
    if not cfg.full_finetune:
        model = add_lora(model, cfg.lora)
        model.peft_config["default"].base_model_name_or_path = student_path
    hook = logit_hook(teacher, model, cfg.logits)  # None unless logits.loss is set: plain SFT
    if hook is None:
        del teacher  # only logit distillation needs it after sampling

    def periodic_eval() -> dict[str, float]:
        n, length = cfg.log.eval_examples, cfg.log.eval_max_new_tokens or cfg.sampling.max_new_tokens
        return evaluate_heldout(
            model, tokenizer, task, hierarchy, n=n, max_new_tokens=length, progress=False, env=env
        )[0]

    get_batch = example_batches(examples, cfg.batch_size, cfg.seed, tokenizer.pad_token_id)
    train_supervised(model, get_batch, cfg, stage, evaluate=periodic_eval, loss_hook=hook)
    return stage.finish(model, tokenizer)


if __name__ == "__main__":
    from r1rl.run.cli import recipe_main

    raise SystemExit(recipe_main(run, DistillConfig))
