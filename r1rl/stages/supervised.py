"""One masked next-token training loop, shared by pretraining and SFT.

Batches come from ``get_batch(step)``, a pure function of the step, so a resumed run sees
exactly the data an uninterrupted one would. The loss is transformers' causal-LM loss on
``labels`` (``-100`` = ignored) plus the model's Switch load-balance loss
(``router_aux_loss_coef`` × aux), which ``Qwen3MoeForCausalLM`` adds itself. Under a
multi-process launcher both are taken over the global batch (see :func:`train_supervised`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from r1rl.config import TrainConfig
from r1rl.distributed import Parallel
from r1rl.moe import expert_load, load_metrics, switch_loss_global
from r1rl.rundir import RunDir
from r1rl.training import (
    cosine_schedule,
    grad_norm_finite,
    load_latest_checkpoint,
    save_checkpoint,
)

Batch = dict[str, torch.Tensor]


def train_supervised(
    model: torch.nn.Module,
    get_batch: Callable[[int], Batch],
    cfg: TrainConfig,
    run: RunDir,
    stage: str,
    evaluate: Callable[[], dict[str, float]] | None = None,
    par: Parallel | None = None,
) -> None:
    """Train ``model``'s trainable parameters for ``cfg.steps`` steps, resuming from the newest checkpoint.

    ``evaluate`` (every ``cfg.eval_every`` steps and at the end) returns held-out metrics,
    logged under ``eval/``; the model is put back in training mode afterwards. It runs on
    the main process only.

    Under a multi-process launcher (``par``) each rank trains on its share of every global
    batch through DDP; the loss is normalised by the *global* count of label tokens, so the
    averaged gradient is the one a single process would compute on the whole batch.
    """
    par = par or Parallel()
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
        par.restore_rng(state)
        start = state["step"]
        run.truncate_metrics(start)
    forward = par.wrap(model)  # DDP under a launcher (it broadcasts rank 0's weights), else the model
    config = getattr(model, "config", None)
    coef = getattr(config, "router_aux_loss_coef", 0.0)
    top_k = getattr(config, "num_experts_per_tok", 1)
    model.train()
    bar = tqdm(
        range(start, cfg.steps), desc=stage, initial=start, total=cfg.steps, dynamic_ncols=True,
        disable=not par.is_main,
    )  # fmt: skip
    for step in bar:
        t0 = time.perf_counter()
        batch = par.shard(get_batch(step))
        kwargs = {}
        if par.enabled:  # DDP averages ranks: each loss is its token sum / (global tokens / world)
            n_items = par.all_sum((batch["labels"][:, 1:] != -100).sum()).float()
            kwargs["num_items_in_batch"] = n_items / par.world
        out = forward(**batch, output_router_logits=True, **kwargs)
        loss = out.loss
        aux_local = out.aux_loss
        if par.enabled and coef > 0 and out.aux_loss is not None:
            # balance the experts' load over the global batch, as one process would
            mask = batch["attention_mask"]
            aux_local = switch_loss_global(out.router_logits, top_k, mask, par.all_sum, par.world)
            loss = loss + coef * (aux_local - out.aux_loss)
        if not par.all_true(bool(torch.isfinite(loss))):
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
            aux = aux_local.item() if aux_local is not None else 0.0
            dt = time.perf_counter() - t0
            tokens = float(par.all_sum(batch["attention_mask"].sum()))
            metrics = {
                **par.all_mean({"loss": loss.item() - coef * aux, "moe/aux_loss": aux}),
                "lr": sched.get_last_lr()[0],
                "grad_norm": norm,
                "perf/step_s": dt,
                "perf/tokens_per_s": tokens / dt,
            }
            if out.router_logits is not None:
                load = par.all_sum(expert_load(out.router_logits, top_k, batch["attention_mask"]))
                metrics.update(load_metrics(load))
            if want_eval and par.is_main:
                metrics.update({f"eval/{k}": v for k, v in evaluate().items()})
                model.train()
            run.log(done, stage, metrics)
            bar.set_postfix(loss=f"{metrics['loss']:.3f}")
        if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < cfg.steps:
            rng = par.rng_states()
            if par.is_main:
                model_state = {k: v for k, v in model.state_dict().items() if k in trainable}
                save_checkpoint(
                    run.checkpoints,
                    done,
                    {
                        "model": model_state,
                        "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(),
                        **rng,
                        "step": done,
                    },
                    cfg.keep_checkpoints,
                )
    bar.close()
    par.check_in_sync([p for p in model.parameters() if p.requires_grad], "trained weights")
