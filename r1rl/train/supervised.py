"""One masked next-token training loop, shared by pretraining, SFT and distillation.

Batches come from ``get_batch(step)``, a pure function of the step, so a resumed run sees
exactly the data an uninterrupted one would. The loss is transformers' causal-LM loss on
``labels`` (``-100`` = ignored) plus the model's Switch load-balance loss
(``router_aux_loss_coef`` × aux), which ``Qwen3MoeForCausalLM`` adds itself. Under a
multi-process launcher both are taken over the global batch (see :func:`train_supervised`).
A ``loss_hook`` (:data:`LossHook`; the distill stage's logit distillation) adds a term of its
own; without one the loss is exactly the one above. The loop stands on :mod:`r1rl.train.loop`:
checkpoints, resume, logging cadence and phase timers.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from r1rl.algorithms.router import expert_load, load_metrics, switch_loss_global
from r1rl.config import TrainSettings
from r1rl.errors import UserError
from r1rl.models.encoding import IGNORE
from r1rl.models.moe import routing_shape
from r1rl.parallel.distributed import Parallel
from r1rl.parallel.sharding import SHARDED_EVAL
from r1rl.train.common import check_in_sync, cosine_schedule, grad_norm_finite
from r1rl.train.loop import Cadence, Checkpointer, Row, StepLogger, restore_rng, rng_state_of
from r1rl.train.stage import StageRun

Batch = dict[str, torch.Tensor]
# (batch, logits (B, S, V), token normaliser) -> (loss term, metrics): the normaliser is the one the
# causal-LM loss divides its token sum by (global label tokens / world under a launcher)
LossHook = Callable[[Batch, torch.Tensor, torch.Tensor], tuple[torch.Tensor, dict[str, torch.Tensor]]]


def train_supervised(
    model: torch.nn.Module,
    get_batch: Callable[[int], Batch],
    cfg: TrainSettings,
    stage: StageRun,
    evaluate: Callable[[], dict[str, float]] | None = None,
    loss_hook: LossHook | None = None,
) -> None:
    """Train ``model``'s trainable parameters for ``cfg.steps`` steps into ``stage.run``, resuming from
    the newest checkpoint.

    ``evaluate`` (every ``cfg.log.eval_every`` steps and at the end) returns held-out metrics,
    logged under ``eval/``; the model is put back in training mode afterwards. It runs on
    the main process only.

    Under a multi-process launcher (``stage.parallel``) each rank trains on its share of every
    global batch through DDP; the loss is normalised by the *global* count of label tokens, so the
    averaged gradient is the one a single process would compute on the whole batch.
    ``loss_hook``'s term is added to the loss and its metrics are logged beside it.
    """
    run, par = stage.run, stage.parallel
    if par.sharded and evaluate is not None and cfg.log.eval_every > 0:
        raise UserError(SHARDED_EVAL)
    forward = par.wrap(model)  # on the device; DDP or FSDP2 under a launcher (before the optimizer)
    params = [p for p in model.parameters() if p.requires_grad]
    optim = cfg.optim
    opt = torch.optim.AdamW(params, lr=optim.lr, weight_decay=optim.weight_decay, betas=(0.9, 0.95))
    sched = cosine_schedule(opt, optim.warmup_steps, cfg.steps, optim.min_lr_ratio)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}

    def state_of() -> dict[str, Any]:
        model_state = {k: v for k, v in model.state_dict().items() if k in trainable}
        return {"model": model_state, "optimizer": opt.state_dict(), "scheduler": sched.state_dict()}

    backend = par.checkpoint_backend(state_of, [opt])
    ckpt = Checkpointer(run.checkpoints, cfg.checkpoint.every, cfg.checkpoint.keep, backend, par.is_main)
    start, state = ckpt.resume()
    if state is not None:
        model.load_state_dict(state["model"], strict=False)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        restore_rng(par, state)
    log = StepLogger(run, stage.name, cfg.steps, start, cfg.log.every, is_main=par.is_main)
    step_fn = SupervisedStep(model, forward, opt, cfg, par, stage.name, loss_hook)

    def evaluate_then_train() -> dict[str, float]:
        metrics = evaluate()  # type: ignore[misc]
        model.train()
        return metrics

    def save(done: int) -> Path | None:
        rng = rng_state_of(par)  # a collective: every rank takes part
        return ckpt.save(done, {**state_of(), **rng, "step": done})

    periodic = evaluate_then_train if evaluate is not None else None
    cadence = Cadence(log, ckpt, par, periodic, cfg.log.eval_every)
    model.train()
    for step in log.steps():
        with log.phase("train"):
            out = step_fn(par.shard(get_batch(step)), step)
        sched.step()
        cadence.end_step(step + 1, partial(step_fn.row, out, sched), save)
    check_in_sync(par, [p for p in model.parameters() if p.requires_grad], "trained weights")


class SupervisedStep:
    """One optimizer step of the masked next-token loss (+ the router's load-balance loss)."""

    def __init__(
        self,
        model: torch.nn.Module,
        forward: torch.nn.Module,
        opt: torch.optim.Optimizer,
        cfg: TrainSettings,
        par: Parallel,
        stage: str,
        loss_hook: LossHook | None = None,
    ) -> None:
        self.model, self.forward, self.opt = model, forward, opt
        self.params = [p for p in model.parameters() if p.requires_grad]  # (sharded, under FSDP2)
        self.cfg, self.par, self.stage = cfg, par, stage
        self.loss_hook = loss_hook
        config = getattr(model, "config", None)
        self.coef = getattr(config, "router_aux_loss_coef", 0.0)
        self.top_k = (routing_shape(config) or (0, 1))[1] if config is not None else 1

    def __call__(self, batch: Batch, step: int) -> dict[str, Any]:
        par, kwargs = self.par, {}
        if par.enabled:  # DDP averages ranks: each loss is its token sum / (global tokens / world)
            n_items = par.all_sum((batch["labels"][:, 1:] != -100).sum()).float()
            kwargs["num_items_in_batch"] = n_items / par.world
        out = self.forward(**batch, output_router_logits=True, **kwargs)
        loss, aux = out.loss, out.aux_loss
        if par.enabled and self.coef > 0 and out.aux_loss is not None:
            # balance the experts' load over the global batch, as one process would
            mask = batch["attention_mask"]
            aux = switch_loss_global(out.router_logits, self.top_k, mask, par.all_sum, par.world)
            loss = loss + self.coef * (aux - out.aux_loss)
        objective = loss
        extra: dict[str, torch.Tensor] = {}  # the loss hook's metrics
        if self.loss_hook is not None:
            n_tokens = kwargs.get("num_items_in_batch", (batch["labels"][:, 1:] != -100).sum())
            term, extra = self.loss_hook(batch, out.logits, n_tokens)
            objective = loss + term
        if not par.all_true(bool(torch.isfinite(objective))):
            raise FloatingPointError(f"{self.stage}: non-finite loss at step {step}; lower train.lr")
        objective.backward()
        norm, finite = grad_norm_finite(self.params, self.cfg.optim.max_grad_norm)
        if finite:
            self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return {"loss": loss, "aux": aux, "norm": norm, "router_logits": out.router_logits, "batch": batch,
                "extra": extra}  # fmt: skip

    def row(self, out: dict[str, Any], sched: torch.optim.lr_scheduler.LRScheduler, seconds: float) -> Row:
        """The logged row of a step (its metrics and the learning rate); no side logs."""
        return {**self.metrics(out, seconds), "lr": sched.get_last_lr()[0]}, {}

    def metrics(self, out: dict[str, Any], seconds: float) -> dict[str, float]:
        """The step's metrics, reduced over ranks (loss without the router term, load telemetry)."""
        par, batch = self.par, out["batch"]
        aux = out["aux"].item() if out["aux"] is not None else 0.0
        tokens = float(par.all_sum(batch["attention_mask"].sum()))
        extra = {k: float(v) for k, v in out["extra"].items()}
        metrics = {
            **par.all_mean({"loss": out["loss"].item() - self.coef * aux, "moe/aux_loss": aux, **extra}),
            "grad_norm": out["norm"],
            "perf/step_s": seconds,
            "perf/tokens_per_s": tokens / seconds,
        }
        if out["router_logits"] is not None:
            load = par.all_sum(expert_load(out["router_logits"], self.top_k, batch["attention_mask"]))
            metrics.update(load_metrics(load))
        return metrics


def collate(examples: list[tuple[list[int], list[int]]], pad_id: int) -> Batch:
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


def example_batches(
    examples: list[tuple[list[int], list[int]]], batch_size: int, seed: int, pad_id: int
) -> Callable[[int], Batch]:
    """``get_batch(step)``: a seeded permutation of the examples per epoch, a pure function of the step."""

    def get_batch(step: int) -> Batch:
        per_epoch = max(1, len(examples) // batch_size)
        epoch, i = divmod(step, per_epoch)
        perm = torch.randperm(len(examples), generator=torch.Generator().manual_seed(seed * 1000 + epoch))
        return collate([examples[j] for j in perm[i * batch_size : (i + 1) * batch_size].tolist()], pad_id)

    return get_batch
