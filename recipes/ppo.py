"""Recipe: PPO — a LoRA policy and critic on one frozen base (the reference: adapters off), rewarded
by the task's tier hierarchy.

The SFT adapter is merged into its base first, so "the base" that policy, critic and reference
share *is* the SFT model, and the KL penalty keeps the policy near it. Prompts are the task's
training rows, drawn without replacement and reshuffled every epoch; every other column of a row
reaches the rewards. ``final/`` holds the policy merged into that base: a plain transformers model.

The CLI's ``r1rl ppo CONFIG.yaml`` runs :func:`run`; ``r1rl cp ppo my_ppo.py`` copies it to edit.
"""

from __future__ import annotations

from r1rl.eval.heldout import evaluate_heldout

from r1rl.config import PPOConfig
from r1rl.envs.episodes import EnvSpec
from r1rl.models.factory import load_tokenizer, resolve_model_path
from r1rl.models.moe import check_router_terms, check_routing_replay
from r1rl.parallel.distributed import Parallel
from r1rl.rundir import RunDir
from r1rl.train.ppo.context import PPOContext
from r1rl.train.ppo.engines import build_engine
from r1rl.train.ppo.roles import build_roles, final_policy
from r1rl.train.ppo.trainer import prompt_pool, train_ppo
from r1rl.train.prepare import hierarchy_of, task_of
from r1rl.train.stage import StageRun


def run(cfg: PPOConfig) -> RunDir:
    stage = StageRun(cfg, "ppo", Parallel.for_ppo(cfg))  # the run directory and the processes
    par = stage.parallel
    model_path = resolve_model_path(cfg.model_path)
    task = task_of(cfg)  # 1. the task: its rows and the reward hierarchy, checked against its columns
    hierarchy = hierarchy_of(cfg.rewards, task, device=str(par.device))  # reward models: the policy's device
    tokenizer = load_tokenizer(model_path)
    env = EnvSpec.from_config(cfg.env) if cfg.env.enabled else None  # multi-turn episodes: tools, environment
    pool = prompt_pool(task, tokenizer, cfg, par, env.schemas() if env else None)  # the rows that fit
    stage.start(task)  # config.yaml and task.json; seeds and threads
    roles = build_roles(cfg, model_path)  # 2. the roles: policy, critic and reference on one base
    check_router_terms(cfg.moe, roles.generation_model)
    if cfg.moe.routing_replay:
        check_routing_replay(roles.generation_model)
    engine = build_engine(cfg.rollout, roles.generation_model, tokenizer, par.device, par.sharded)

    def periodic_eval() -> dict[str, float]:
        with hierarchy.frozen():  # held-out scoring must not move running reward statistics
            metrics, _ = evaluate_heldout(
                roles.generation_model, tokenizer, task, hierarchy, n=cfg.log.eval_examples,
                max_new_tokens=cfg.log.eval_max_new_tokens or cfg.rollout.max_new_tokens, progress=False,
                env=env,
            )  # fmt: skip
        return metrics

    # 3. train: rollout → reward → log-probs → advantages → update, with checkpoints and resume
    ppo = PPOContext(
        roles, tokenizer, hierarchy, cfg, parallel=par, task=task, engine=engine, run=stage.run, env=env
    )
    train_ppo(ppo, pool, cfg.seed, evaluate=periodic_eval)
    return stage.finish(final_policy(roles, par, cfg, model_path), tokenizer)  # 4. final/


if __name__ == "__main__":
    from r1rl.run.cli import recipe_main

    raise SystemExit(recipe_main(run, PPOConfig))
