"""Typed, strict configs: one per stage, loaded from YAML with ``key.sub=value`` overrides.

Unknown keys are errors with a did-you-mean; every error names the key and is raised as a
:class:`~r1rl.errors.UserError` before any work starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from r1rl.errors import UserError, did_you_mean


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class TaskConfig(Strict):
    """The embedded arithmetic task and its difficulty knobs."""

    min_operands: int = Field(2, ge=2, description="fewest terms in a problem")
    max_operands: int = Field(3, ge=2, description="most terms in a problem")
    digits: int = Field(2, ge=1, le=6, description="digits of the largest operand")
    operators: str = Field("+-", pattern=r"^[+\-*]+$", description="operators drawn from")
    test_fraction: float = Field(0.1, gt=0, lt=1, description="share of prompt space held out")


class TokenizerConfig(Strict):
    vocab_size: int = Field(512, ge=300, description="BPE vocabulary size, added tokens included")
    num_texts: int = Field(20_000, ge=100, description="corpus documents the tokenizer is trained on")


class ModelConfig(Strict):
    preset: str = Field("tiny", description="size preset (r1rl.model.PRESETS) for a from-scratch model")
    overrides: dict[str, Any] = Field(default_factory=dict, description="Qwen3MoeConfig fields to override")
    router_aux_loss_coef: float = Field(0.01, ge=0, description="Switch load-balance loss weight")
    max_position_embeddings: int = 256


class TrainConfig(Strict):
    """An optimisation loop over supervised batches (pretrain and SFT)."""

    steps: int = Field(500, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0)
    warmup_steps: int = Field(20, ge=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="cosine decay floor, as a fraction of lr")
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    log_every: int = Field(10, ge=1)
    checkpoint_every: int = Field(0, ge=0, description="steps between checkpoints; 0 = none")
    keep_checkpoints: int = Field(2, ge=1)
    eval_every: int = Field(0, ge=0, description="SFT: greedy held-out eval every N steps (0 = off)")
    eval_examples: int = Field(100, ge=1, description="SFT: held-out problems per periodic eval")
    grad_compression: Literal["none", "fp16", "bf16", "powersgd"] = Field(
        "none", description="multi-process only: DDP communication hook that compresses gradients"
    )
    powersgd_rank: int = Field(4, ge=1, description="grad_compression=powersgd: rank of the gradient factors")
    powersgd_start_iter: int = Field(
        10, ge=2, description="grad_compression=powersgd: steps of plain all-reduce before compressing"
    )


class PretrainDataConfig(Strict):
    num_problems: int = Field(60_000, ge=10, description="problems rendered into the corpus")
    seq_len: int = Field(128, ge=16, description="packed sequence length")
    formatted_fraction: float = Field(
        0.0, ge=0, le=1, description="share of documents written in the answer format rather than plain steps"
    )
    sources: list[dict[str, Any]] = Field(
        default_factory=list,
        description="r1rl.data sources ({type: file|hf|arithmetic|stdlib, ...}); empty = the task's problems",
    )
    weights: list[float] | None = Field(None, description="mixture weight per source")
    temperature: float = Field(1.0, gt=0, description="mixture temperature: p_i ∝ w_i^(1/T)")
    filters: list[dict[str, Any]] = Field(
        default_factory=list, description="quality filters ({type: length|symbol_ratio|repetition|...})"
    )
    dedup: dict[str, Any] | None = Field(None, description="exact/near dedup options, e.g. {threshold: 0.8}")
    val_fraction: float = Field(0.0, ge=0, lt=1, description="held-out share, scored as val/loss at the end")


class LoraConfigModel(Strict):
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    target_parameters: list[str] = Field(
        default_factory=lambda: ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"],
        description="3-D expert weights adapted through PEFT's target_parameters",
    )


Tracker = Literal[
    "tensorboard", "wandb", "trackio", "mlflow", "comet_ml", "aim", "clearml", "dvclive", "swanlab"
]


class HubOptions(Strict):
    """Push ``final/`` (with tokenizer and model card) to the Hugging Face Hub when the run ends."""

    push_to_hub: bool = False
    hub_repo_id: str | None = Field(None, description="user/name; required with push_to_hub")
    hub_private: bool = False

    @model_validator(mode="after")
    def _repo_needed(self) -> HubOptions:
        if self.push_to_hub and not self.hub_repo_id:
            raise ValueError("push_to_hub: true needs hub_repo_id (e.g. hub_repo_id: your-name/tiny-moe-ppo)")
        return self


class StageBase(HubOptions):
    output_dir: str
    seed: int = 0
    threads: int | None = Field(None, ge=1, description="torch CPU threads; null = torch's default")
    report_to: list[
        Literal[
            "tensorboard", "wandb", "trackio", "mlflow", "comet_ml", "aim", "clearml", "dvclive", "swanlab"
        ]
    ] = Field(default_factory=list, description="mirror metrics to these trackers (through accelerate)")
    task: TaskConfig = Field(default_factory=TaskConfig)


class PretrainConfig(StageBase):
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: PretrainDataConfig = Field(default_factory=PretrainDataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)


class SFTConfig(StageBase):
    model_path: str = Field(description="the model to adapt: a previous stage's final/ or a Hub id")
    num_examples: int = Field(2000, ge=1, description="distinct training problems")
    answer_only_fraction: float = Field(
        0.0, ge=0, le=1, description="fraction of completions that give only the answer, without worked steps"
    )
    lora: LoraConfigModel = Field(default_factory=LoraConfigModel)
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(steps=100, lr=2e-3))


class TierConfig(Strict):
    name: str = Field(description="tier name, lowest first")
    reward: str = Field(description="registered reward name, package.module:function or file.py:function")
    threshold: float = Field(1.0, description="score at which the tier counts as passed")
    weight: float = Field(1.0, ge=0, description="w_k; in mode scheduled, the weight at schedule_start")
    weight_end: float | None = Field(
        None, ge=0, description="mode scheduled: the weight at schedule_end (null = weight throughout)"
    )
    on_error: Literal["zero", "skip", "raise"] | None = Field(
        None,
        description="an error or timeout scores 0, is not applicable, or raises; null = rewards.on_error",
    )
    timeout_s: float | None = Field(None, gt=0, description="wall-clock limit of one call; null = none")
    normalize: Literal["none", "batch", "running"] | None = Field(
        None, description="whiten this tier's scores before combining; null = rewards.normalize"
    )


class RewardsConfig(Strict):
    mode: Literal["gated", "weighted", "scheduled"] = Field(
        "gated", description="gated: a tier counts once those below pass; scheduled: weights move over steps"
    )
    tiers: list[TierConfig] = Field(
        default_factory=lambda: [
            TierConfig(name="syntax", reward="arithmetic_syntax"),
            TierConfig(name="logic", reward="arithmetic_logic"),
            TierConfig(name="task", reward="arithmetic_task"),
        ]
    )
    on_error: Literal["zero", "skip", "raise"] = Field(
        "zero", description="default for tiers: a failed sample scores 0, is not applicable, or raises"
    )
    normalize: Literal["none", "batch", "running"] = Field(
        "none", description="default for tiers: per-tier whitening by batch or running mean/std"
    )
    schedule_start: int = Field(0, ge=0, description="mode scheduled: step at which weights start moving")
    schedule_end: int | None = Field(
        None, ge=1, description="mode scheduled: step at which they reach weight_end"
    )

    @model_validator(mode="after")
    def _check(self) -> RewardsConfig:
        if not self.tiers:
            raise ValueError("rewards.tiers is empty; give at least one tier")
        names = [t.name for t in self.tiers]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"tier names must be unique; repeated: {', '.join(dup)}")
        if self.mode == "scheduled":
            if self.schedule_end is None or self.schedule_end <= self.schedule_start:
                raise ValueError("mode scheduled needs schedule_end > schedule_start")
        elif any(t.weight_end is not None for t in self.tiers):
            raise ValueError(
                f"weight_end is set but mode is {self.mode!r}; it only applies to mode scheduled"
            )
        return self


class PPOSettings(Strict):
    steps: int = Field(60, ge=1, description="rollout/update iterations")
    prompts_per_step: int = Field(32, ge=1)
    samples_per_prompt: int = Field(2, ge=1)
    max_new_tokens: int = Field(48, ge=1)
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    advantage_estimator: Literal["gae", "grpo", "rloo", "reinforce_pp"] = Field(
        "gae", description="gae trains a critic; the others are critic-free"
    )
    grpo_scale_by_std: bool = Field(True, description="grpo: divide by the group std (false = Dr. GRPO)")
    ppo_epochs: int = Field(2, ge=1)
    minibatch_size: int = Field(32, ge=1, description="sequences per optimizer step")
    micro_batch_size: int | None = Field(
        None, ge=1, description="sequences per forward pass (gradient accumulation); default minibatch_size"
    )
    lr: float = Field(1e-3, gt=0)
    critic_lr: float = Field(2e-3, gt=0)
    warmup_steps: int = Field(0, ge=0)
    critic_warmup_steps: int = Field(
        0, ge=0, description="first steps update only the critic, so the policy starts from sane advantages"
    )
    max_grad_norm: float = Field(1.0, gt=0)
    clip_eps: float = Field(0.2, gt=0, description="lower clip ε (and the upper one unless clip_eps_high)")
    clip_eps_high: float | None = Field(None, gt=0, description="upper clip ε (DAPO's clip-higher)")
    dual_clip: float | None = Field(None, gt=1, description="dual-clip constant c for negative advantages")
    value_clip_eps: float = Field(0.2, gt=0)
    vf_coef: float = Field(0.5, ge=0)
    gamma: float = Field(1.0, ge=0, le=1)
    gae_lambda: float = Field(1.0, ge=0, le=1)
    kl_coef: float = Field(0.02, ge=0, description="β: the KL weight")
    kl_estimator: Literal["k1", "k2", "k3"] = "k1"
    kl_in: Literal["reward", "loss"] = Field(
        "reward", description="reward: −β·KL per token in the reward; loss: +β·KL as a loss term"
    )
    kl_target: float | None = Field(
        None, gt=0, description="adaptive β (Ziegler et al. 2019) toward this per-sequence KL"
    )
    kl_horizon: int = Field(10_000, ge=1, description="adaptive β horizon, in samples")
    whiten_advantages: bool = Field(True, description="gae: whiten advantages over the batch's tokens")
    normalize_rewards: bool = Field(False, description="whiten the sequence scores over the batch")
    reward_clip: float | None = Field(None, gt=0, description="clip sequence scores to ±reward_clip")
    loss_agg_mode: Literal["token-mean", "seq-mean-token-sum", "seq-mean-token-mean"] = "token-mean"
    bf16: bool = Field(False, description="bfloat16 autocast for generation and every forward pass")
    gradient_checkpointing: bool = Field(False, description="recompute activations in the backward pass")
    router_aux_loss_coef: float = Field(0.0, ge=0, description="load-balance loss in the policy objective")
    router_loss: Literal["switch", "variance"] = Field(
        "switch", description="switch: transformers' f·P loss; variance: Σᵢ(pᵢ − 1/E)² (try coef 0.01)"
    )
    router_z_loss_coef: float = Field(0.0, ge=0, description="ST-MoE router z-loss in the policy objective")
    routing_replay: bool = Field(
        False, description="force the update's experts to those recorded with the old log-probs"
    )
    max_consecutive_skips: int = Field(
        3, ge=1, description="halt after this many steps in a row skipped for non-finite values"
    )
    log_every: int = Field(1, ge=1)
    eval_every: int = Field(0, ge=0, description="greedy held-out eval every N steps (0 = off)")
    eval_examples: int = Field(100, ge=1, description="held-out problems per periodic eval")
    checkpoint_every: int = Field(0, ge=0)
    keep_checkpoints: int = Field(2, ge=1)

    @model_validator(mode="after")
    def _check(self) -> PPOSettings:
        if self.advantage_estimator in ("grpo", "rloo") and self.samples_per_prompt < 2:
            raise ValueError(f"advantage_estimator {self.advantage_estimator} needs samples_per_prompt >= 2")
        return self


class PPOConfig(StageBase):
    model_path: str = Field(description="the SFT stage's final/ (an adapter is merged into its base)")
    lora: LoraConfigModel = Field(default_factory=LoraConfigModel)
    critic_model_path: str | None = Field(
        None, description="a separate, smaller model (same tokenizer) trained in full as the critic"
    )
    full_finetune: bool = Field(
        False, description="train every weight (policy, and a separate full critic); the reference is a copy"
    )
    rewards: RewardsConfig = Field(default_factory=RewardsConfig)
    ppo: PPOSettings = Field(default_factory=PPOSettings)


class EvalConfig(StageBase):
    model_path: str
    tasks: list[str] = Field(
        default_factory=lambda: ["arithmetic"],
        description="'arithmetic' (the embedded task) and/or registered harness tasks (sst2, cola, ...)",
    )
    num_examples: int = Field(500, ge=1, description="held-out arithmetic problems scored")
    batch_size: int = Field(128, ge=1)
    max_new_tokens: int = Field(48, ge=1)
    limit: int | None = Field(None, ge=1, description="harness tasks: score the first N documents")
    num_fewshot: int | None = Field(
        0, ge=0, description="harness tasks: few-shot examples per prompt (null = each task's default)"
    )
    fewshot_split: str | None = Field(None, description="harness tasks: split the shots come from")
    data_dir: str | None = Field(None, description="harness tasks: local data root (default ../shared/data)")
    rewards: RewardsConfig = Field(default_factory=RewardsConfig)

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, tasks: list[str]) -> list[str]:
        from r1rl.eval.registry import get_task  # late: the registry reads task YAML

        if not tasks:
            raise ValueError("list at least one task")
        for name in tasks:
            if name != "arithmetic":
                get_task(name)  # unknown names raise with a did-you-mean
        return tasks


class PipelineConfig(HubOptions):
    """All stages; each section holds that stage's keys (``output_dir``, ``model_path`` are filled in)."""

    output_dir: str
    seed: int = 0
    threads: int | None = Field(None, ge=1)
    task: TaskConfig = Field(default_factory=TaskConfig)
    pretrain: dict[str, Any] = Field(default_factory=dict)
    sft: dict[str, Any] = Field(default_factory=dict)
    ppo: dict[str, Any] = Field(default_factory=dict)
    eval: dict[str, Any] = Field(default_factory=dict)


C = TypeVar("C", bound=BaseModel)


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"{p}: expected a mapping of config keys at the top level")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides; values are parsed as YAML scalars/lists."""
    out = yaml.safe_load(yaml.safe_dump(data))  # deep copy
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override {item!r} is not of the form key.sub=value")
        key, raw = item.split("=", 1)
        value = _parse_scalar(raw)
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise UserError(f"override {key!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = value
    return out


def _parse_scalar(raw: str) -> Any:
    """YAML's reading of ``raw``, plus the floats YAML 1.1 leaves as strings (``3e-4``)."""
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def validate(cls: type[C], data: dict[str, Any], source: str = "config") -> C:
    """Validate ``data`` as ``cls``, turning the first error into a one-line :class:`UserError`."""
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        if err["type"] == "extra_forbidden":
            fields = _fields_at(cls, err["loc"][:-1])
            hint = did_you_mean(str(err["loc"][-1]), fields)
            raise UserError(f"{source}: unknown config key {loc!r}{hint}") from None
        if err["type"] == "missing":
            raise UserError(f"{source}: missing required config key {loc!r}") from None
        got = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else ""
        raise UserError(f"{source}: bad value for {loc!r}: {err['msg']}{got}") from None


def _fields_at(cls: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    model: Any = cls
    for part in loc:
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        if field is None:
            return []
        model = field.annotation
    return list(model.model_fields) if hasattr(model, "model_fields") else []


def load_config(cls: type[C], path: str | Path, overrides: list[str] | None = None) -> C:
    data = apply_overrides(load_yaml(path), overrides or [])
    return validate(cls, data, source=str(path))


def dump_config(cfg: BaseModel) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
