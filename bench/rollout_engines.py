"""New tokens per second of each rollout engine (``rollout.engine``) on one PPO-sized batch.

The policy is what PPO samples from: a from-scratch ``--preset`` model (random weights; or
``--model PATH``, e.g. a pipeline's ``sft/final``) with the PPO LoRA adapter on attention and
experts (``--no-lora``: the bare model). Every round samples ``--prompts`` arithmetic prompts ×
``--samples`` completions of at
most ``--max-new-tokens`` tokens (temperature 1, the rollout defaults) with each engine, in
alternating order; the table gives medians over the rounds, after one warm-up call per engine.
New tokens are the completion tokens through EOS (``completion_mask``); with random weights EOS is
rare, so nearly every row runs to the limit.

    python bench/rollout_engines.py [--preset tiny] [--rounds 5] [--threads 1] [--model PATH]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch


def build(preset: str, model_path: str | None, lora: bool) -> tuple[Any, Any]:
    from r1rl.config import LoraConfigModel
    from r1rl.models.factory import build_config, build_model, load_merged, load_tokenizer
    from r1rl.models.tokenizer import train_tokenizer
    from r1rl.tasks.arithmetic import ArithmeticTask
    from r1rl.train.ppo.roles import ActorCritic

    if model_path:
        base, tok = load_merged(model_path), load_tokenizer(model_path)
    else:
        texts = [p.prompt + p.completion for p in ArithmeticTask().problems("train", 2000, seed=0)]
        tok = train_tokenizer(texts, vocab_size=512)
        cfg = build_config(preset, len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        base = build_model(cfg, seed=0)
    if not lora:
        return base, tok
    return ActorCritic(base, LoraConfigModel(), critic=False).generation_model, tok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--model", default=None, help="a local model directory instead of a from-scratch preset")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--engines", default="generate,continuous_batching")
    ap.add_argument("--no-lora", action="store_true", help="the bare model, without PPO's LoRA adapter")
    ap.add_argument("--page-size", type=int, default=None, help="continuous batching's page size (tokens)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from r1rl.models.encoding import encode_prompts
    from r1rl.tasks.arithmetic import ArithmeticTask
    from r1rl.train.ppo.engines import ENGINES, Sampling

    model, tok = build(args.preset, args.model, lora=not args.no_lora)
    records = [p.record for p in ArithmeticTask().problems("train", args.prompts, seed=1)]
    prompts = [r["prompt"] for r in records for _ in range(args.samples)]
    prompt_ids = encode_prompts(tok, prompts, None)
    sampling = Sampling(args.max_new_tokens, do_sample=True)
    names = args.engines.split(",")
    cb = {"page_size": args.page_size} if args.page_size else {}
    engines = {n: ENGINES.get(n)(model, tok, **(cb if n == "continuous_batching" else {})) for n in names}
    for e in engines.values():  # warm-up
        e.generate(prompt_ids, sampling)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    tokens: dict[str, list[int]] = {n: [] for n in names}
    for r in range(args.rounds):
        for n in names if r % 2 == 0 else names[::-1]:  # interleaved, alternating order
            torch.manual_seed(r)
            t0 = time.perf_counter()
            g = engines[n].generate(prompt_ids, sampling)
            seconds[n].append(time.perf_counter() - t0)
            tokens[n].append(int(g.completion_mask.sum()))
    params = sum(p.numel() for p in model.parameters()) / 1e6
    adapter = "without LoRA" if args.no_lora else "with PPO's LoRA"
    print(
        f"{args.model or args.preset} ({params:.2f}M parameters {adapter}), {len(prompts)} sequences x "
        f"<= {args.max_new_tokens} new tokens, threads={args.threads}, median of {args.rounds} rounds\n"
    )
    print("| engine | new tokens/s | s / rollout | new tokens / rollout |")
    print("|---|---|---|---|")
    rates = {n: statistics.median(t / s for t, s in zip(tokens[n], seconds[n])) for n in names}
    for n in names:
        s, t = statistics.median(seconds[n]), statistics.median(tokens[n])
        print(f"| {n} | {rates[n]:.0f} | {s:.2f} | {t:.0f} |")
    if len(names) == 2:
        print(f"\n{names[0]} / {names[1]}: {rates[names[0]] / rates[names[1]]:.2f}x the new tokens/s")


if __name__ == "__main__":
    main()
