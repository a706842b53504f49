"""The sections a stage config is made of; every option is described once, here.

Supervised stages (pretrain, SFT, distill): ``steps``, ``batch_size``, ``optim``, ``checkpoint``,
``log``, ``comm``; distill adds ``sampling`` and ``logits``. PPO: ``steps``, ``rollout``,
``algorithm``, ``optim``, ``compute``, ``moe``, ``checkpoint``, ``log``. Names follow the papers
and TRL where they name the same thing.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from r1rl.errors import did_you_mean
from r1rl.models.presets import PRESETS
from r1rl.strict import Strict


class TokenizerConfig(Strict):
    """The byte-level BPE tokenizer trained from scratch on the corpus."""

    vocab_size: int = Field(512, ge=300, description="BPE vocabulary size, added tokens included")
    num_texts: int = Field(20_000, ge=100, description="corpus documents the tokenizer is trained on")


class ModelConfig(Strict):
    """A from-scratch Qwen3-MoE."""

    preset: str = Field(
        "tiny", description="size preset for a from-scratch model: micro, tiny, small or base"
    )
    overrides: dict[str, Any] = Field(default_factory=dict, description="Qwen3MoeConfig fields to override")
    router_aux_loss_coef: float = Field(0.01, ge=0, description="Switch load-balance loss weight")
    max_position_embeddings: int = Field(256, ge=16, description="context window of a from-scratch model")

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, preset: str) -> str:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}{did_you_mean(preset, PRESETS)}")
        return preset


class LoraConfigModel(Strict):
    """LoRA adapters (PEFT) on attention and, through ``target_parameters``, the routed experts' weights.

    ``auto`` finds both from the model (:mod:`r1rl.models.targets`): every projection of its attention
    (MLA and linear-attention layers included) and every routed expert's weights, whatever the
    architecture names them; a run prints what the adapter covers."""

    r: int = Field(16, ge=1, description="LoRA rank")
    alpha: int = Field(32, ge=1, description="LoRA scaling α (the update is scaled by α / r)")
    target_modules: list[str] | Literal["auto"] = Field(
        "auto", description="modules adapted (auto: every attention projection, found from the model)"
    )
    target_parameters: list[str] | Literal["auto"] = Field(
        "auto",
        description="expert weights adapted through PEFT's target_parameters (auto: every routed expert's)",
    )


class OptimConfig(Strict):
    """AdamW with linear warm-up and cosine decay (supervised stages)."""

    lr: float = Field(1e-3, gt=0, description="peak learning rate")
    warmup_steps: int = Field(20, ge=0, description="linear warm-up steps")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="cosine decay floor, as a fraction of lr")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    max_grad_norm: float = Field(1.0, gt=0, description="gradient clipping by global norm")


class CheckpointConfig(Strict):
    """Resumable checkpoints under ``checkpoints/``, written atomically."""

    every: int = Field(0, ge=0, description="steps between checkpoints; 0 = none")
    keep: int = Field(2, ge=1, description="newest checkpoints kept")


class LogConfig(Strict):
    """When rows go to ``metrics.jsonl``, and the periodic held-out eval."""

    every: int = Field(10, ge=1, description="steps between logged rows (the last step is always logged)")
    eval_every: int = Field(0, ge=0, description="greedy held-out eval every N steps (0 = off)")
    eval_examples: int = Field(100, ge=1, description="held-out rows per periodic eval")
    eval_max_new_tokens: int | None = Field(
        None,
        ge=1,
        description="longest completion in the periodic eval (null: PPO's rollout.max_new_tokens, "
        "distill's sampling.max_new_tokens, SFT 48)",
    )


class CommConfig(Strict):
    """Data-parallel gradient communication of the supervised stages (several processes only)."""

    grad_compression: Literal["none", "fp16", "bf16", "powersgd"] = Field(
        "none", description="DDP communication hook that compresses gradients"
    )
    powersgd_rank: int = Field(4, ge=1, description="grad_compression=powersgd: rank of the gradient factors")
    powersgd_start_iter: int = Field(
        10, ge=2, description="grad_compression=powersgd: steps of plain all-reduce before compressing"
    )


class TrainSettings(Strict):
    """An optimisation loop over supervised batches (pretrain and SFT)."""

    steps: int = Field(500, ge=1, description="optimizer steps")
    batch_size: int = Field(32, ge=1, description="sequences per step (global under a launcher)")
    optim: OptimConfig = Field(default_factory=OptimConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    comm: CommConfig = Field(default_factory=CommConfig)


class RolloutConfig(Strict):
    """How completions are sampled each PPO step."""

    prompts_per_step: int = Field(32, ge=1, description="prompts per step (global under a launcher)")
    samples_per_prompt: int = Field(2, ge=1, description="completions sampled per prompt (a GRPO group)")
    max_new_tokens: int = Field(48, ge=1, description="longest completion, in tokens")
    temperature: float = Field(1.0, gt=0, description="sampling temperature")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling threshold")
    engine: Literal["auto", "generate", "continuous_batching"] = Field(
        "auto",
        description="what samples: padded HF generate, or transformers' continuous batching (paged "
        "attention); auto = generate on CPU, continuous_batching on CUDA",
    )
    tis_cap: float | None = Field(
        None,
        ge=1,
        description="truncated importance sampling: weight token losses by min(π_old/π_engine, tis_cap) "
        "(Yao et al. 2025); null = off",
    )
    dynamic_sampling: bool = Field(
        False,
        description="drop groups whose rewards all agree (no GRPO signal) and sample more prompts to "
        "fill the batch (DAPO's dynamic sampling)",
    )
    sampling_rounds: int = Field(
        3, ge=1, description="dynamic_sampling: generation rounds per step at most (1 = drop, never resample)"
    )
    max_samples: int | None = Field(
        None,
        ge=1,
        description="end the run once this many completions were generated, dropped ones included "
        "(null = run every step)",
    )


class EnvConfig(Strict):
    """``env``: multi-turn episodes — the tools the model may call and the environment that answers it
    (:mod:`r1rl.envs`; docs/environments.md). Empty (no tools, no environment): one completion per prompt."""

    tools: list[str] = Field(
        default_factory=list,
        description="tool functions: a registered name (calculator), module:fn or file.py:fn",
    )
    environment: str | None = Field(
        None, description="an environment class, one instance per episode: a registered name, module:Class "
        "or file.py:Class (TRL's environment_factory; its public methods are tools too)",
    )  # fmt: skip
    max_turns: int = Field(
        4, ge=1, description="assistant turns per episode (the last one's calls are not run)"
    )
    max_tokens: int = Field(
        160, ge=1, description="tokens an episode may add after its prompt, the model's and the environment's"
    )
    tool_timeout_s: float = Field(5.0, gt=0, description="a tool call running longer is stopped (a timeout)")
    tool_max_chars: int = Field(500, ge=1, description="longer tool output is cut to this (a flood)")

    @property
    def enabled(self) -> bool:
        """Whether episodes are multi-turn (any tool or an environment)."""
        return bool(self.tools) or self.environment is not None


class SelectionConfig(Strict):
    """Which training prompts a PPO step draws: a curriculum by pass rate, and replay of failures."""

    curriculum: bool = Field(
        False,
        description="a prompt seen before is drawn again with probability max(floor, 4p(1-p)), p its "
        "last pass rate: always- and never-solved prompts are sampled less",
    )
    curriculum_floor: float = Field(
        0.1, ge=0, le=1, description="curriculum: the keep probability of a prompt always or never solved"
    )
    replay_fraction: float = Field(
        0.0, ge=0, le=1, description="share of each batch taken from the buffer of failed prompts (0 = off)"
    )
    replay_threshold: float = Field(
        0.5,
        gt=0,
        le=1,
        description="a prompt whose group passes the top tier less often than this is replayed",
    )
    replay_capacity: int = Field(
        256, ge=1, description="failed prompts the replay buffer holds (oldest drop out)"
    )
    replay_max_visits: int = Field(4, ge=1, description="times a prompt is replayed before it is given up")


class AlgorithmConfig(Strict):
    """Advantages, the clipped objective and the KL to the reference."""

    advantage_estimator: Literal["gae", "grpo", "rloo", "reinforce_pp", "remax"] = Field(
        "gae",
        description="gae trains a critic; grpo, rloo, reinforce_pp and remax (the greedy completion's "
        "reward as the baseline) are critic-free",
    )
    grpo_scale_by_std: bool = Field(True, description="grpo: divide by the group std (false = Dr. GRPO)")
    gamma: float = Field(1.0, ge=0, le=1, description="γ, the discount")
    gae_lambda: float = Field(1.0, ge=0, le=1, description="λ of GAE (Schulman et al. 2015, eq. 16)")
    whiten_advantages: bool = Field(True, description="gae: whiten advantages over the batch's tokens")
    normalize_rewards: bool = Field(False, description="whiten the sequence scores over the batch")
    reward_clip: float | None = Field(None, gt=0, description="clip sequence scores to ±reward_clip")
    negative_scale: float = Field(
        1.0,
        ge=0,
        description="multiplies negative advantages: 1 = the estimator's own, 0 = reinforce only what "
        "beat its baseline (as RAFT/ReST train on accepted samples only)",
    )
    importance_sampling_level: Literal["token", "sequence", "sequence_token"] = Field(
        "token", description="the ratio clipped: per token (PPO), per sequence (GSPO) or GSPO-token"
    )
    clip_eps: float | None = Field(
        None,
        gt=0,
        description="lower clip ε (and the upper one unless clip_eps_high); null = 0.2, or 3e-4 for GSPO",
    )
    clip_eps_high: float | None = Field(
        None, gt=0, description="upper clip ε (DAPO's clip-higher); null = clip_eps, or 4e-4 for GSPO"
    )
    dual_clip: float | None = Field(None, gt=1, description="dual-clip constant c for negative advantages")
    value_clip_eps: float = Field(0.2, gt=0, description="clip of the value update around the old values")
    vf_coef: float = Field(0.5, ge=0, description="weight of the value loss")
    loss_agg_mode: Literal["token-mean", "seq-mean-token-sum", "seq-mean-token-mean"] = Field(
        "token-mean", description="how token losses reduce to a scalar (DAPO, Dr. GRPO, GRPO)"
    )
    kl_coef: float = Field(0.02, ge=0, description="β: the KL weight")
    kl_estimator: Literal["k1", "k2", "k3"] = Field("k1", description="KL estimator (Schulman's note)")
    kl_in: Literal["reward", "loss"] = Field(
        "reward", description="reward: −β·KL per token in the reward; loss: +β·KL as a loss term"
    )
    kl_target: float | None = Field(
        None, gt=0, description="adaptive β (Ziegler et al. 2019) toward this per-sequence KL"
    )
    kl_horizon: int = Field(10_000, ge=1, description="adaptive β horizon, in samples")


class PPOOptimConfig(Strict):
    """The PPO update: epochs, minibatches and the two AdamW optimizers."""

    ppo_epochs: int = Field(2, ge=1, description="passes over each rollout")
    minibatch_size: int = Field(32, ge=1, description="sequences per optimizer step (global)")
    micro_batch_size: int | None = Field(
        None, ge=1, description="sequences per forward pass (gradient accumulation); default minibatch_size"
    )
    lr: float = Field(1e-3, gt=0, description="policy learning rate (constant after warm-up)")
    critic_lr: float = Field(2e-3, gt=0, description="critic learning rate")
    warmup_steps: int = Field(0, ge=0, description="linear warm-up steps of both learning rates")
    critic_warmup_steps: int = Field(
        0, ge=0, description="first steps update only the critic, so the policy starts from sane advantages"
    )
    max_grad_norm: float = Field(1.0, gt=0, description="gradient clipping by global norm")
    max_consecutive_skips: int = Field(
        3, ge=1, description="halt after this many steps in a row skipped for non-finite values"
    )


class ComputeConfig(Strict):
    """Precision and memory of the PPO forward passes."""

    bf16: bool = Field(False, description="bfloat16 autocast for generation and every forward pass")
    gradient_checkpointing: bool = Field(False, description="recompute activations in the backward pass")


class MoEConfig(Strict):
    """Router terms in the policy objective, and routing replay."""

    router_aux_loss_coef: float = Field(0.0, ge=0, description="load-balance loss in the policy objective")
    router_loss: Literal["auto", "switch", "sequence", "variance"] = Field(
        "auto",
        description="auto: switch for softmax routers, sequence for sigmoid ones (DeepSeek-V3, GLM-4-MoE, "
        "dots.llm1, Llama 4); switch: E·Σ f·P; sequence: DeepSeek-V3's sequence-wise f·P of normalised "
        "sigmoid scores; variance: Σᵢ(pᵢ − 1/E)² (try coef 0.01)",
    )
    router_z_loss_coef: float = Field(0.0, ge=0, description="ST-MoE router z-loss in the policy objective")
    routing_replay: bool = Field(
        False, description="force the update's experts to those recorded with the old log-probs"
    )


class PPOSettings(Strict):
    """The PPO loop (the stage's training sections)."""

    steps: int = Field(60, ge=1, description="rollout/update iterations")
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    algorithm: AlgorithmConfig = Field(default_factory=AlgorithmConfig)
    optim: PPOOptimConfig = Field(default_factory=PPOOptimConfig)
    compute: ComputeConfig = Field(default_factory=ComputeConfig)
    moe: MoEConfig = Field(default_factory=MoEConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    log: LogConfig = Field(default_factory=lambda: LogConfig(every=1))

    @model_validator(mode="after")
    def _check(self) -> PPOSettings:
        a = self.algorithm
        est, level = a.advantage_estimator, a.importance_sampling_level
        if est in ("grpo", "rloo") and self.rollout.samples_per_prompt < 2:
            raise ValueError(f"advantage_estimator {est} needs rollout.samples_per_prompt >= 2")
        if level == "sequence" and est in ("gae", "reinforce_pp"):
            raise ValueError(
                f"importance_sampling_level sequence needs one advantage per sequence (grpo or rloo); {est} "
                "gives one per token: use sequence_token (GSPO-token) or a group estimator"
            )
        if level != "token" and a.loss_agg_mode != "seq-mean-token-mean":
            raise ValueError(
                f"importance_sampling_level {level} averages each sequence's terms, then the sequences "
                "(GSPO, eq. 5 and 13): set algorithm.loss_agg_mode to seq-mean-token-mean"
            )
        if level != "token" and a.dual_clip is not None:
            raise ValueError("dual_clip caps token ratios; it does not apply to sequence-level ratios")
        r = self.rollout
        if r.engine == "continuous_batching" and r.tis_cap is not None and (r.temperature, r.top_p) != (1, 1):
            raise ValueError(CB_TEMPERED_LOGPROBS)
        return self


CB_TEMPERED_LOGPROBS = (
    "rollout.tis_cap with rollout.engine continuous_batching needs temperature 1 and top_p 1: generate_batch "
    "returns log-probs after temperature and top-p, which the training pass does not apply "
    "(use rollout.engine generate)"
)


class SamplingConfig(Strict):
    """How the teacher samples the distill stage's traces, and which of them are kept."""

    num_prompts: int | None = Field(
        None, ge=1, description="prompt the first N rows of the task's training split (null = all)"
    )
    samples_per_prompt: int = Field(4, ge=1, description="k: completions sampled per prompt")
    max_new_tokens: int = Field(48, ge=1, description="longest completion, in tokens")
    temperature: float = Field(1.0, gt=0, description="sampling temperature")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling threshold")
    batch_size: int = Field(64, ge=1, description="prompts per generation call (each sampled k times)")
    accept_tier: str | None = Field(
        None, description="keep completions that pass this tier and every tier below; null = the top tier"
    )


class LogitDistillConfig(Strict):
    """Optional logit distillation: the student also matches the teacher's next-token distributions."""

    loss: Literal["none", "kl", "jsd"] = Field(
        "none",
        description="none: SFT on the traces only; kl: τ²·KL(teacher ‖ student) (Hinton et al. 2015); "
        "jsd: GKD's generalised JSD(β) (Agarwal et al. 2024)",
    )
    coef: float = Field(1.0, ge=0, description="weight of the distillation term added to the SFT loss")
    temperature: float = Field(1.0, gt=0, description="τ: both distributions are softmax(logits / τ)")
    beta: float = Field(
        0.5, ge=0, le=1, description="jsd: β (0 = forward KL(teacher ‖ student), 1 = reverse KL)"
    )


# Where each option of the flat `train:` and `ppo:` sections lives now.
_TRAIN_MOVES = {
    "steps": "steps", "batch_size": "batch_size", "lr": "optim.lr", "warmup_steps": "optim.warmup_steps",
    "min_lr_ratio": "optim.min_lr_ratio", "weight_decay": "optim.weight_decay",
    "max_grad_norm": "optim.max_grad_norm", "log_every": "log.every", "eval_every": "log.eval_every",
    "eval_examples": "log.eval_examples", "checkpoint_every": "checkpoint.every",
    "keep_checkpoints": "checkpoint.keep", "grad_compression": "comm.grad_compression",
    "powersgd_rank": "comm.powersgd_rank", "powersgd_start_iter": "comm.powersgd_start_iter",
}  # fmt: skip
TRAIN_MOVED = {f"train.{k}": v for k, v in _TRAIN_MOVES.items()}


def _ppo_moves() -> dict[str, str]:
    out = {"ppo.steps": "steps", "ppo.log_every": "log.every", "ppo.eval_every": "log.eval_every",
           "ppo.eval_examples": "log.eval_examples", "ppo.checkpoint_every": "checkpoint.every",
           "ppo.keep_checkpoints": "checkpoint.keep"}  # fmt: skip
    sections: dict[str, type[Strict]] = {
        "rollout": RolloutConfig, "algorithm": AlgorithmConfig, "optim": PPOOptimConfig,
        "compute": ComputeConfig, "moe": MoEConfig,
    }  # fmt: skip
    for name, model in sections.items():
        out.update({f"ppo.{field}": f"{name}.{field}" for field in model.model_fields})
    return out


PPO_MOVED = _ppo_moves()
