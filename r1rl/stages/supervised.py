"""One masked next-token training loop, shared by pretraining and SFT.

Batches come from ``get_batch(step)``, a pure function of the step, so a resumed run sees
exactly the data an uninterrupted one would. The loss is transformers' causal-LM loss on
``labels`` (``-100`` = ignored) plus the model's Switch load-balance loss
(``router_aux_loss_coef`` × aux), which ``Qwen3MoeForCausalLM`` adds itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from r1rl.config import TrainConfig
from r1rl.moe import expert_load, load_metrics
from r1rl.rundir import RunDir
from r1rl.training import (
    cosine_schedule,
    grad_norm_finite,
    load_latest_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)

Batch = dict[str, torch.Tensor]


def train_supervised(
    model: torch.nn.Module,
    get_batch: Callable[[int], Batch],
    cfg: TrainConfig,
    run: RunDir,
    stage: str,
    evaluate: Callable[[], dict[str, float]] | None = None,
) -> None:
    """Train ``model``'s trainable parameters for ``cfg.steps`` steps, resuming from the newest checkpoint.

    ``evaluate`` (every ``cfg.eval_every`` steps and at the end) returns held-out metrics,
    logged under ``eval/``; the model is put back in training mode afterwards.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    sched = cosine_schedule(opt, cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    start = 0
    state = load_latest_checkpoint(run.checkpoints)
    if state is not None:
        model.load_state_dict(state["model"], strict=False)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        start = state["step"]
        run.truncate_metrics(start)
    config = getattr(model, "config", None)
    coef = getattr(config, "router_aux_loss_coef", 0.0)
    top_k = getattr(config, "num_experts_per_tok", 1)
    model.train()
    bar = tqdm(range(start, cfg.steps), desc=stage, initial=start, total=cfg.steps, dynamic_ncols=True)
    for step in bar:
        t0 = time.perf_counter()
        batch = get_batch(step)
        out = model(**batch, output_router_logits=True)
        loss = out.loss
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{stage}: non-finite loss at step {step}; lower train.lr")
        loss.backward()
        norm, finite = grad_norm_finite(params, cfg.max_grad_norm)
        if finite:
            opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        done = step + 1
        eval_due = cfg.eval_every > 0 and (done % cfg.eval_every == 0 or done == cfg.steps)
        want_eval = evaluate is not None and eval_due
        if done % cfg.log_every == 0 or done == cfg.steps or want_eval:
            aux = out.aux_loss.item() if out.aux_loss is not None else 0.0
            dt = time.perf_counter() - t0
            metrics = {
                "loss": loss.item() - coef * aux,
                "moe/aux_loss": aux,
                "lr": sched.get_last_lr()[0],
                "grad_norm": norm,
                "perf/step_s": dt,
                "perf/tokens_per_s": float(batch["attention_mask"].sum()) / dt,
            }
            if out.router_logits is not None:
                metrics.update(load_metrics(expert_load(out.router_logits, top_k, batch["attention_mask"])))
            if want_eval:
                metrics.update({f"eval/{k}": v for k, v in evaluate().items()})
                model.train()
            run.log(done, stage, metrics)
            bar.set_postfix(loss=f"{metrics['loss']:.3f}")
        if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < cfg.steps:
            model_state = {k: v for k, v in model.state_dict().items() if _is_trainable(k, trainable)}
            save_checkpoint(
                run.checkpoints,
                done,
                {
                    "model": model_state,
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "rng": rng_state(),
                    "step": done,
                },
                cfg.keep_checkpoints,
            )
    bar.close()


def _is_trainable(key: str, trainable: set[str]) -> bool:
    return key in trainable
