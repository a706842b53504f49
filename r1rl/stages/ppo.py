"""The PPO stage: LoRA policy and critic on the SFT model, rewarded by the task's tier hierarchy.

The SFT adapter is merged into its base first, so "the base" that policy, critic and
reference share *is* the SFT model, and the KL penalty keeps the policy near it. Prompts are
the task's training rows, drawn without replacement and reshuffled every epoch; every other
column of a row reaches the rewards. ``final/`` holds the policy merged into that base: a
plain transformers model.
"""

from __future__ import annotations

import torch

from r1rl.config import PPOConfig
from r1rl.distributed import Parallel
from r1rl.errors import UserError
from r1rl.eval.heldout import evaluate_heldout
from r1rl.model import load_merged, load_tokenizer, resolve_model_path
from r1rl.moe import check_routing_replay
from r1rl.ppo.roles import ActorCritic, FullActorCritic
from r1rl.ppo.trainer import train_ppo
from r1rl.rundir import RunDir, render_plots, write_samples_table
from r1rl.stages.common import drop_long_prompts, hierarchy_of, resolved_rewards, task_of, write_task_info
from r1rl.training import setup


def run(cfg: PPOConfig) -> RunDir:
    rd = RunDir(cfg.output_dir)
    if rd.is_finished():
        return rd
    model_path = resolve_model_path(cfg.model_path)
    task = task_of(cfg)
    hierarchy = hierarchy_of(cfg.rewards, task)
    par = Parallel()
    par.check_divisible(cfg.ppo.prompts_per_step, "ppo.prompts_per_step")
    par.check_divisible(cfg.ppo.minibatch_size, "ppo.minibatch_size")
    tokenizer = load_tokenizer(model_path)
    pool = drop_long_prompts(task.records("train"), tokenizer, task, "ppo", par)
    if len(pool) < cfg.ppo.prompts_per_step:
        raise UserError(
            f"ppo.prompts_per_step={cfg.ppo.prompts_per_step} but {task.name!r} has {len(pool)} training rows"
        )
    rd.start(cfg.model_copy(update={"rewards": resolved_rewards(cfg.rewards, task)}))
    if par.is_main:
        write_task_info(rd.path, task)
    par.barrier()
    setup(cfg.seed, cfg.threads)
    with_critic = cfg.ppo.advantage_estimator == "gae"
    if cfg.full_finetune:
        ac: ActorCritic | FullActorCritic = FullActorCritic(load_merged(model_path), critic=with_critic)
    else:
        critic_model = None
        if cfg.critic_model_path and with_critic:
            critic_model = load_merged(resolve_model_path(cfg.critic_model_path, "critic_model_path"))
        try:
            ac = ActorCritic(load_merged(model_path), cfg.lora, critic=with_critic, critic_model=critic_model)
        except ValueError as e:
            raise UserError(f"critic_model_path: {e}") from None
    if cfg.ppo.routing_replay:
        check_routing_replay(ac.generation_model)
    if cfg.ppo.bf16:
        ac.autocast_dtype = torch.bfloat16
    if cfg.ppo.gradient_checkpointing:
        ac.enable_gradient_checkpointing()

    def periodic_eval() -> dict[str, float]:
        with hierarchy.frozen():  # held-out scoring must not move running reward statistics
            metrics, _ = evaluate_heldout(
                ac.generation_model, tokenizer, task, hierarchy, n=cfg.ppo.eval_examples,
                max_new_tokens=cfg.ppo.max_new_tokens, progress=False,
            )  # fmt: skip
        return metrics

    train_ppo(
        ac, tokenizer, pool, hierarchy, cfg.ppo, rd, cfg.seed, evaluate=periodic_eval, par=par, task=task
    )
    if not par.is_main:
        par.close()  # wait for the main process to write final/
        return rd
    render_plots(rd, "ppo")
    write_samples_table(rd)
    with rd.writing_final() as final:
        merged = ac.final_model()
        merged.save_pretrained(final)
        tokenizer.save_pretrained(final)
    par.close()
    return rd
