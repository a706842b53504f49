"""The micro stage configs (recipes/configs/micro), and the runs the stage tests share."""

from pathlib import Path

from r1rl.config import EvalConfig, PPOConfig, PretrainConfig, SFTConfig, load_config
from r1rl.run.stages import STAGES

MICRO = Path(__file__).parents[2] / "recipes" / "configs" / "micro"
PPO_OVERRIDES = {"checkpoint.every": 2, "log.eval_every": 2, "log.eval_examples": 8}


def micro_config(cls, name, tmp, **over):
    """``recipes/configs/micro/<name>.yaml`` as ``cls``, writing to ``tmp/<name>``, with ``over``rides."""
    extra = [f"output_dir={tmp / name}"] + [f"{k}={v}" for k, v in over.items()]
    return load_config(cls, MICRO / f"{name}.yaml", extra)


def train_micro_stages(tmp):
    """pretrain → SFT → PPO → eval on the micro configs, under ``tmp``; the run directories by stage."""
    out = {}
    out["pretrain"] = STAGES["pretrain"](micro_config(PretrainConfig, "pretrain", tmp))
    sft_over = {"log.eval_every": 3, "log.eval_examples": 8}
    sft = micro_config(SFTConfig, "sft", tmp, model_path=tmp / "pretrain" / "final", **sft_over)
    out["sft"] = STAGES["sft"](sft)
    ppo = micro_config(PPOConfig, "ppo", tmp, model_path=tmp / "sft" / "final", **PPO_OVERRIDES)
    out["ppo"] = STAGES["ppo"](ppo)
    out["eval"] = STAGES["eval"](micro_config(EvalConfig, "eval", tmp, model_path=tmp / "ppo" / "final"))
    return out
