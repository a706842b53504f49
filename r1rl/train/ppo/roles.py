"""One frozen base, three roles: policy and critic are LoRA adapters, the reference is the base.

Notation: ``B`` sequences, ``S`` prompt + completion tokens, ``T`` completion tokens.

- policy: adapter ``"policy"``; its log-probs come from the language-model head;
- critic: adapter ``"critic"`` on the same base plus a linear value head on the final hidden
  state (PEFT needs both adapters to target the same modules and parameters);
- reference: the same base with every adapter disabled. No weights are copied.
"""

from __future__ import annotations

import copy
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Protocol

import torch
from peft import PeftModel

from r1rl.algorithms.ppo import entropy_from_logits, logprobs_from_logits
from r1rl.config import LoraConfigModel, PPOConfig
from r1rl.errors import UserError
from r1rl.models.factory import add_lora, decoder_of, load_merged, resolve_model_path, torch_dtype
from r1rl.parallel.distributed import Parallel
from r1rl.parallel.sharding import merged_policy

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel


class CausalLMOutput(Protocol):
    """What the PPO losses read of an MoE causal LM's forward output (transformers'
    ``MoeCausalLMOutputWithPast``)."""

    logits: torch.Tensor  # (B, S, V)
    aux_loss: torch.Tensor | None  # the Switch load-balance loss (with router logits asked for)
    router_logits: tuple[torch.Tensor, ...] | None  # L × (B·S, E)


def autocast_context(module: torch.nn.Module, dtype: torch.dtype | None) -> AbstractContextManager[None]:
    """The autocast context a role's forward passes run in: a no-op unless ``dtype``."""
    if dtype is None:
        return nullcontext()
    device = next(module.parameters()).device.type  # works for both role layouts
    return torch.autocast(device_type=device, dtype=dtype)


class ActorCritic(torch.nn.Module):
    def __init__(
        self,
        base: PreTrainedModel,
        lora_cfg: LoraConfigModel,
        value_head_init_std: float = 0.0,
        critic: bool = True,
        critic_model: PreTrainedModel | None = None,
    ) -> None:
        """``critic=False`` builds the policy alone, for the critic-free advantage estimators.

        ``critic_model``: a separate (typically smaller) causal LM with the same vocabulary whose
        decoder stack, fully trained, is the critic instead of a second adapter on the base.
        """
        super().__init__()
        self.peft: PeftModel = add_lora(base, lora_cfg, adapter_name="policy")
        self.value_head: torch.nn.Linear | None = None
        self.critic_body: PreTrainedModel | None = None  # the decoder stack of a separate critic model
        if critic and critic_model is not None:
            if critic_model.config.vocab_size != base.config.vocab_size:
                raise ValueError(
                    f"the critic model's vocabulary ({critic_model.config.vocab_size}) differs from the "
                    f"policy's ({base.config.vocab_size}): they must share a tokenizer"
                )
            self.critic_body = decoder_of(critic_model).requires_grad_(True)
            self.value_head = torch.nn.Linear(critic_model.config.hidden_size, 1)
            torch.nn.init.normal_(self.value_head.weight, std=value_head_init_std)
            torch.nn.init.zeros_(self.value_head.bias)
        elif critic:
            self.peft.add_adapter("critic", copy.deepcopy(self.peft.peft_config["policy"]))
            self.value_head = torch.nn.Linear(base.config.hidden_size, 1)
            torch.nn.init.normal_(self.value_head.weight, std=value_head_init_std)
            torch.nn.init.zeros_(self.value_head.bias)
        self.peft.set_adapter("policy")
        self.autocast_dtype: torch.dtype | None = None  # e.g. torch.bfloat16: forward passes autocast
        self.temperature = 1.0  # log-probs of softmax(logits / temperature): the policy the rollouts sample

    def autocast(self) -> AbstractContextManager[None]:
        """The autocast context every forward pass runs in (a no-op unless ``autocast_dtype``)."""
        return autocast_context(self, self.autocast_dtype)

    def enable_gradient_checkpointing(self) -> None:
        """Recompute activations in the backward pass (non-reentrant, so frozen inputs are fine)."""
        self.peft.get_base_model().gradient_checkpointing_enable(
            gradient_checkpointing_kwargs={"use_reentrant": False}
        )
        self.peft.train()  # transformers only checkpoints in training mode

    @property
    def has_critic(self) -> bool:
        return self.value_head is not None

    @property
    def config(self) -> PretrainedConfig:
        return self.peft.config

    def adapter_parameters(self, adapter: str) -> list[torch.nn.Parameter]:
        if adapter == "critic" and self.critic_body is not None and self.value_head is not None:
            return [*self.critic_body.parameters(), *self.value_head.parameters()]
        params = [p for n, p in self.peft.named_parameters() if f".{adapter}." in n and "lora_" in n]
        if adapter == "critic" and self.value_head is not None:
            params += list(self.value_head.parameters())
        return params

    def use(self, adapter: str) -> None:
        """Activate one adapter (PEFT makes only the active adapter's parameters trainable)."""
        if adapter == "critic" and self.critic_body is not None:
            return  # a separate critic network: nothing to switch on the base
        self.peft.set_adapter(adapter)
        for p in self.adapter_parameters(adapter):
            p.requires_grad_(True)

    def policy_logprobs(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        n_completion: int,
        reference: bool = False,
        with_entropy: bool = False,
        output_router_logits: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None, CausalLMOutput]:
        """Log-probs of the last ``n_completion`` tokens under the policy (or the reference).

        (B, S) ids and mask -> logprobs (B, T), entropy (B, T) or None, and the model output.
        """
        ctx = self.peft.disable_adapter() if reference else nullcontext()
        with ctx, self.autocast():
            if not reference:
                self.use("policy")
            return completion_logprobs(
                self.peft, input_ids, attention_mask, n_completion, with_entropy, output_router_logits,
                self.temperature,
            )  # fmt: skip

    def values(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, n_completion: int
    ) -> torch.Tensor:
        """V(s_t) for the state before each completion token is chosen. (B, S) -> (B, T).

        Leaves the critic adapter active: callers switch back with ``use("policy")``.
        """
        if self.value_head is None:
            raise RuntimeError("this ActorCritic was built without a critic (critic=False)")
        self.use("critic")
        # the separate critic network, or the decoder stack with the critic's LoRA active
        body = self.critic_body if self.critic_body is not None else decoder_of(self.peft.get_base_model())
        with self.autocast():
            return completion_values(body, self.value_head, input_ids, attention_mask, n_completion)

    @property
    def generation_model(self) -> torch.nn.Module:
        """The module to ``generate`` with: the PEFT model, with the policy adapter active."""
        return self.peft

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """What a checkpoint holds: adapters, value head and a separate critic (the base is frozen)."""
        keep = ("value_head", "critic_body.")
        return {k: v for k, v in self.state_dict().items() if "lora_" in k or k.startswith(keep)}

    def final_model(self) -> torch.nn.Module:
        """The policy as a plain transformers model: its adapter merged into the base."""
        return self.peft.merge_and_unload(adapter_names=["policy"])


class FullActorCritic(torch.nn.Module):
    """Full-parameter mode, for small models: three separate networks, the same interface.

    policy = the base, every weight trained; reference = a frozen copy of it; critic = a copy of
    the decoder stack plus a value head, every weight trained. Memory is roughly three models
    plus two full optimizer states — the set-up the LoRA roles exist to avoid.
    """

    def __init__(self, base: PreTrainedModel, value_head_init_std: float = 0.0, critic: bool = True) -> None:
        super().__init__()
        self.policy: PreTrainedModel = base.requires_grad_(True)
        self.reference: PreTrainedModel = copy.deepcopy(base).requires_grad_(False)
        self.critic_body: PreTrainedModel | None = None  # a copy of the base's decoder stack
        self.value_head: torch.nn.Linear | None = None
        if critic:
            self.critic_body = copy.deepcopy(decoder_of(base)).requires_grad_(True)
            self.value_head = torch.nn.Linear(base.config.hidden_size, 1)
            torch.nn.init.normal_(self.value_head.weight, std=value_head_init_std)
            torch.nn.init.zeros_(self.value_head.bias)
        self.autocast_dtype: torch.dtype | None = None
        self.temperature = 1.0

    def autocast(self) -> AbstractContextManager[None]:
        return autocast_context(self, self.autocast_dtype)

    @property
    def config(self) -> PretrainedConfig:
        return self.policy.config

    @property
    def has_critic(self) -> bool:
        return self.value_head is not None

    @property
    def generation_model(self) -> torch.nn.Module:
        return self.policy

    def adapter_parameters(self, role: str) -> list[torch.nn.Parameter]:
        if role == "policy":
            return list(self.policy.parameters())
        if self.critic_body is None or self.value_head is None:
            return []
        return [*self.critic_body.parameters(), *self.value_head.parameters()]

    def use(self, role: str) -> None:
        """Nothing to switch: each role is its own network."""

    def enable_gradient_checkpointing(self) -> None:
        kwargs = {"gradient_checkpointing_kwargs": {"use_reentrant": False}}
        self.policy.gradient_checkpointing_enable(**kwargs)
        self.policy.train()
        if self.critic_body is not None:
            self.critic_body.gradient_checkpointing_enable(**kwargs)
            self.critic_body.train()

    def policy_logprobs(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        n_completion: int,
        reference: bool = False,
        with_entropy: bool = False,
        output_router_logits: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None, CausalLMOutput]:
        model = self.reference if reference else self.policy
        with self.autocast():
            return completion_logprobs(
                model,
                input_ids,
                attention_mask,
                n_completion,
                with_entropy,
                output_router_logits,
                self.temperature,
            )

    def values(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, n_completion: int
    ) -> torch.Tensor:
        if self.critic_body is None or self.value_head is None:
            raise RuntimeError("this FullActorCritic was built without a critic (critic=False)")
        with self.autocast():
            body, head = self.critic_body, self.value_head
            return completion_values(body, head, input_ids, attention_mask, n_completion)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items() if not k.startswith("reference.")}

    def final_model(self) -> torch.nn.Module:
        return self.policy


def completion_logprobs(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    n_completion: int,
    with_entropy: bool = False,
    output_router_logits: bool = False,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor | None, CausalLMOutput]:
    """Log-probs (and entropies) of the last ``n_completion`` tokens under softmax(logits / temperature),
    the distribution sampling at that temperature draws from (as TRL and veRL score it). (B, S) -> (B, T)."""
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids_from(attention_mask),
        output_router_logits=output_router_logits,
        use_cache=False,
    )
    logits = out.logits[:, -n_completion - 1 : -1]  # (B, T, V): position t predicts token t+1
    if temperature != 1.0:
        logits = logits / temperature
    labels = input_ids[:, -n_completion:]
    logprobs = logprobs_from_logits(logits, labels)
    entropy = entropy_from_logits(logits) if with_entropy else None
    return logprobs, entropy, out


def completion_values(
    body: torch.nn.Module,
    head: torch.nn.Linear,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    n_completion: int,
) -> torch.Tensor:
    """V(s_t) from a decoder stack and a linear head, for the last ``n_completion`` states. -> (B, T)."""
    hidden = body(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids_from(attention_mask),
        use_cache=False,
    ).last_hidden_state
    return head(hidden[:, -n_completion - 1 : -1].float()).squeeze(-1)


def position_ids_from(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted from the first real token, as ``generate`` does with left padding. (B, S)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp_min(0)


def build_roles(cfg: PPOConfig, model_path: str) -> ActorCritic | FullActorCritic:
    """Policy, critic (with GAE) and reference for a PPO config: LoRA roles on one base by default,
    a separate critic network with ``critic_model_path``, or three full networks with ``full_finetune``."""
    with_critic = cfg.algorithm.advantage_estimator == "gae"
    dtype = torch_dtype(cfg.base_dtype)
    if cfg.full_finetune:
        ac: ActorCritic | FullActorCritic = FullActorCritic(
            load_merged(model_path, dtype), critic=with_critic
        )
    else:
        critic_model = None
        if cfg.critic_model_path and with_critic:
            critic_model = load_merged(resolve_model_path(cfg.critic_model_path, "critic_model_path"), dtype)
        base = load_merged(model_path, dtype)
        try:
            ac = ActorCritic(base, cfg.lora, critic=with_critic, critic_model=critic_model)
        except ValueError as e:
            raise UserError(f"critic_model_path: {e}") from None
    if cfg.compute.bf16:
        ac.autocast_dtype = torch.bfloat16
    if cfg.compute.gradient_checkpointing:
        ac.enable_gradient_checkpointing()
    return ac


def final_policy(
    ac: ActorCritic | FullActorCritic, par: Parallel, cfg: PPOConfig, model_path: str
) -> torch.nn.Module | None:
    """What PPO's ``final/`` holds: the policy merged into its base, on the main process (``None``
    elsewhere); under FSDP2 the adapter is gathered and merged into a fresh copy of the base."""
    if getattr(par, "sharded", False):
        return merged_policy(ac, par, model_path, cfg.lora, torch_dtype(cfg.base_dtype))
    return ac.final_model() if par.is_main else None
