"""Rollout engines: what samples PPO's completions (``rollout.engine``).

Notation: ``B`` sequences (prompts × samples), ``P`` prompt tokens, ``T`` completion tokens.

An engine is any object with this small interface (:class:`RolloutEngine`):

- ``generate(prompt_ids, sampling, stop) -> Generation``: right-padded completions, their masks,
  texts and ``truncated`` flags by the rules of :mod:`r1rl.models.generation` (EOS, stop sequences), so
  rewards and masks do not depend on the engine; ``Generation.logprobs`` holds the engine's
  log p(token) of each sampled token under softmax(logits / temperature), before top-p — the
  quantity the training pass computes — or None when it cannot give them.
- ``sync_weights(model)``: called once before the first rollout and after every update. The
  in-process engines below run the training model's own weights, so for them it does nothing;
  an engine that holds a copy of the policy (a vLLM server or ``LLM``) loads the new weights
  here — e.g. the merged policy's ``state_dict`` through its weight-update call.
- ``is_training_model``: whether the samples come from the training model's own forward pass.
  Only then may PPO skip the separate π_old pass on-policy (:func:`r1rl.train.ppo.rollout.on_policy`);
  with any other engine π_old is always the training model's pass, and the engine's log-probs
  only measure the mismatch (``rollout/logprob_diff``) and weigh it (``rollout.tis_cap``).

Engines (:data:`ENGINES`):

- ``generate``: Hugging Face ``generate`` on the training model — a left-padded batch with a KV
  cache. Its log-probs are recorded as it samples and differ from the training pass's by float
  noise only (cached attention against one full forward).
- ``continuous_batching``: transformers' ``generate_batch`` — paged attention, requests
  scheduled token by token, prompts sharing cache blocks — on the same module and weights, run
  in transformers' own background thread. Other kernels and batch layout: not the training
  model's pass. Its log-probs are those ``generate_batch`` returns, which come after temperature
  and top-p, so they are kept only when no logits processor runs (temperature 1, top-p 1).

``auto`` picks ``generate`` on CPU and ``continuous_batching`` on CUDA. On the 2-core CPU this
was measured on (``bench/rollout_engines.py``, tiny preset, one thread) padded ``generate`` gave
1.65× continuous batching's new tokens/s with PPO's LoRA adapter and 2.3× without; on GPUs the
choice follows transformers' design, not a measurement of r1rl. A vLLM engine is not provided:
vLLM's releases pin a torch and transformers other than r1rl's.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

import torch

from r1rl.config.sections import CB_TEMPERED_LOGPROBS, RolloutConfig
from r1rl.errors import UserError
from r1rl.models.encoding import eos_token_ids
from r1rl.models.generation import Generation, finish_generation, generate, left_pad, stop_lengths
from r1rl.registry import Registry

if TYPE_CHECKING:
    from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sampling:
    """How to sample: the rollout options an engine needs."""

    max_new_tokens: int
    do_sample: bool = True
    temperature: float = 1.0
    top_p: float = 1.0


class RolloutEngine(Protocol):
    """What samples PPO's completions; see the module docstring."""

    name: str
    is_training_model: bool  # the samples come from the training model's own forward pass

    def generate(
        self,
        prompt_ids: Sequence[Sequence[int]],
        sampling: Sampling,
        stop: Sequence[str] = (),
        synced: bool = False,
    ) -> Generation:
        """Complete every prompt; ``synced``: the model is sharded, every rank steps until all are done."""
        ...

    def sync_weights(self, model: torch.nn.Module) -> None:
        """Take the training model's current weights (before the first rollout, after every update)."""
        ...


# (model, tokenizer, device) -> engine; device None = where the model's parameters are
EngineFactory = Callable[..., RolloutEngine]
ENGINES: Registry[EngineFactory] = Registry("rollout engine")
AUTO = {"cpu": "generate", "cuda": "continuous_batching"}  # rollout.engine auto, by device type


def resolve_engine(name: str, device: torch.device, sharded: bool = False) -> str:
    """``auto`` -> the engine :data:`AUTO` names for ``device`` (``generate`` elsewhere, and for a
    sharded model); others unchanged."""
    if name != "auto":
        return name
    return "generate" if sharded else AUTO.get(device.type, "generate")


def build_engine(
    rollout: RolloutConfig,
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    device: torch.device | None = None,
    sharded: bool = False,
) -> RolloutEngine:
    """The engine ``rollout.engine`` names (a :class:`~r1rl.config.RolloutConfig`), for ``model`` on
    ``device`` (default: where its parameters are); ``sharded``: the model is (to be) FSDP2-sharded.

    Combinations that cannot work are refused here in one line: a model whose attention cannot
    page, truncated importance sampling with continuous batching's tempered log-probs, and
    continuous batching of a sharded model.
    """
    device = device if device is not None else _device(model)
    name = resolve_engine(rollout.engine, device, sharded)
    if name == "continuous_batching" and sharded:
        raise UserError(SHARDED_CB)
    engine = ENGINES.get(name, "rollout.engine")(model, tokenizer, device)
    tempered = (rollout.temperature, rollout.top_p) != (1, 1)
    if name == "continuous_batching" and rollout.tis_cap is not None and tempered:
        raise UserError(CB_TEMPERED_LOGPROBS)
    log.info("rollout engine: %s%s", name, " (auto)" if rollout.engine == "auto" else "")
    return engine


@ENGINES.register("generate")
class GenerateEngine:
    """Padded Hugging Face ``generate`` with a KV cache, on the training model itself."""

    name = "generate"
    is_training_model = True

    def __init__(
        self, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, device: torch.device | None = None
    ) -> None:
        self.model, self.tokenizer = model, tokenizer  # generate runs where the model's parameters are

    def generate(
        self,
        prompt_ids: Sequence[Sequence[int]],
        sampling: Sampling,
        stop: Sequence[str] = (),
        synced: bool = False,
    ) -> Generation:
        s = sampling
        return generate(
            self.model, self.tokenizer, prompt_ids, max_new_tokens=s.max_new_tokens, do_sample=s.do_sample,
            temperature=s.temperature, top_p=s.top_p, stop=stop, synced=synced, return_logprobs=True,
        )  # fmt: skip

    def sync_weights(self, model: torch.nn.Module) -> None:
        """Nothing to do: the engine runs the training model's weights."""


SHARDED_CB = (
    "rollout.engine continuous_batching cannot sample from a sharded (FSDP) model: every rank would "
    "schedule its own requests; use rollout.engine generate"
)
PAGEABLE = ("eager", "paged|eager", "sdpa")  # and flash attention, which continuous batching pages too


@ENGINES.register("continuous_batching")
class ContinuousBatchingEngine:
    """transformers' continuous batching (``generate_batch``, paged attention) on the training weights.

    ``generate_batch`` ends a request at EOS or ``max_new_tokens``; stop sequences are applied
    afterwards with :class:`~r1rl.models.generation.StopOnStrings`'s look-back (:func:`stop_lengths`), so
    masks and texts follow the same rules as ``generate`` (the tokens after a stop sequence are
    generated, then dropped). Sampling draws from a seed taken from the caller's torch random
    stream, so runs are reproducible. ``cb_options`` are ``ContinuousBatchingConfig`` fields; off
    CUDA the paged cache is sized to the batch (transformers would otherwise claim 90% of the
    host's memory for it).
    """

    name = "continuous_batching"
    is_training_model = False

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        device: torch.device | None = None,
        **cb_options: Any,
    ) -> None:
        check_pageable(model)
        # a transformers model, or a PEFT model that forwards generate_batch and its configs to its base
        self.model = cast("PreTrainedModel", model)
        self.tokenizer, self.cb_options = tokenizer, cb_options
        self.device = device if device is not None else _device(model)

    def generate(
        self,
        prompt_ids: Sequence[Sequence[int]],
        sampling: Sampling,
        stop: Sequence[str] = (),
        synced: bool = False,
    ) -> Generation:
        if synced:  # each rank would schedule its own requests: their gathers would not pair up
            raise UserError(SHARDED_CB)

        tok, prompts = self.tokenizer, [list(p) for p in prompt_ids]
        eos_ids = eos_token_ids(self.model, tok)
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else eos_ids[0]
        gen_cfg = self._generation_config(sampling, eos_ids, pad_id)
        seed = int(torch.randint(0, 2**31 - 1, ()).item())  # the caller's stream decides the samples
        cb_cfg = self._cb_config(prompts, sampling.max_new_tokens, seed)
        runner = self.model.generate_batch  # on a PEFT model: the base model's, with the adapters in place
        with _background_ready(runner.__self__, self.model):
            out = runner(prompts, generation_config=gen_cfg, continuous_batching_config=cb_cfg,
                         max_new_tokens=sampling.max_new_tokens, progress_bar=False)  # fmt: skip
        results = list(out.values())
        failed = [r.error for r in results if r.error is not None]
        if len(results) != len(prompts) or failed:
            raise RuntimeError(
                f"continuous batching returned {len(results)} of {len(prompts)} completions: {failed[:1]}"
            )
        rows = [r.generated_tokens for r in results]
        ids, attn = left_pad(prompts, pad_id)
        comp = torch.full((len(rows), max(len(r) for r in rows)), pad_id, dtype=torch.long)  # (B, T)
        logprobs = torch.zeros(comp.shape)  # (B, T)
        for i, r in enumerate(results):
            comp[i, : len(r.generated_tokens)] = torch.tensor(r.generated_tokens, dtype=torch.long)
            logprobs[i, : len(r.logprobs)] = torch.tensor(r.logprobs, dtype=torch.float32)
        stopped_at = torch.tensor(stop_lengths(tok, rows, stop)) if stop else None
        g = finish_generation(tok, ids, attn, comp, eos_ids, pad_id, stop, stopped_at, logprobs)
        if not _untempered(runner.__self__, gen_cfg):
            g.logprobs = None
        return _trimmed(g)

    def sync_weights(self, model: torch.nn.Module) -> None:
        """Nothing to do: the engine runs the training model's weights."""

    def _generation_config(self, s: Sampling, eos_ids: list[int], pad_id: int) -> GenerationConfig:
        """The model's generation config with the rollout's sampling, as ``generate`` would see it."""
        cfg = copy.deepcopy(self.model.generation_config)
        cfg.update(
            do_sample=s.do_sample, temperature=s.temperature if s.do_sample else None,
            top_p=s.top_p if s.do_sample else None, top_k=None, max_new_tokens=s.max_new_tokens,
            eos_token_id=eos_ids, pad_token_id=pad_id,
        )  # fmt: skip
        return cfg

    def _cb_config(
        self, prompts: list[list[int]], max_new_tokens: int, seed: int
    ) -> ContinuousBatchingConfig:
        from transformers.generation.configuration_utils import ContinuousBatchingConfig

        options: dict[str, Any] = {"return_logprobs": True, "seed": seed}
        if self.device.type != "cuda":
            page = 32
            per_request = math.ceil((max(len(p) for p in prompts) + max_new_tokens) / page)
            options.update(
                page_size=page, num_blocks=len(prompts) * per_request + 1,
                max_batch_tokens=max(sum(len(p) for p in prompts), len(prompts)),
            )  # fmt: skip
        return ContinuousBatchingConfig(**{**options, **self.cb_options})


def check_pageable(model: torch.nn.Module) -> None:
    """Refuse, in one line, a model continuous batching cannot run."""
    if not hasattr(model, "generate_batch"):
        raise UserError(
            f"rollout.engine continuous_batching needs a transformers model with generate_batch; "
            f"{type(model).__name__} has none (use rollout.engine generate)"
        )
    impl = getattr(model.config, "_attn_implementation", None) or "eager"
    if impl not in PAGEABLE and "flash" not in impl:
        raise UserError(
            f"rollout.engine continuous_batching: the model's attention implementation {impl!r} cannot "
            "page (continuous batching takes eager, sdpa or flash attention); use rollout.engine generate"
        )


@contextmanager
def _background_ready(base: PreTrainedModel, model: torch.nn.Module) -> Iterator[None]:
    """Run ``base``'s forward as ``generate_batch``'s background thread needs it, then put things back.

    - router logits off: the flat, paged batch has no attention mask for the load-balance loss;
    - the caller's autocast, which is thread-local and would not reach the background thread;
    - train/eval mode: ``generate_batch`` leaves the model in eval mode, which would turn off
      gradient checkpointing in the update.
    """
    was_training, router_logits = model.training, getattr(base.config, "output_router_logits", None)
    device = _device(base).type
    autocast = torch.is_autocast_enabled(device)
    own_forward = base.__dict__.get("forward")  # an instance attribute (a hook's wrapper), if any
    if router_logits is not None:
        base.config.output_router_logits = False
    if autocast:
        base.forward = torch.autocast(device, dtype=torch.get_autocast_dtype(device))(base.forward)
    try:
        yield
    finally:
        if autocast and own_forward is None:
            del base.forward  # the class's method again
        elif autocast:
            base.forward = own_forward
        if router_logits is not None:
            base.config.output_router_logits = router_logits
        model.train(was_training)


def _untempered(base: PreTrainedModel, gen_cfg: GenerationConfig) -> bool:
    """Whether ``generate_batch``'s log-probs are the model's own: no logits processor runs."""
    return len(base._get_logits_processor(gen_cfg)) == 0


def _trimmed(g: Generation) -> Generation:
    """``g`` cut to its longest row, the width ``generate`` gives (it stops once every row has ended)."""
    T = int(g.completion_mask.sum(1).max())
    g.completion_ids, g.completion_mask = g.completion_ids[:, :T], g.completion_mask[:, :T]
    if g.logprobs is not None:
        g.logprobs = g.logprobs[:, :T]
    return g


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device
