"""Throughput and memory of r1rl's RL loop against TRL's GRPOTrainer on the same tiny MoE.

Same model, LoRA adapter, reward, prompts per step, samples per prompt, completion length
and optimizer steps for three set-ups, each in its own subprocess so peak RSS is its own:

- ``r1rl-grpo``: r1rl's loop with group advantages (no critic);
- ``r1rl-gae``:  r1rl's loop with the LoRA critic and GAE;
- ``trl-grpo``:  ``trl.GRPOTrainer`` with the same ``peft_config`` and reward function.

Prints samples/s (completions per second, first step excluded as warm-up) and peak RSS,
then the ratios. ``python bench/ppo_vs_trl.py [--steps 6] [--model runs/tiny/sft/final]``.
Without ``--model`` a freshly initialised ``tiny`` preset is used (completions then run to the
length limit, which makes every set-up generate the same number of tokens).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPTS, SAMPLES, MAX_NEW, THREADS = 16, 4, 32, 2


def _cpu_s() -> float:
    """CPU seconds used by this process (all threads): less sensitive to a busy machine than wall time."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _model_and_tokenizer(model_path: str | None):
    from r1rl.models.factory import build_config, build_model, load_merged, load_tokenizer, resolve_model_path
    from r1rl.models.tokenizer import train_tokenizer
    from r1rl.tasks.arithmetic import ArithmeticTask

    if model_path:
        path = resolve_model_path(model_path)
        return load_merged(path), load_tokenizer(path)
    task = ArithmeticTask()
    tok = train_tokenizer([p.prompt + p.completion for p in task.problems("train", 2000, seed=0)], 512)
    cfg = build_config("tiny", len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    return build_model(cfg, seed=0), tok


def run_r1rl(estimator: str, steps: int, model_path: str | None) -> dict:
    import torch
    from r1rl.rewards.hierarchy import RewardHierarchy

    from r1rl.config import LoraConfigModel, PPOSettings, RewardsConfig
    from r1rl.rundir import RunDir
    from r1rl.tasks.arithmetic import ArithmeticTask
    from r1rl.train.ppo.context import PPOContext
    from r1rl.train.ppo.roles import ActorCritic
    from r1rl.train.ppo.trainer import train_ppo

    torch.manual_seed(0)
    model, tok = _model_and_tokenizer(model_path)
    roles = ActorCritic(model, LoraConfigModel(), critic=estimator == "gae")
    cfg = PPOSettings(
        steps=steps,
        rollout={"prompts_per_step": PROMPTS, "samples_per_prompt": SAMPLES, "max_new_tokens": MAX_NEW},
        algorithm={"advantage_estimator": estimator, "kl_coef": 0.02, "kl_in": "loss", "kl_estimator": "k3"},
        optim={"ppo_epochs": 1, "minibatch_size": PROMPTS * SAMPLES, "lr": 1e-4},
    )  # as TRL's GRPO: β = 0.02, the k3 KL as a loss term
    pool = [p.record for p in ArithmeticTask().problems("train", PROMPTS * steps, seed=1)]
    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir(Path(tmp) / "ppo").start(cfg)
        cpu0 = _cpu_s()
        hierarchy = RewardHierarchy.from_config(RewardsConfig(tiers=ArithmeticTask().rewards))
        train_ppo(PPOContext(roles, tok, hierarchy, cfg, run=run), pool, seed=0)
        cpu = (_cpu_s() - cpu0) / steps
        rows = [json.loads(line) for line in run.metrics.read_text().splitlines()]
    times = [r["perf/step_s"] for r in rows[1:]]
    tokens = [r["response/length"] for r in rows[1:]]
    return {"step_s": sum(times) / len(times), "completion_tokens": sum(tokens) / len(tokens), "cpu_s": cpu}


def run_trl(steps: int, model_path: str | None) -> dict:
    import torch
    from datasets import Dataset
    from r1rl.rewards.hierarchy import RewardHierarchy
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from r1rl.config import LoraConfigModel, RewardsConfig
    from r1rl.models.factory import lora_config
    from r1rl.tasks.arithmetic import ArithmeticTask

    torch.manual_seed(0)
    model, tok = _model_and_tokenizer(model_path)
    # TRL's chunked forward breaks transformers' router aux loss (mask/batch mismatch): switch the
    # router outputs off for TRL; r1rl keeps them on (it logs expert load every step).
    model.config.output_router_logits = False
    problems = ArithmeticTask().problems("train", PROMPTS * steps, seed=1)
    data = Dataset.from_dict({"prompt": [p.prompt for p in problems], "answer": [p.answer for p in problems]})
    reward = RewardHierarchy.from_config(RewardsConfig(tiers=ArithmeticTask().rewards)).as_reward_function()

    class Timer(TrainerCallback):
        def __init__(self) -> None:
            self.marks = [time.perf_counter()]

        def on_step_end(self, args, state, control, **kw):
            self.marks.append(time.perf_counter())

    timer = Timer()
    with tempfile.TemporaryDirectory() as tmp:
        args = GRPOConfig(
            output_dir=tmp, max_steps=steps, per_device_train_batch_size=PROMPTS * SAMPLES,
            num_generations=SAMPLES, max_completion_length=MAX_NEW, gradient_accumulation_steps=1,
            num_iterations=1, beta=0.02, learning_rate=1e-4, temperature=1.0, logging_steps=1,
            report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True, shuffle_dataset=False,
            bf16=False,
        )  # fmt: skip
        trainer = GRPOTrainer(
            model=model, reward_funcs=reward, args=args, train_dataset=data, processing_class=tok,
            peft_config=lora_config(LoraConfigModel(), model),
        )  # fmt: skip
        trainer.add_callback(timer)
        timer.marks = [time.perf_counter()]
        cpu0 = _cpu_s()
        trainer.train()
        cpu = (_cpu_s() - cpu0) / steps
    times = [b - a for a, b in zip(timer.marks, timer.marks[1:])]
    key = "completions/mean_length"
    lengths = [h[key] for h in trainer.state.log_history if key in h][1:]
    step_s = sum(times[1:]) / len(times[1:])
    return {"step_s": step_s, "completion_tokens": sum(lengths) / max(1, len(lengths)), "cpu_s": cpu}


def one(name: str, steps: int, model_path: str | None) -> None:
    import torch

    torch.set_num_threads(THREADS)
    if name == "trl-grpo":
        res = run_trl(steps, model_path)
    else:
        res = run_r1rl(name.split("-")[1], steps, model_path)
    res["samples_per_s"] = PROMPTS * SAMPLES / res["step_s"]
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(res))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--model", default=None, help="a pipeline stage's final/ (default: fresh tiny preset)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved repetitions; medians are reported")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        return one(a.one, a.steps, a.model)
    runs: dict[str, list[dict]] = {}
    for _ in range(a.rounds):  # interleaved, so a burst of load on the machine hits every set-up
        for name in ("r1rl-grpo", "r1rl-gae", "trl-grpo"):
            cmd = [sys.executable, __file__, "--one", name, "--steps", str(a.steps)]
            cmd += ["--model", a.model] if a.model else []
            out = subprocess.run(cmd, capture_output=True, text=True)
            line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                sys.exit(f"{name} failed:\n{out.stderr[-3000:]}")
            runs.setdefault(name, []).append(json.loads(line[7:]))
    results = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()}
    for name, rs in runs.items():
        print(f"{name} samples/s per round: " + ", ".join(f"{r['samples_per_s']:.1f}" for r in rs))
    print(
        f"medians of {a.rounds} rounds: {PROMPTS} prompts x {SAMPLES} samples, <= {MAX_NEW} new tokens, "
        f"{a.steps} steps, {THREADS} threads"
    )
    print("| set-up | samples/s | s/step | CPU s/step | completion tokens | peak RSS MB |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r['samples_per_s']:.1f} | {r['step_s']:.2f} | {r['cpu_s']:.2f} "
            f"| {r['completion_tokens']:.1f} | {r['peak_rss_mb']:.0f} |"
        )
    g, v, t = results["r1rl-grpo"], results["r1rl-gae"], results["trl-grpo"]
    print(f"r1rl grpo / TRL samples/s: {g['samples_per_s'] / t['samples_per_s']:.2f}x (target >= 1.5x)")
    print(f"r1rl gae step time / r1rl grpo: {v['step_s'] / g['step_s']:.2f}x (target <= 1.3x)")
    gae_cpu, trl_cpu = v["cpu_s"] / g["cpu_s"], t["cpu_s"] / g["cpu_s"]
    print(f"CPU s/step: r1rl gae / grpo {gae_cpu:.2f}x; TRL / r1rl grpo {trl_cpu:.2f}x")
    print(f"peak RSS r1rl grpo / TRL: {g['peak_rss_mb'] / t['peak_rss_mb']:.2f}x")


if __name__ == "__main__":
    main()
