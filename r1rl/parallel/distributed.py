"""Data parallelism under ``accelerate launch`` (or ``torchrun``), and nothing at all in one process.

Every stage reads ``WORLD_SIZE``/``RANK`` from the launcher. With one process nothing here
does any work and the single-process code path runs unchanged. With several:

* ``accelerate`` starts the process group (gloo on CPU, NCCL on GPU);
* each step's *global* batch is split across ranks (``shard``), so 1 process with batch 32
  and 2 processes with batch 32 take the same optimizer steps;
* pretrain and SFT wrap the model in DDP through ``accelerator.prepare``, with an optional
  DDP communication hook for gradient compression (fp16, bf16 or PowerSGD);
* PPO sums its adapter gradients with one flat all-reduce per optimizer step
  (``sync_grads``): its policy and critic passes are separate backward passes through
  different entry points, which DDP's single ``forward`` does not fit;
* statistics that span the batch (advantage whitening, reward normalisation, token counts of
  the loss aggregator, logged metrics) are reduced over all ranks;
* only the main process writes the run directory, logs and checkpoints; each rank's RNG state
  goes into the checkpoint, so a resumed run continues every rank's random stream.

With an accelerate FSDP config (``distributed_type: FSDP``, ``fsdp_version: 2``) the model is
sharded instead of replicated (:meth:`Parallel.wrap`, :mod:`r1rl.parallel.sharding`): torch's FSDP2
``fully_shard`` on every decoder layer, on the embedding and head, and on the root, each rank
holding 1/N of every weight; checkpoints are torch distributed checkpoints, every rank writing its
shards (:class:`r1rl.parallel.checkpoint.ShardedBackend`).

**Device.** A stage's ``device`` option: ``auto`` (the default) is CUDA when a GPU is visible and
``ACCELERATE_USE_CPU`` is not set, else the CPU; ``cpu`` or ``cuda`` forces it, and wins over
``ACCELERATE_USE_CPU`` (``cuda`` without a GPU is a one-line error). Under a launcher each
process takes the GPU of its ``LOCAL_RANK``, and the process group is NCCL on GPUs, gloo on CPU.

Launch on CPU with ``ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2``
(``--cpu --num_processes 2`` silently starts one process), or ``torchrun --nproc_per_node 2``.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, Literal, TypeVar

import torch

from r1rl.errors import UserError
from r1rl.parallel.checkpoint import ShardedBackend
from r1rl.parallel.sharding import init_optimizer_state, shard_model

Compression = Literal["none", "fp16", "bf16", "powersgd"]
DeviceOption = Literal["auto", "cpu", "cuda"]
T = TypeVar("T")


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's rank under a multi-process launcher; 0 otherwise (a lone process is the main one,
    whatever ``RANK`` a scheduler left in its environment)."""
    return int(os.environ.get("RANK", "0")) if world_size() > 1 else 0


def _flag(var: str) -> bool:
    return os.environ.get(var, "false").lower() in ("1", "true", "yes")


def resolve_device(option: str = "auto") -> torch.device:
    """The device a stage runs on (see the module docstring for how ``option`` ranks against
    ``ACCELERATE_USE_CPU``); under a launcher, the GPU of this process's ``LOCAL_RANK``."""
    if option == "cpu" or (
        option == "auto" and (_flag("ACCELERATE_USE_CPU") or not torch.cuda.is_available())
    ):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError("device: cuda, but torch sees no GPU (torch.cuda.is_available() is False)")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())


def _sharding_requested() -> bool:
    """An accelerate FSDP launch: FSDP2 is accepted, FSDP1 and DeepSpeed are refused in one line."""
    if _flag("ACCELERATE_USE_DEEPSPEED"):
        raise UserError(
            "accelerate distributed_type DEEPSPEED is not supported by r1rl's training loops; launch with "
            "FSDP2 (recipes/accelerate/fsdp2.yaml) or DDP (recipes/accelerate/ddp.yaml or ddp_cpu.yaml)"
        )
    if not _flag("ACCELERATE_USE_FSDP"):
        return False
    if os.environ.get("FSDP_VERSION", "1") != "2":
        raise UserError(
            "accelerate FSDP version 1 is not supported; set fsdp_version: 2 in the accelerate config "
            "(recipes/accelerate/fsdp2.yaml)"
        )
    return True


def is_main() -> bool:
    """True in the process that writes the run directory (rank 0, or the only process)."""
    return rank() == 0


# Main-only work (evals, merging and saving) makes the other ranks wait in a collective, hence a
# timeout longer than torch's 30 minutes.
PROCESS_GROUP_TIMEOUT = timedelta(hours=3)


def _start_process_group(device: DeviceOption) -> None:
    """Under a launcher, join the process group now (gloo on CPU, NCCL on GPU), through accelerate's
    shared state, which the stage's ``Accelerator`` then takes over."""
    from accelerate import PartialState

    on = resolve_device(device)
    PartialState(cpu=on.type == "cpu", timeout=PROCESS_GROUP_TIMEOUT)
    atexit.register(_destroy_process_group)  # gloo threads left running abort the interpreter's exit
    if on.type == "cuda":
        torch.cuda.set_device(on)


def main_decides(decide: Callable[[], T], device: DeviceOption = "auto") -> T:
    """``decide()`` run by the main process alone, its result — or its :class:`UserError` — shared
    with every process of a launcher.

    What a run directory holds is read once: processes that each looked at it would disagree when
    it changes between their looks (another job writing there, the main process moving it aside),
    and a process that decided to skip would leave the others waiting for it forever.
    """
    if world_size() == 1:
        return decide()
    outcome: list[Any] = [None]
    if is_main():
        try:
            outcome = [("ok", decide())]
        except UserError as e:
            outcome = [("error", str(e))]
    if not torch.distributed.is_initialized():  # before the stage's Parallel exists
        _start_process_group(device)
    torch.distributed.broadcast_object_list(outcome, src=0)
    kind, value = outcome[0]
    if kind == "error":
        raise UserError(value)
    return value


class Parallel:
    """The data-parallel facts and collectives one stage needs; every method is a no-op alone.

    ``compression`` picks a DDP communication hook (applied by :meth:`wrap`):
    ``fp16``/``bf16`` halve the bytes of every gradient bucket; ``powersgd`` sends rank-
    ``powersgd_rank`` factors of each matrix-shaped gradient (with error feedback) after
    ``powersgd_start_iter`` steps of plain all-reduce.
    """

    def __init__(
        self,
        compression: Compression = "none",
        powersgd_rank: int = 4,
        powersgd_start_iter: int = 10,
        device: DeviceOption = "auto",
    ) -> None:
        self.world, self.rank = world_size(), rank()
        self.device = resolve_device(device)
        self.accelerator: Any = None
        self.sharded = False
        if self.world == 1:
            return
        from accelerate import Accelerator
        from accelerate.utils import (
            DDPCommunicationHookType,
            DistributedDataParallelKwargs,
            DistributedType,
            InitProcessGroupKwargs,
        )

        self.sharded = _sharding_requested()
        if self.sharded and compression != "none":
            raise UserError(
                f"comm.grad_compression={compression} is a DDP hook; FSDP2 reduces its own shards"
            )
        handlers = []
        if compression != "none":
            hook = {
                "fp16": DDPCommunicationHookType.FP16,
                "bf16": DDPCommunicationHookType.BF16,
                "powersgd": DDPCommunicationHookType.POWER_SGD,
            }[compression]
            options = {}
            if compression == "powersgd":
                options = {
                    "matrix_approximation_rank": powersgd_rank,
                    "start_powerSGD_iter": max(2, powersgd_start_iter),  # torch needs >1 with error feedback
                }
            handlers.append(DistributedDataParallelKwargs(comm_hook=hook, comm_state_option=options))
        handlers.append(InitProcessGroupKwargs(timeout=PROCESS_GROUP_TIMEOUT))
        on_cpu = self.device.type == "cpu"
        self.accelerator = Accelerator(kwargs_handlers=handlers, cpu=on_cpu)
        atexit.register(_destroy_process_group)  # gloo threads left running abort the interpreter's exit
        kind = self.accelerator.distributed_type
        if kind not in (DistributedType.MULTI_CPU, DistributedType.MULTI_GPU, DistributedType.FSDP):
            raise UserError(
                f"accelerate distributed_type {kind.value} is not supported by r1rl's training loops; "
                "launch with FSDP2 or DDP (recipes/accelerate/)"
            )
        if not on_cpu:
            torch.cuda.set_device(self.device)

    @classmethod
    def for_training(cls, cfg: Any) -> Parallel:
        """The set-up of a supervised stage (its ``comm`` section), its global batch checked to split."""
        comm = cfg.comm
        par = cls(comm.grad_compression, comm.powersgd_rank, comm.powersgd_start_iter, cfg.device)
        par.check_divisible(cfg.batch_size, "batch_size")
        return par

    @classmethod
    def for_ppo(cls, cfg: Any) -> Parallel:
        """The set-up of the PPO stage, its prompts per step and minibatches checked to split."""
        par = cls(device=cfg.device)
        par.check_divisible(cfg.rollout.prompts_per_step, "rollout.prompts_per_step")
        par.check_divisible(cfg.optim.minibatch_size, "optim.minibatch_size")
        return par

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def check_divisible(self, n: int, what: str) -> int:
        """``n // world``, or a one-line error when ``n`` does not split evenly across processes."""
        if n % self.world:
            raise UserError(f"{what}={n} does not split across {self.world} processes; use a multiple of it")
        return n // self.world

    def shard(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """This rank's contiguous share of a global batch (split along dim 0), on this process's device."""
        if self.enabled:
            n = self.check_divisible(next(iter(batch.values())).shape[0], "batch rows")
            batch = {k: v[self.rank * n : (self.rank + 1) * n] for k, v in batch.items()}
        return {k: v.to(self.device) for k, v in batch.items()}

    def shard_list(self, items: Sequence[Any]) -> list[Any]:
        n = self.check_divisible(len(items), "prompts_per_step") if self.enabled else len(items)
        return list(items[self.rank * n : (self.rank + 1) * n])

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module to call forward on, on this process's device: ``model`` itself alone; under a
        launcher its DDP wrapper, or ``model`` sharded in place by FSDP2 (rank 0's weights either way).

        Build the optimizer after this call: FSDP2 replaces the parameters by sharded ones.
        """
        model.to(self.device)
        if self.sharded:
            self.broadcast_(p for p in model.parameters() if p.requires_grad)  # shards of rank 0's weights
            shard_model(model, self, sum_gradients=False)
            return model
        return self.accelerator.prepare_model(model) if self.enabled else model

    def checkpoint_backend(
        self, template: Callable[[], dict[str, Any]], optimizers: Sequence[torch.optim.Optimizer] = ()
    ) -> Any:
        """How checkpoints are written: ``None`` (the checkpointer's default, one file from the main
        process) unless the model is sharded, then a torch distributed checkpoint of every rank's
        shards, loaded into ``template()`` (the loop's state) once ``optimizers`` have their state."""
        if not self.sharded:
            return None

        def filled() -> dict[str, Any]:
            for opt in optimizers:
                init_optimizer_state(opt)
            return template()

        return ShardedBackend(filled, self)

    @property
    def synced_generation(self) -> bool:
        """Whether ``generate`` must keep every rank stepping until all are done (FSDP2 gathers
        weights in every forward pass, so a rank that stopped early would leave the others waiting)."""
        return self.sharded

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    @contextmanager
    def main_process_first(self) -> Iterator[None]:
        """The main process runs the block first (writing caches, e.g. ``datasets.map``), then the others."""
        if self.enabled and not self.is_main:
            self.barrier()
        yield
        if self.enabled and self.is_main:
            self.barrier()

    def all_sum(self, x: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over ranks (a copy; ``x`` itself alone)."""
        if not self.enabled:
            return x
        y = x.detach().to(self.device, copy=True)  # NCCL reduces GPU tensors only
        torch.distributed.all_reduce(y)
        return y.to(x.device)

    def all_mean(self, values: dict[str, float]) -> dict[str, float]:
        """Average scalar metrics over ranks (shards are equal-sized, so this is the global mean).

        A NaN (a metric with nothing to average on that rank) is left out of the mean; every rank
        must pass the same keys.
        """
        if not self.enabled or not values:
            return values
        keys = sorted(values)
        t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
        valid = ~torch.isnan(t)
        s = self.all_sum(torch.cat([torch.where(valid, t, 0.0), valid.double()]))
        n = len(keys)
        mean = torch.where(s[n:] > 0, s[:n] / s[n:].clamp_min(1), torch.full((n,), float("nan")))
        return dict(zip(keys, mean.tolist()))

    def all_sum_dict(self, values: dict[str, float]) -> dict[str, float]:
        if not self.enabled or not values:
            return values
        keys = sorted(values)
        t = self.all_sum(torch.tensor([float(values[k]) for k in keys], dtype=torch.float64))
        return dict(zip(keys, t.tolist()))

    def all_true(self, flag: bool) -> bool:
        if not self.enabled:
            return flag
        return bool(self.all_sum(torch.tensor([float(not flag)])) == 0)

    def sync_grads(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Sum gradients over ranks with one flat all-reduce.

        A gradient missing on some ranks counts as zero there; one missing on every rank stays
        ``None``, so the optimizer skips that parameter exactly as a lone process would. Sharded
        parameters (FSDP2's DTensors) are left alone: their shards were reduced in the backward.
        """
        if not self.enabled:
            return
        params = [p for p in params if not _is_dtensor(p)]
        if not params:
            return
        device = params[0].device
        has = torch.tensor([float(p.grad is not None) for p in params], device=device)
        grads = [
            p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel(), device=device)
            for p in params
        ]
        flat = torch.cat([*grads, has])
        torch.distributed.all_reduce(flat)
        offset = 0
        for p, seen in zip(params, flat[-len(params) :].tolist()):
            n = p.numel()
            p.grad = flat[offset : offset + n].view_as(p).clone() if seen > 0 else None
            offset += n

    def broadcast_(self, tensors: Iterable[torch.Tensor]) -> None:
        """Overwrite every rank's ``tensors`` with the main process's values."""
        if not self.enabled:
            return
        with torch.no_grad():
            for t in tensors:
                if _is_dtensor(t):
                    raise RuntimeError("broadcast_ is for whole tensors; FSDP2 shards are not broadcast")
                torch.distributed.broadcast(t.data, src=0)

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order (``[obj]`` alone)."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    def gather_values(self, values: list[Any]) -> list[Any]:
        """Every rank's ``values`` in one list, in rank order (``values`` alone)."""
        return [v for part in self.gather_objects(values) for v in part]

    def close(self) -> None:
        if self.enabled and torch.distributed.is_initialized():
            torch.distributed.barrier()


def cpu_launch(
    target: list[str], num_processes: int = 2, config_file: str | None = None
) -> tuple[list[str], dict[str, str]]:
    """The command and environment that run ``target`` (``[script, ...]`` or ``["-m", module, ...]``)
    in ``num_processes`` CPU processes under ``accelerate launch``, on a free local port: DDP, or
    what ``config_file`` says (e.g. ``recipes/accelerate/fsdp2_cpu.yaml``)."""
    import socket
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    how = ["--config_file", config_file] if config_file else ["--multi_gpu", "--mixed_precision", "no"]
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", *how,
        "--num_processes", str(num_processes), "--num_machines", "1", "--dynamo_backend", "no",
        "--main_process_port", str(port), *target,
    ]  # fmt: skip
    return cmd, {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}


def _is_dtensor(t: torch.Tensor) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def _destroy_process_group() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def rank_seed(seed: int) -> int:
    """The seed of this process's random stream: ``seed`` on rank 0, so rank 0 matches a lone process."""
    return seed + 1_000_003 * rank()
