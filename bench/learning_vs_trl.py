"""Held-out accuracy that RL adds to an SFT model: r1rl's PPO stage against TRL's GRPOTrainer.

Both start from the same SFT model (a pipeline's ``sft/final``, one per seed) on the embedded
arithmetic task, with the same reward function (the task's gated hierarchy, TRL-compatible through
``as_reward_function``), the same LoRA adapter (attention and the 3-D expert weights), the same
budget of generated completions (``steps`` × prompts × samples), completion length and sampling
temperature. r1rl runs ``recipes/configs/tiny/ppo.yaml`` as shipped plus ``--r1rl`` overrides;
TRL runs GRPO with ``--trl-lr``, ``--trl-beta`` and ``--trl-scheduler``. Every model — SFT,
r1rl's, TRL's — is scored the same way: greedy decoding on the task's 500 held-out problems,
the top tier's pass rate (what ``r1rl eval`` reports).

    python bench/learning_vs_trl.py --sft 'runs/tiny-seed{seed}/sft/final' --seeds 3 4 5 \
        --r1rl algorithm.advantage_estimator=grpo --jobs 2

Each arm runs in its own process with one thread (``--jobs`` at a time); results go to
``--out/results.jsonl`` and a rerun skips arms already there, so a search over TRL settings
(``--trl-lr 1e-4 --tag lr1e-4``) adds rows beside the earlier ones.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

RECIPE = Path(__file__).parents[1] / "recipes" / "configs" / "tiny" / "ppo.yaml"
TASK_OVERRIDES = ["task.answer_only_fraction=0"]  # the fully worked task the SFT models trained on


def _task_and_hierarchy(seed: int = 0):
    """The recipe's task (fully worked) and reward hierarchy, built as the PPO stage builds them."""
    from r1rl.config import PPOConfig, load_config
    from r1rl.train.prepare import hierarchy_of, task_of

    cfg = load_config(PPOConfig, RECIPE, [*TASK_OVERRIDES, "model_path=unused", f"seed={seed}"])
    task = task_of(cfg)
    return task, hierarchy_of(cfg.rewards, task)


def heldout_accuracy(model, tokenizer, n: int = 500) -> float:
    from r1rl.eval.heldout import evaluate_heldout

    task, hierarchy = _task_and_hierarchy()
    metrics, _ = evaluate_heldout(model, tokenizer, task, hierarchy, n=n, max_new_tokens=48, progress=False)
    return metrics["accuracy"]


def arm_sft(sft: str, seed: int, out: Path, a: argparse.Namespace) -> dict:
    from r1rl.models.factory import load_merged, load_tokenizer

    return {"accuracy": heldout_accuracy(load_merged(sft), load_tokenizer(sft))}


def arm_r1rl(sft: str, seed: int, out: Path, a: argparse.Namespace) -> dict:
    from r1rl.config import PPOConfig, load_config
    from r1rl.models.factory import load_merged, load_tokenizer
    from r1rl.run.stages import STAGES

    overrides = [*TASK_OVERRIDES, f"model_path={sft}", f"seed={seed}", "threads=1", f"output_dir={out}",
                 "checkpoint.every=0", *a.r1rl]  # fmt: skip
    run = STAGES["ppo"](load_config(PPOConfig, RECIPE, overrides))
    rows = run.read_metrics()
    generated = rows[-1].get("rollout/generated")
    return {"accuracy": heldout_accuracy(load_merged(str(run.final)), load_tokenizer(str(run.final))),
            "generated": generated, "steps": rows[-1]["step"]}  # fmt: skip


def arm_trl(sft: str, seed: int, out: Path, a: argparse.Namespace) -> dict:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from r1rl.config import LoraConfigModel, PPOConfig, load_config
    from r1rl.models.factory import load_merged, load_tokenizer, lora_config

    cfg = load_config(PPOConfig, RECIPE, [*TASK_OVERRIDES, f"model_path={sft}", f"seed={seed}", *a.r1rl])
    r = cfg.rollout
    task, hierarchy = _task_and_hierarchy(seed)
    model, tok = load_merged(sft), load_tokenizer(sft)
    model.config.output_router_logits = False  # TRL's chunked forward breaks transformers' router loss
    rows = task.records("train")
    data = Dataset.from_dict({k: [x[k] for x in rows] for k in ("prompt", "answer")})
    batch = r.prompts_per_step * r.samples_per_prompt
    args = GRPOConfig(
        output_dir=str(out), max_steps=cfg.steps, per_device_train_batch_size=batch,
        num_generations=r.samples_per_prompt, max_completion_length=r.max_new_tokens,
        temperature=r.temperature, num_iterations=1, learning_rate=a.trl_lr,
        lr_scheduler_type=a.trl_scheduler, beta=a.trl_beta, seed=seed, logging_steps=10, report_to=[],
        save_strategy="no", use_cpu=True, bf16=False, disable_tqdm=True,
    )  # fmt: skip
    lora = LoraConfigModel(**cfg.lora.model_dump())
    trainer = GRPOTrainer(
        model=model, reward_funcs=hierarchy.as_reward_function(), args=args, train_dataset=data,
        processing_class=tok, peft_config=lora_config(lora, model),
    )  # fmt: skip
    trainer.train()
    merged = trainer.model.merge_and_unload()
    return {
        "accuracy": heldout_accuracy(merged, tok),
        "generated": cfg.steps * args.per_device_train_batch_size,
    }


ARMS = {"sft": arm_sft, "r1rl": arm_r1rl, "trl": arm_trl}


def one(a: argparse.Namespace) -> None:
    import torch

    from r1rl.train.common import setup

    setup(a.seed, 1)
    torch.manual_seed(a.seed)
    out = Path(a.out) / f"{a.one}-{a.tag}-seed{a.seed}"
    res = ARMS[a.one](a.sft.format(seed=a.seed), a.seed, out, a)
    print("RESULT " + json.dumps(res))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--sft", required=True, help="the SFT model of each seed, e.g. 'runs/tiny-seed{seed}/sft/final'"
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[3, 4, 5])
    ap.add_argument(
        "--r1rl", nargs="*", default=[], help="overrides of recipes/configs/tiny/ppo.yaml (both arms' budget)"
    )
    ap.add_argument("--trl-lr", type=float, default=3e-4)
    ap.add_argument("--trl-beta", type=float, default=0.02)
    ap.add_argument("--trl-scheduler", default="cosine")
    ap.add_argument("--arms", nargs="+", default=["sft", "r1rl", "trl"], choices=list(ARMS))
    ap.add_argument("--tag", default="default", help="names this setting's rows (a search adds rows)")
    ap.add_argument("--jobs", type=int, default=1, help="arms run at once, one thread each")
    ap.add_argument("--out", default="runs/learning_vs_trl")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        return one(a)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    done = [json.loads(x) for x in results.read_text().splitlines()] if results.exists() else []
    have = {(d["arm"], d["tag"], d["seed"]) for d in done}
    todo = [
        (arm, s) for s in a.seeds for arm in a.arms if (arm, "sft" if arm == "sft" else a.tag, s) not in have
    ]

    def run(job: tuple[str, int]) -> dict:
        arm, seed = job
        cmd = [sys.executable, __file__, "--one", arm, "--seed", str(seed), *_passthrough(a)]
        p = subprocess.run(cmd, capture_output=True, text=True)
        line = next((x for x in p.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            sys.exit(f"{arm} seed {seed} failed:\n{p.stderr[-3000:]}")
        row = {"arm": arm, "tag": "sft" if arm == "sft" else a.tag, "seed": seed, **json.loads(line[7:])}
        with results.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
        return row

    with ThreadPoolExecutor(max(1, a.jobs)) as pool:
        done += list(pool.map(run, todo))
    _table(done, a.seeds)


def _passthrough(a: argparse.Namespace) -> list[str]:
    return ["--sft", a.sft, "--trl-lr", str(a.trl_lr), "--trl-beta", str(a.trl_beta), "--trl-scheduler",
            a.trl_scheduler, "--tag", a.tag, "--out", a.out, "--r1rl", *a.r1rl]  # fmt: skip


def _table(rows: list[dict], seeds: list[int]) -> None:
    """Held-out accuracy per seed and setting, and each setting's mean gain over SFT."""
    sft = {r["seed"]: r["accuracy"] for r in rows if r["arm"] == "sft"}
    settings = sorted({(r["arm"], r["tag"]) for r in rows if r["arm"] != "sft"})
    print("| setting | " + " | ".join(f"seed {s}" for s in seeds) + " | mean gain over SFT |")
    print("|---|" + "---|" * (len(seeds) + 1))
    print("| SFT | " + " | ".join(f"{100 * sft[s]:.1f}%" if s in sft else "—" for s in seeds) + " | |")
    for arm, tag in settings:
        acc = {r["seed"]: r["accuracy"] for r in rows if (r["arm"], r["tag"]) == (arm, tag)}
        gains = [100 * (acc[s] - sft[s]) for s in seeds if s in acc and s in sft]
        cells = " | ".join(f"{100 * acc[s]:.1f}%" if s in acc else "—" for s in seeds)
        mean = f"{statistics.mean(gains):+.1f}" if gains else "—"
        print(f"| {arm} ({tag}) | {cells} | {mean} |")


if __name__ == "__main__":
    main()
