"""One config type per stage, and the pipeline's; each field is described once (here or in its section)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from r1rl.config.rewards import RewardsConfig
from r1rl.config.sections import (
    PPO_MOVED,
    TRAIN_MOVED,
    EnvConfig,
    LogitDistillConfig,
    LoraConfigModel,
    ModelConfig,
    OptimConfig,
    PPOSettings,
    SamplingConfig,
    TokenizerConfig,
    TrainSettings,
)
from r1rl.config.tasks import DataConfig, PretrainDataConfig, TaskConfig, default_task
from r1rl.eval.registry import get_task
from r1rl.strict import Strict
from r1rl.tasks import task_name

Tracker = Literal[
    "tensorboard", "wandb", "trackio", "mlflow", "comet_ml", "aim", "clearml", "dvclive", "swanlab"
]


class HubOptions(Strict):
    """Push ``final/`` (with tokenizer and model card) to the Hugging Face Hub when the run ends."""

    push_to_hub: bool = Field(
        False, description="push final/, the tokenizer and a model card when the run ends"
    )
    hub_repo_id: str | None = Field(None, description="user/name; required with push_to_hub")
    hub_private: bool = Field(False, description="create the Hub repository as private")

    @model_validator(mode="after")
    def _repo_needed(self) -> HubOptions:
        if self.push_to_hub and not self.hub_repo_id:
            raise ValueError("push_to_hub: true needs hub_repo_id (e.g. hub_repo_id: your-name/tiny-moe-ppo)")
        return self


class StageBase(HubOptions):
    """What every stage has: where it writes, its seed, its task."""

    MOVED: ClassVar[dict[str, str]] = {"answer_only_fraction": "task.answer_only_fraction"}

    output_dir: str = Field(
        description="the run directory (config.yaml, metrics.jsonl, checkpoints/, final/)"
    )
    seed: int = Field(0, description="seed of every random stream (each process's is derived from it)")
    threads: int | None = Field(None, ge=1, description="torch CPU threads; null = torch's default")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description="auto: CUDA when a GPU is visible and ACCELERATE_USE_CPU is unset; cpu/cuda force it",
    )
    report_to: list[Tracker] = Field(
        default_factory=list, description="mirror metrics to these trackers (through accelerate)"
    )
    task: TaskConfig | None = Field(
        default_factory=default_task,
        description="the built-in task by name, with its options; null: data.path's rows are the task",
    )
    data: DataConfig | None = Field(None, description="your own dataset; its rows replace the task's")

    @model_validator(mode="after")
    def _task_or_data(self) -> StageBase:
        if self.task is None and getattr(self.data, "path", None) is None:
            raise ValueError("task is null and data.path is not set: name a task, or the file of your data")
        return self


class PretrainConfig(TrainSettings, StageBase):
    """Pretraining from scratch: a tokenizer and a Qwen3-MoE on the task's corpus."""

    MOVED: ClassVar[dict[str, str]] = {**StageBase.MOVED, **TRAIN_MOVED}

    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: PretrainDataConfig = Field(default_factory=PretrainDataConfig)


class SFTConfig(TrainSettings, StageBase):
    """LoRA supervised fine-tuning on the task's training rows."""

    MOVED: ClassVar[dict[str, str]] = {**StageBase.MOVED, **TRAIN_MOVED}

    model_path: str = Field(description="the model to adapt: a previous stage's final/ or a Hub id")
    num_examples: int | None = Field(
        None, ge=1, description="train on the first N rows of the task's training split (null = all)"
    )
    steps: int = Field(100, ge=1, description="optimizer steps")
    optim: OptimConfig = Field(default_factory=lambda: OptimConfig(lr=2e-3))
    lora: LoraConfigModel = Field(default_factory=LoraConfigModel)
    base_dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="dtype of the frozen base (auto: the checkpoint's); adapters stay float32"
    )
    env: EnvConfig = Field(
        default_factory=EnvConfig,
        description="tools rendered in prompts (the system turn lists them), as episodes will see them",
    )
    rewards: RewardsConfig = Field(
        default_factory=lambda: RewardsConfig(), description="the hierarchy of the periodic held-out eval"
    )


class PPOConfig(PPOSettings, StageBase):
    """PPO with a learned critic (or a critic-free estimator) against the reward hierarchy."""

    MOVED: ClassVar[dict[str, str]] = {**StageBase.MOVED, **PPO_MOVED}

    model_path: str = Field(description="the SFT stage's final/ (an adapter is merged into its base)")
    lora: LoraConfigModel = Field(default_factory=LoraConfigModel)
    base_dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="dtype of the frozen base (auto: the checkpoint's); adapters stay float32"
    )
    critic_model_path: str | None = Field(
        None, description="a separate, smaller model (same tokenizer) trained in full as the critic"
    )
    full_finetune: bool = Field(
        False, description="train every weight (policy, and a separate full critic); the reference is a copy"
    )
    env: EnvConfig = Field(
        default_factory=EnvConfig, description="multi-turn episodes: tools and an environment"
    )
    rewards: RewardsConfig = Field(default_factory=RewardsConfig, description="the reward hierarchy")


class DistillConfig(TrainSettings, StageBase):
    """Distillation: the teacher's samples that pass the reward tiers train the student (SFT, LoRA)."""

    MOVED: ClassVar[dict[str, str]] = {**StageBase.MOVED, **TRAIN_MOVED}

    model_path: str = Field(
        description="the student: any model with the teacher's tokenizer (e.g. the pretrain stage's final/)"
    )
    teacher_path: str = Field(
        description="the teacher that samples the traces: the PPO stage's final/ or any model"
    )
    steps: int = Field(150, ge=1, description="optimizer steps of the student")
    optim: OptimConfig = Field(default_factory=lambda: OptimConfig(lr=2e-3))
    lora: LoraConfigModel = Field(default_factory=LoraConfigModel)
    full_finetune: bool = Field(
        False, description="train every weight of the student instead of a LoRA adapter"
    )
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    logits: LogitDistillConfig = Field(default_factory=LogitDistillConfig)
    env: EnvConfig = Field(
        default_factory=EnvConfig, description="multi-turn episodes: tools and an environment"
    )
    rewards: RewardsConfig = Field(
        default_factory=RewardsConfig, description="the hierarchy that accepts traces (and scores the eval)"
    )


class EvalConfig(StageBase):
    """Held-out accuracy of the task, and benchmarks of the harness."""

    model_path: str = Field(description="the model evaluated: a run's final/, an adapter, or a local model")
    tasks: list[str] | None = Field(
        None,
        description="the stage's own task (by its name: its held-out split, scored by its reward hierarchy) "
        "and/or benchmark tasks of the harness (sst2, cola, gsm8k, ...); null = the own task only",
    )
    num_examples: int = Field(500, ge=1, description="held-out rows of the own task scored (the first N)")
    batch_size: int = Field(128, ge=1, description="sequences per generation or log-likelihood batch")
    max_new_tokens: int = Field(48, ge=1, description="longest completion of the own task, in tokens")
    limit: int | None = Field(None, ge=1, description="harness tasks: score the first N documents")
    num_fewshot: int | None = Field(
        0, ge=0, description="harness tasks: few-shot examples per prompt (null = each task's default)"
    )
    fewshot_split: str | None = Field(None, description="harness tasks: split the shots come from")
    data_dir: str | None = Field(None, description="harness tasks: local data root (default ../shared/data)")
    env: EnvConfig = Field(
        default_factory=EnvConfig, description="multi-turn episodes of the own task: tools and an environment"
    )
    rewards: RewardsConfig = Field(default_factory=RewardsConfig, description="the hierarchy that scores")

    @model_validator(mode="after")
    def _known_tasks(self) -> EvalConfig:
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

    output_dir: str = Field(description="the pipeline's folder: one run directory per stage under it")
    seed: int = Field(0, description="every stage's seed")
    threads: int | None = Field(None, ge=1, description="torch CPU threads of every stage; null = default")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="every stage's device")
    model_path: str | None = Field(
        None, description="start from this model (a local directory or a Hub id) instead of pretraining"
    )
    task: TaskConfig = Field(default_factory=default_task, description="every stage's task")
    data: DataConfig | None = Field(None, description="every stage's dataset (its rows replace the task's)")
    rewards: RewardsConfig | None = Field(None, description="every stage's reward hierarchy")
    pretrain: dict[str, Any] = Field(default_factory=dict, description="the pretrain stage's keys")
    sft: dict[str, Any] = Field(default_factory=dict, description="the SFT stage's keys")
    ppo: dict[str, Any] = Field(default_factory=dict, description="the PPO stage's keys")
    distill: dict[str, Any] | None = Field(
        None,
        description="the distill stage's keys; it runs (after PPO, teacher = ppo/final, student = the "
        "pretrained model) only when this section is present",
    )
    eval: dict[str, Any] = Field(default_factory=dict, description="the eval stages' keys")
    recipes: dict[Literal["pretrain", "sft", "ppo", "distill", "eval"], str] = Field(
        default_factory=dict, description="stage -> a copy of its recipe script to run instead (r1rl cp)"
    )


TRAIN_STAGES = ("pretrain", "sft", "ppo", "distill")  # a pipeline runs distill only when it has the section
STAGE_CONFIGS: dict[str, type[StageBase]] = {
    "pretrain": PretrainConfig,
    "sft": SFTConfig,
    "ppo": PPOConfig,
    "distill": DistillConfig,
    "eval": EvalConfig,
}
