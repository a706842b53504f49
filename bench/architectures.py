"""Every MoE architecture r1rl trains, end to end: the table of docs/architectures.md.

For each model type of :data:`r1rl.models.architectures.TINY` (a tiny random copy, one tokenizer for
all): LoRA SFT on the micro recipe, then two PPO steps (GAE, a reward whose scores differ between
samples, ``moe.router_aux_loss_coef: 0.01``). Reported per architecture: what the adapter covers (the
``[lora]`` line every run prints), the router's scoring and the balance term PPO added (from the
router logits), and how far PPO moved the routed experts' weights (max |Δ| over the expert tensors of
the merged models). DBRX, whose experts PEFT cannot reach, trains attention-only LoRA in SFT and the
whole model in PPO (``full_finetune``).

    python bench/architectures.py --out runs/architectures
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
from pathlib import Path

import torch

from r1rl.config import PPOConfig, SFTConfig, load_config
from r1rl.models.architectures import TINY, default_texts, save_tiny
from r1rl.models.factory import load_merged
from r1rl.models.moe import router_scoring
from r1rl.models.targets import find_targets
from r1rl.models.tokenizer import train_tokenizer
from r1rl.run.stages import STAGES

MICRO = Path(__file__).parents[1] / "recipes" / "configs" / "micro"
REWARD = Path(__file__).parents[1] / "tests" / "recipes" / "spread.py"
SFT = ["steps=4", "batch_size=4", "num_examples=16", "log.every=1"]
PPO = [
    "steps=2", "rollout.prompts_per_step=2", "rollout.samples_per_prompt=4", "rollout.max_new_tokens=8",
    "optim.minibatch_size=8", "log.eval_examples=2", "moe.router_aux_loss_coef=0.01",
    f"rewards.tiers=[{{name: task, reward: '{REWARD}:digit_share'}}]",
]  # fmt: skip
LINE = re.compile(
    r"\[lora\] attention (\d+/\d+) projections, experts (\d+/\d+) weight tensors .*?, ([\d,]+) trainable"
)


def experts_of(path: Path) -> dict[str, torch.Tensor]:
    model = load_merged(str(path))
    names = set(find_targets(model).expert_parameters)
    return {n: p.detach().clone() for n, p in model.named_parameters() if n in names}


def one(model_type: str, tokenizer, out: Path) -> dict:
    start = save_tiny(model_type, out / "start", tokenizer)
    sft_args = [f"output_dir={out / 'sft'}", f"model_path={start}", *SFT]
    ppo_args = [f"output_dir={out / 'ppo'}", f"model_path={out / 'sft' / 'final'}", *PPO]
    if model_type == "dbrx":
        sft_args.append("lora.target_parameters=[]")
        ppo_args.append("full_finetune=true")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        sft = STAGES["sft"](load_config(SFTConfig, MICRO / "sft.yaml", sft_args))
        ppo = STAGES["ppo"](load_config(PPOConfig, MICRO / "ppo.yaml", ppo_args))
    attention, experts, trainable = LINE.search(printed.getvalue()).groups()
    sft_rows = [r for r in sft.read_metrics() if "loss" in r]
    ppo_rows = [r for r in ppo.read_metrics() if "loss" in r]
    before, after = experts_of(sft.final), experts_of(ppo.final)
    base = load_merged(str(start))
    return {
        "model_type": model_type,
        "class": type(base).__name__,
        "attention": attention,
        "experts": experts,
        "trainable": trainable,
        "sft_loss": [sft_rows[0]["loss"], sft_rows[-1]["loss"]],
        "router": router_scoring(base.config),
        "aux_loss": ppo_rows[-1].get("moe/aux_loss"),
        "ppo_expert_delta": max(float((after[k] - before[k]).abs().max()) for k in before),
    }


def table(rows: list[dict]) -> str:
    head = (
        "| model type | class | attention adapted | expert tensors adapted | LoRA parameters | SFT loss "
        "(first → last) | router | PPO balance loss | PPO max \\|Δ expert\\| |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        term = "sequence-wise" if r["router"] == "sigmoid" else "Switch"
        lines.append(
            f"| {r['model_type']} | {r['class']} | {r['attention']} | {r['experts']} | {r['trainable']} | "
            f"{r['sft_loss'][0]:.3f} → {r['sft_loss'][1]:.3f} | {r['router']} | {term} {r['aux_loss']:.3f} | "
            f"{r['ppo_expert_delta']:.1e} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("runs/architectures"))
    ap.add_argument("--only", nargs="+", choices=sorted(TINY), help="these model types (default: all)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    tokenizer = train_tokenizer(default_texts(max_files=30), vocab_size=512)
    rows = [one(t, tokenizer, args.out / t) for t in (args.only or TINY)]
    (args.out / "results.json").write_text(json.dumps(rows, indent=1))
    print(table(rows))


if __name__ == "__main__":
    main()
