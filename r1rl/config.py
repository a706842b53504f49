"""Typed, strict configs: one per stage, loaded from YAML with ``key.sub=value`` overrides.

Unknown keys are errors with a did-you-mean; every error names the key and is raised as a
:class:`~r1rl.errors.UserError` before any work starts.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from r1rl.errors import UserError, did_you_mean


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class ArithmeticTaskConfig(Strict):
    """The embedded arithmetic task: a seeded generator of worked problems (``r1rl.tasks.arithmetic``)."""

    name: Literal["arithmetic"] = "arithmetic"
    min_operands: int = Field(2, ge=2, description="fewest terms in a problem")
    max_operands: int = Field(3, ge=2, description="most terms in a problem")
    digits: int = Field(2, ge=1, le=6, description="digits of the largest operand")
    operators: str = Field("+-", pattern=r"^[+\-*]+$", description="operators drawn from")
    test_fraction: float = Field(0.1, gt=0, lt=1, description="share of prompt space held out")
    answer_only_fraction: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of SFT completions that give only the answer, not the steps",
    )
    train_size: int = Field(20_000, ge=1, description="distinct training problems (SFT takes the first ones)")
    heldout_size: int = Field(500, ge=1, description="held-out problems (the same ones whatever the seed)")

    @model_validator(mode="after")
    def _operands(self) -> ArithmeticTaskConfig:
        if self.min_operands > self.max_operands:
            raise ValueError(f"min_operands ({self.min_operands}) > max_operands ({self.max_operands})")
        return self


class BenchmarkTaskConfig(Strict):
    """A built-in task on a benchmark's data: its loader and prompt format are the eval harness's."""

    name: Literal["gsm8k", "mbpp", "cuad"] = Field(
        description="gsm8k (math tiers), mbpp (code), cuad (extraction)"
    )
    source: Literal["local", "hub"] = Field(
        "local", description="local files under data_dir, or the Hugging Face Hub (needs the network)"
    )
    data_dir: str | None = Field(
        None, description="local data root (default $R1RL_DATA_DIR or ../shared/data)"
    )
    eval_fraction: float = Field(
        0.2, gt=0, lt=1,
        description="held-out share where the data has no training split (GSM8K offline; CUAD, by contract)",
    )  # fmt: skip
    split_seed: int = Field(
        0, ge=0, description="seed of that split; fixed, so every stage sees the same one"
    )
    max_prompt_length: int | None = Field(
        None, ge=1, description="drop rows whose prompt is longer than this many tokens (counted)"
    )
    max_length: int | None = Field(
        None, ge=2, description="SFT: truncate prompt + completion to this many tokens"
    )
    limit: int | None = Field(None, ge=1, description="train on the first N rows")
    eval_limit: int | None = Field(None, ge=1, description="evaluate on the first N held-out rows")


def _task_by_name(value: Any) -> Any:
    """``task: gsm8k`` means ``task: {name: gsm8k}``; a mapping without a name is the arithmetic task."""
    if isinstance(value, str):
        return {"name": value}
    if isinstance(value, dict) and "name" not in value:
        return {"name": "arithmetic", **value}
    return value


TaskConfig = Annotated[
    ArithmeticTaskConfig | BenchmarkTaskConfig, Field(discriminator="name"), BeforeValidator(_task_by_name)
]


class DataConfig(Strict):
    """Your own dataset, loaded with ``datasets``: a local file or folder, or a Hub dataset.

    Every column other than the prompt (and the SFT completion) reaches every reward function as
    a keyword argument, as in TRL.
    """

    path: str | None = Field(
        None,
        description="a local json/jsonl/parquet/csv file or folder, or a Hub dataset id; null = the task's",
    )
    subset: str | None = Field(None, description="the Hub dataset's configuration (load_dataset's name)")
    split: str = Field("train", description="the split trained on")
    data_files: str | list[str] | dict[str, str | list[str]] | None = Field(
        None, description="files per split, as load_dataset's data_files"
    )
    name: str | None = Field(
        None, description="the task's name in results and cards (default: the file's stem)"
    )
    prompt_column: str = Field("prompt", description="the prompt: text, or a list of chat messages")
    completion_column: str = Field("completion", description="SFT: the target completion (text or messages)")
    messages_column: str | None = Field(
        None,
        description="chat data: one conversation per row; the prompt is every turn before the last reply",
    )
    answer_column: str | None = Field(None, description="a column that reaches the rewards as 'answer'")
    columns: dict[str, str] = Field(
        default_factory=dict, description="reward column -> dataset column, for columns named otherwise"
    )
    prompt_template: str | None = Field(
        None,
        description="Jinja template over the row's columns: the prompt, e.g. 'Q: {{question}}\\nA:'",
    )
    system_prompt: str | None = Field(None, description="chat data: a system message put before every prompt")
    stop: list[str] = Field(default_factory=list, description="stop sequences that end a completion")
    eval_split: str | None = Field(None, description="the held-out split; null = a seeded eval_fraction")
    eval_fraction: float = Field(0.1, gt=0, lt=1, description="held-out share of split, when no eval_split")
    split_seed: int = Field(
        0, ge=0, description="seed of that split; fixed, so every stage and run holds out the same rows"
    )
    shuffle: bool = Field(False, description="shuffle the rows (seeded) before limit")
    limit: int | None = Field(None, ge=1, description="train on the first N rows")
    eval_limit: int | None = Field(None, ge=1, description="evaluate on the first N held-out rows")
    max_prompt_length: int | None = Field(
        None, ge=1, description="drop rows whose prompt is longer than this many tokens (counted)"
    )
    max_length: int | None = Field(
        None, ge=2, description="SFT: truncate prompt + completion to this many tokens"
    )
    num_proc: int | None = Field(None, ge=1, description="processes for datasets.map (tokenisation)")


class TokenizerConfig(Strict):
    vocab_size: int = Field(512, ge=300, description="BPE vocabulary size, added tokens included")
    num_texts: int = Field(20_000, ge=100, description="corpus documents the tokenizer is trained on")


class ModelConfig(Strict):
    preset: str = Field("tiny", description="size preset (r1rl.model.PRESETS) for a from-scratch model")
    overrides: dict[str, Any] = Field(default_factory=dict, description="Qwen3MoeConfig fields to override")
    router_aux_loss_coef: float = Field(0.01, ge=0, description="Switch load-balance loss weight")
    max_position_embeddings: int = Field(256, ge=16, description="context window of a from-scratch model")

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, preset: str) -> str:
        from r1rl.presets import PRESETS

        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}{did_you_mean(preset, PRESETS)}")
        return preset


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


class PretrainDataConfig(DataConfig):
    """The pretraining corpus: the task's documents (or ``data.path``'s rows), or ``r1rl.data`` sources."""

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
    task: TaskConfig = Field(
        default_factory=ArithmeticTaskConfig, description="the built-in task by name, with its options"
    )
    data: DataConfig | None = Field(None, description="your own dataset; its rows replace the task's")


class PretrainConfig(StageBase):
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: PretrainDataConfig = Field(default_factory=PretrainDataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)


class SFTConfig(StageBase):
    model_path: str = Field(description="the model to adapt: a previous stage's final/ or a Hub id")
    num_examples: int | None = Field(
        None, ge=1, description="train on the first N rows of the task's training split (null = all)"
    )
    lora: LoraConfigModel = Field(default_factory=LoraConfigModel)
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(steps=100, lr=2e-3))
    rewards: RewardsConfig = Field(
        default_factory=lambda: RewardsConfig(), description="the hierarchy of the periodic held-out eval"
    )


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
    tiers: list[TierConfig] | None = Field(
        None, description="the tiers, lowest first; null = the task's own (e.g. arithmetic syntax/logic/task)"
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
        if self.tiers is not None and not self.tiers:
            raise ValueError("rewards.tiers is empty; give at least one tier")
        names = [t.name for t in self.tiers or []]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"tier names must be unique; repeated: {', '.join(dup)}")
        if self.mode == "scheduled":
            if self.schedule_end is None or self.schedule_end <= self.schedule_start:
                raise ValueError("mode scheduled needs schedule_end > schedule_start")
        elif any(t.weight_end is not None for t in self.tiers or []):
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
    tasks: list[str] | None = Field(
        None,
        description="the stage's own task (by its name: its held-out split, scored by its reward hierarchy) "
        "and/or benchmark tasks of the harness (sst2, cola, gsm8k, ...); null = the own task only",
    )
    num_examples: int = Field(500, ge=1, description="held-out rows of the own task scored (the first N)")
    batch_size: int = Field(128, ge=1)
    max_new_tokens: int = Field(48, ge=1)
    limit: int | None = Field(None, ge=1, description="harness tasks: score the first N documents")
    num_fewshot: int | None = Field(
        0, ge=0, description="harness tasks: few-shot examples per prompt (null = each task's default)"
    )
    fewshot_split: str | None = Field(None, description="harness tasks: split the shots come from")
    data_dir: str | None = Field(None, description="harness tasks: local data root (default ../shared/data)")
    rewards: RewardsConfig = Field(default_factory=RewardsConfig)

    @model_validator(mode="after")
    def _known_tasks(self) -> EvalConfig:
        from r1rl.eval.registry import get_task  # late: the registry reads task YAML
        from r1rl.tasks import task_name

        if self.tasks is not None and not self.tasks:
            raise ValueError("list at least one task (or null for the stage's own task)")
        own = task_name(self.task, self.data)
        for name in self.tasks or []:
            if name != own:
                get_task(name)  # an unknown name raises with a did-you-mean
        return self


class PipelineConfig(HubOptions):
    """All stages; each section holds that stage's keys (``output_dir``, ``model_path`` are filled in).

    ``task``, ``data`` and ``rewards`` are shared by every stage (a stage's own section may add to
    them); with ``model_path`` the pipeline starts from that checkpoint and skips pretraining.
    """

    output_dir: str
    seed: int = 0
    threads: int | None = Field(None, ge=1)
    model_path: str | None = Field(
        None, description="start from this model (a local directory or a Hub id) instead of pretraining"
    )
    task: TaskConfig = Field(default_factory=ArithmeticTaskConfig)
    data: DataConfig | None = None
    rewards: RewardsConfig | None = None
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


# Keys that moved, by their old place under a stage -> where they live now.
MOVED_KEYS = {"answer_only_fraction": "task.answer_only_fraction"}


def validate(cls: type[C], data: dict[str, Any], source: str = "config") -> C:
    """Validate ``data`` as ``cls``, turning the first error into a one-line :class:`UserError`."""
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        raw_loc = tuple(err["loc"])
        loc = ".".join(str(x) for x in _shown_loc(cls, raw_loc))
        if err["type"] == "extra_forbidden":
            key = str(raw_loc[-1])
            if len(raw_loc) == 1 and key in MOVED_KEYS:
                raise UserError(f"{source}: config key {key!r} has moved to {MOVED_KEYS[key]!r}") from None
            fields = _fields_at(cls, raw_loc[:-1])
            hint = did_you_mean(key, fields)
            raise UserError(f"{source}: unknown config key {loc!r}{hint}") from None
        if err["type"] == "missing":
            raise UserError(f"{source}: missing required config key {loc!r}") from None
        if err["type"] == "union_tag_invalid":
            tags = [t.strip(" '") for t in str(err["ctx"]["expected_tags"]).split(",")]
            tag = str(err["ctx"]["tag"])
            raise UserError(f"{source}: unknown {loc}.name {tag!r}{did_you_mean(tag, tags)}") from None
        got = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else ""
        raise UserError(f"{source}: bad value for {loc!r}: {err['msg']}{got}") from None


def _member(annotation: Any, tag: Any) -> Any:
    """The model a tagged-union annotation resolves to for ``tag`` (or ``None`` for a plain model)."""
    for member in typing.get_args(annotation) or (annotation,):
        if typing.get_origin(member) is Annotated:
            return _member(typing.get_args(member)[0], tag)
        fields = getattr(member, "model_fields", None)
        if fields and "name" in fields and tag in typing.get_args(fields["name"].annotation):
            return member
    return None


def _walk(cls: type[BaseModel], loc: tuple[Any, ...]) -> tuple[Any, list[Any]]:
    """Follow ``loc`` from ``cls``: the model reached and the loc without union tags."""
    model: Any = cls
    shown: list[Any] = []
    parts = list(loc)
    while parts:
        part = parts.pop(0)
        fields = getattr(model, "model_fields", None)
        if fields is None or part not in fields:
            member = _member(model, part)  # a union's tag: pydantic puts it in the loc
            if member is None:
                return None, shown + [part, *parts]
            model = member
            continue
        shown.append(part)
        model = _unwrap(fields[part].annotation)
    return model, shown


def _unwrap(annotation: Any) -> Any:
    """``X | None`` -> ``X``; a tagged union stays as it is (resolved by its tag)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return annotation


def _shown_loc(cls: type[BaseModel], loc: tuple[Any, ...]) -> list[Any]:
    return _walk(cls, loc)[1]


def _fields_at(cls: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    model, _ = _walk(cls, loc)
    if model is not None and not hasattr(model, "model_fields"):
        model = _member(model, loc[-1]) if loc else None
    return list(model.model_fields) if hasattr(model, "model_fields") else []


def load_config(cls: type[C], path: str | Path, overrides: list[str] | None = None) -> C:
    data = apply_overrides(load_yaml(path), overrides or [])
    return validate(cls, data, source=str(path))


def dump_config(cfg: BaseModel) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
