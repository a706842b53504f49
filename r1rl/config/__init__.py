"""Typed, strict configs: one per stage, loaded from YAML with ``key.sub=value`` overrides.

Unknown keys are errors with a did-you-mean (a key that moved names its new place); every error
names the key and is raised as a :class:`~r1rl.errors.UserError` before any work starts.
"""

from r1rl.config.rewards import RewardsConfig, TierConfig
from r1rl.config.sections import (
    AlgorithmConfig,
    CheckpointConfig,
    CommConfig,
    ComputeConfig,
    EnvConfig,
    LogConfig,
    LogitDistillConfig,
    LoraConfigModel,
    ModelConfig,
    MoEConfig,
    OptimConfig,
    PPOOptimConfig,
    PPOSettings,
    RolloutConfig,
    SamplingConfig,
    SelectionConfig,
    TokenizerConfig,
    TrainSettings,
)
from r1rl.config.stages import (
    STAGE_CONFIGS,
    TRAIN_STAGES,
    DistillConfig,
    EvalConfig,
    HubOptions,
    PipelineConfig,
    PPOConfig,
    PretrainConfig,
    SFTConfig,
    StageBase,
)
from r1rl.config.tasks import DataConfig, PretrainDataConfig, TaskConfig
from r1rl.strict import Strict, apply_overrides, dump_config, load_config, load_yaml, validate

__all__ = [
    "AlgorithmConfig", "CheckpointConfig", "CommConfig",
    "ComputeConfig", "DataConfig", "DistillConfig", "EnvConfig", "EvalConfig", "HubOptions", "LogConfig",
    "LogitDistillConfig", "LoraConfigModel", "MoEConfig", "ModelConfig", "OptimConfig", "PPOConfig",
    "PPOOptimConfig", "PPOSettings", "PipelineConfig", "PretrainConfig", "PretrainDataConfig",
    "RewardsConfig", "RolloutConfig", "SFTConfig", "STAGE_CONFIGS", "SamplingConfig", "SelectionConfig",
    "StageBase", "TRAIN_STAGES",
    "Strict", "TaskConfig", "TierConfig", "TokenizerConfig", "TrainSettings", "apply_overrides",
    "dump_config", "load_config", "load_yaml", "validate",
]  # fmt: skip
