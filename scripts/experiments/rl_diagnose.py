"""Why RL does not add to a competent SFT model: where its signal is, and how much of it transfers.

Three measurements on one SFT model of the embedded arithmetic task (fully worked completions),
each printed as a few lines (``docs/experiments/rl_adds.md`` reports them):

- ``headroom``: greedy and sampled accuracy on 200 held-out problems, pass@8, majority@8, and the
  share of problems greedy decoding gets wrong although a sample gets right (what RL can teach);
- ``gradients``: the policy gradient of GRPO batches (64 completions each) against the SFT
  gradient on the ground-truth solutions — cosines between batches of different prompts, and to
  the mean SFT gradient of 128 other prompts (how much of one batch's step points where more SFT
  goes), for group sizes and temperatures given as ``G,T`` pairs;
- ``overfit``: 30 one-step GRPO updates on one fixed batch of 16 prompts, the sampled pass rate
  on those prompts and on 64 others every 5 updates (does what RL learns on some prompts carry
  over to others?).

    python scripts/experiments/rl_diagnose.py runs/tiny-seed0/sft/final headroom gradients overfit
"""

from __future__ import annotations

import argparse
import collections
import itertools
import re

import torch
from r1rl.rewards.hierarchy import RewardHierarchy

from r1rl.algorithms import ppo
from r1rl.config import LoraConfigModel, PPOSettings, RewardsConfig
from r1rl.models.encoding import encode_prompts
from r1rl.models.factory import load_merged, load_tokenizer
from r1rl.models.generation import generate
from r1rl.tasks.arithmetic import ArithmeticTask, arithmetic_task
from r1rl.train.ppo.context import PPOContext
from r1rl.train.ppo.roles import ActorCritic
from r1rl.train.ppo.rollout import rollout
from r1rl.train.ppo.update import update

TASK = ArithmeticTask(answer_only_fraction=0.0)
HIERARCHY = RewardHierarchy.from_config(RewardsConfig(tiers=TASK.rewards))
TRAIN = [dict(r) for r in TASK.records("train")]


def headroom(path: str, n: int = 200, k: int = 8) -> None:
    model, tok = load_merged(path), load_tokenizer(path)
    recs = TASK.records("test")[:n]
    answers = [r["answer"] for r in recs]
    ids = encode_prompts(tok, [r["prompt"] for r in recs])
    greedy = arithmetic_task(
        None, generate(model, tok, ids, max_new_tokens=48, do_sample=False).texts, answer=answers
    )
    texts = generate(model, tok, [i for i in ids for _ in range(k)], max_new_tokens=48, do_sample=True).texts
    right = arithmetic_task(None, texts, answer=[a for a in answers for _ in range(k)])
    rate = [sum(right[i * k : (i + 1) * k]) / k for i in range(n)]

    def majority(i: int) -> bool:
        found = [re.findall(r"<answer>(-?\d+)</answer>", t) for t in texts[i * k : (i + 1) * k]]
        votes = collections.Counter(f[-1] for f in found if f)
        return bool(votes) and int(votes.most_common(1)[0][0]) == answers[i]

    print(f"headroom ({n} held-out problems, {k} samples at T=1): greedy {sum(greedy) / n:.3f}, "
          f"sampled {sum(right) / len(right):.3f}, pass@{k} {sum(r > 0 for r in rate) / n:.3f}, "
          f"majority@{k} {sum(map(majority, range(n))) / n:.3f}, greedy wrong but a sample right "
          f"{sum(not g and r > 0 for g, r in zip(greedy, rate)) / n:.3f}")  # fmt: skip


def _roles(path: str) -> tuple[ActorCritic, object]:
    ac = ActorCritic(load_merged(path), LoraConfigModel(r=16, alpha=32), critic=False)
    torch.manual_seed(0)
    for name, p in ac.named_parameters():  # B ≠ 0, so the gradient reaches A as well
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=1e-4)
    return ac, load_tokenizer(path)


def _flat_grad(params: list[torch.nn.Parameter]) -> torch.Tensor:
    return torch.cat([p.grad.flatten() if p.grad is not None else torch.zeros(p.numel()) for p in params])


def _sft_grad(ac: ActorCritic, tok, batch: list[dict]) -> torch.Tensor:
    """The gradient of the SFT loss (completion tokens and EOS) on ground-truth solutions."""
    params = ac.adapter_parameters("policy")
    prompts = encode_prompts(tok, [r["prompt"] for r in batch])
    comps = [tok(r["completion"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for r in batch]
    width = max(len(p) + len(c) for p, c in zip(prompts, comps))
    ids = torch.full((len(batch), width), tok.pad_token_id)
    mask, labels = torch.zeros_like(ids), torch.full_like(ids, -100)
    for i, (p, c) in enumerate(zip(prompts, comps)):
        ids[i, : len(p) + len(c)] = torch.tensor(p + c)
        mask[i, : len(p) + len(c)] = 1
        labels[i, len(p) : len(p) + len(c)] = torch.tensor(c)
    for q in params:
        q.grad = None
    ac.peft(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
    return _flat_grad(params)


def _rl_grad(ac: ActorCritic, tok, batch: list[dict], cfg: PPOSettings) -> torch.Tensor:
    """The gradient of GRPO's policy loss (ratio 1) on one rollout of ``batch``."""
    params = ac.adapter_parameters("policy")
    experience = rollout(PPOContext(ac, tok, HIERARCHY, cfg), batch, kl_coef=0.0)
    for q in params:
        q.grad = None
    logprobs, _, _ = ac.policy_logprobs(
        experience.input_ids, experience.attention_mask, experience.n_completion
    )
    ppo.agg_loss(-experience.advantages * logprobs, experience.mask).backward()
    return _flat_grad(params)


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm() + 1e-12))


def gradients(path: str, settings: list[str], batches: int = 8) -> None:
    ac, tok = _roles(path)
    sft_mean = torch.stack([_sft_grad(ac, tok, TRAIN[5000 + 32 * i : 5032 + 32 * i]) for i in range(4)]).mean(
        0
    )
    sft = [_sft_grad(ac, tok, TRAIN[64 * i : 64 * i + 16]) for i in range(batches)]
    between = sum(_cos(a, b) for a, b in itertools.combinations(sft, 2)) / (batches * (batches - 1) / 2)
    print(f"gradients: SFT batches of 16 prompts, mean cosine between batches {between:.3f}")
    for spec in settings:
        group, temperature = int(spec.split(",")[0]), float(spec.split(",")[1])
        cfg = PPOSettings(
            rollout={
                "prompts_per_step": 64 // group,
                "samples_per_prompt": group,
                "temperature": temperature,
            },
            algorithm={"advantage_estimator": "grpo", "kl_coef": 0.0},
        )
        ac.temperature = temperature
        torch.manual_seed(1)
        rl = [_rl_grad(ac, tok, TRAIN[64 * i : 64 * i + 64 // group], cfg) for i in range(batches)]
        between = sum(_cos(a, b) for a, b in itertools.combinations(rl, 2)) / (batches * (batches - 1) / 2)
        to_sft = torch.tensor([_cos(g, sft_mean) for g in rl])
        print(f"gradients: GRPO, {64 // group} prompts x {group} samples at T={temperature}: cosine between "
              f"batches {between:.3f}, to the mean SFT gradient {to_sft.mean():.3f} "
              f"(± {to_sft.std() / batches**0.5:.3f})")  # fmt: skip


def overfit(path: str, lr: float = 3e-4, updates: int = 30) -> None:
    ac, tok = _roles(path)
    for name, p in ac.named_parameters():
        if "lora_B" in name:
            torch.nn.init.zeros_(p)  # the policy starts as the SFT model
    fixed, others = TRAIN[:16], TRAIN[1000:1064]
    cfg = PPOSettings(
        rollout={"prompts_per_step": 16, "samples_per_prompt": 4},
        algorithm={"advantage_estimator": "grpo", "kl_coef": 0.0},
        optim={"ppo_epochs": 1, "minibatch_size": 64, "lr": lr},
    )
    probe = PPOSettings(rollout={"prompts_per_step": 64, "samples_per_prompt": 4})
    opts = {"policy": torch.optim.AdamW(ac.adapter_parameters("policy"), lr=lr, weight_decay=0.0)}
    generator = torch.Generator().manual_seed(0)

    def rate(rows: list[dict]) -> float:
        return rollout(PPOContext(ac, tok, HIERARCHY, probe), rows, 0.0).metrics["reward/tier/task/pass_rate"]

    torch.manual_seed(0)
    print(f"overfit: before: trained-on prompts {rate(fixed):.3f}, other prompts {rate(others):.3f}")
    for i in range(updates):
        ctx = PPOContext(ac, tok, HIERARCHY, cfg)
        update(ctx, rollout(ctx, fixed, 0.0), opts, generator, 0.0)
        if i % 5 == 4:
            print(f"overfit: after {i + 1} updates: trained-on prompts {rate(fixed):.3f}, "
                  f"other prompts {rate(others):.3f}", flush=True)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sft", help="an SFT model of the arithmetic task (a pipeline's sft/final)")
    ap.add_argument("what", nargs="+", choices=["headroom", "gradients", "overfit"])
    ap.add_argument("--settings", nargs="+", default=["4,1", "8,1", "8,0.6"], help="gradients: G,T pairs")
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    for what in a.what:
        if what == "headroom":
            headroom(a.sft)
        elif what == "gradients":
            gradients(a.sft, a.settings)
        else:
            overfit(a.sft)


if __name__ == "__main__":
    main()
