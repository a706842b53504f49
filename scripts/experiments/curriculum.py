"""Curriculum vs random order, replay on vs off: validation loss against tokens seen.

Pretrains a from-scratch tiny Qwen3-MoE on the embedded arithmetic corpus (worked chains of
2–5 two-digit operands) under four data orders — random, curriculum, random + replay,
curriculum + replay — for several seeds each, and evaluates the loss on held-out problems
(the task's test split) every few steps, overall and per difficulty stage. Everything but
the data order is the same within a seed: tokenizer, corpus, model initialisation,
optimiser and batch shape (``rows`` × ``seq_len`` tokens of whole documents, attention
isolated per document).

- **curriculum**: stages by operand count (basic / intermediate / expert = ``r1rl.data``
  :func:`~r1rl.data.curriculum.assign_stages` on the ``operands`` difficulty), switching at
  fixed fractions of the run, with ``mix_earlier`` of each batch from earlier stages.
- **replay**: a loss-prioritised buffer (capacity ``K``, α = 1) supplies ``replay_fraction``
  of each batch's documents.

    python scripts/experiments/curriculum.py [--steps 300] [--seeds 0 1 2] [--threads 1]

Writes ``docs/experiments/curriculum.png`` and ``curriculum.json`` (every curve), and prints
a markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from r1rl.data import (
    STAGE_NAMES,
    ArithmeticSource,
    CurriculumSampler,
    DocumentBatcher,
    ReplayBuffer,
    StageSchedule,
    assign_stages,
    difficulty_scores,
    pack_documents,
    per_document_loss,
    random_order,
    stage_boundaries,
)
from r1rl.model import build_config, build_model
from r1rl.tokenizer import train_tokenizer
from r1rl.training import cosine_schedule, grad_norm_finite, seed_everything

CONDITIONS = {  # name: (curriculum, replay)
    "random": (False, False),
    "curriculum": (True, False),
    "random + replay": (False, True),
    "curriculum + replay": (True, True),
}


def build_data(a: argparse.Namespace) -> dict:
    """Tokenizer, tokenised train corpus with stages, and the packed validation set."""
    task = dict(min_operands=2, max_operands=5, digits=2, operators="+-")
    train_docs = list(ArithmeticSource(a.num_problems, seed=0, **task))
    val_docs = list(ArithmeticSource(a.num_val, seed=0, split="test", **task))
    tok = train_tokenizer([d.text for d in train_docs], vocab_size=384)
    train_scores = difficulty_scores(train_docs, "operands")
    bounds = stage_boundaries(train_scores)
    val_ids = tok([d.text for d in val_docs], add_special_tokens=False).input_ids
    val = pack_documents(val_ids, a.seq_len, tok.eos_token_id, tok.pad_token_id)
    return {
        "tokenizer": tok,
        "train_ids": tok([d.text for d in train_docs], add_special_tokens=False).input_ids,
        "boundaries": bounds.tolist(),
        "train_stages": assign_stages(train_scores, boundaries=bounds),
        "val": val,
        "val_stages": torch.from_numpy(
            assign_stages(difficulty_scores(val_docs, "operands"), boundaries=bounds)
        ),
    }


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: dict) -> dict[str, float]:
    """Token-mean loss on the validation documents, overall and per difficulty stage."""
    model.eval()
    val = data["val"]
    logits = model(**val.model_inputs(isolate_documents=True)).logits  # (R, T, V)
    n_docs = int(val.segment_ids.max()) + 1
    doc_loss = per_document_loss(logits, val.labels, val.segment_ids, n_docs)  # (D,)
    # tokens scored per document, to turn per-document means back into a token mean
    counts = torch.bincount(val.segment_ids[:, 1:][val.labels[:, 1:] != -100], minlength=n_docs).float()
    ok = counts > 0
    out = {"val_loss": float((doc_loss[ok] * counts[ok]).sum() / counts[ok].sum())}
    for s, name in enumerate(STAGE_NAMES):
        m = ok & (data["val_stages"] == s)
        out[f"val_loss/{name}"] = float((doc_loss[m] * counts[m]).sum() / counts[m].sum())
    model.train()
    return out


def run_one(name: str, seed: int, data: dict, a: argparse.Namespace) -> list[dict]:
    curriculum, replay = CONDITIONS[name]
    seed_everything(seed)
    tok = data["tokenizer"]
    mc = build_config(a.preset, len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    model = build_model(mc, seed)
    n = len(data["train_ids"])
    if curriculum:
        switch = [int(f * a.steps) for f in a.switch_at]
        sampler = CurriculumSampler(data["train_stages"], StageSchedule(3, switch), a.mix_earlier, seed)
    else:
        sampler = random_order(n, seed)
    buffer = ReplayBuffer(a.replay_capacity, a.replay_fraction, seed=seed) if replay else None
    batcher = DocumentBatcher(
        data["train_ids"],
        sampler,
        rows=a.rows,
        seq_len=a.seq_len,
        eos_id=tok.eos_token_id,
        pad_id=tok.pad_token_id,
        replay=buffer,
        isolate_documents=True,
        seed=seed,
    )
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=a.lr, betas=(0.9, 0.95))
    sched = cosine_schedule(opt, a.warmup, a.steps)
    curve = [{"step": 0, "tokens": 0, **evaluate(model, data)}]
    model.train()
    for step in range(a.steps):
        batch = batcher.get_batch(step)
        out = model(**batch)
        out.loss.backward()
        grad_norm_finite(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        batcher.feedback(step, out.logits, out.loss.item())
        if (step + 1) % a.eval_every == 0 or step + 1 == a.steps:
            curve.append({"step": step + 1, "tokens": batcher.stats.tokens, **evaluate(model, data)})
    curve[-1]["replayed_share"] = batcher.stats.replayed / max(1, batcher.stats.documents)
    if buffer is not None:  # which difficulty the buffer's hardest examples come from, at the end
        ids = np.fromiter(buffer.priorities, dtype=np.int64)
        counts = np.bincount(data["train_stages"][ids], minlength=3)
        curve[-1]["buffer_stage_share"] = (counts / len(ids)).tolist()
    return curve


def summarise(results: dict[str, dict[int, list[dict]]]) -> str:
    keys = ["val_loss", *(f"val_loss/{s}" for s in STAGE_NAMES)]
    head = "| order | final val loss | basic | intermediate | expert | mean over run | tokens seen |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for name, by_seed in results.items():
        cells = []
        for k in keys:
            vals = [c[-1][k] for c in by_seed.values()]
            cells.append(f"{statistics.fmean(vals):.3f} ± {statistics.stdev(vals):.3f}")
        area = [statistics.fmean(r["val_loss"] for r in c[1:]) for c in by_seed.values()]
        cells.append(f"{statistics.fmean(area):.3f} ± {statistics.stdev(area):.3f}")
        cells.append(f"{statistics.fmean(c[-1]['tokens'] for c in by_seed.values()) / 1e3:.0f}k")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for name, by_seed in results.items():
        shares = [c[-1]["buffer_stage_share"] for c in by_seed.values() if "buffer_stage_share" in c[-1]]
        if shares:
            mean = np.mean(shares, axis=0)
            parts = ", ".join(f"{s} {m:.0%}" for s, m in zip(STAGE_NAMES, mean))
            replayed = statistics.fmean(c[-1]["replayed_share"] for c in by_seed.values())
            lines.append(f"\n{name}: {replayed:.1%} of trained documents were replays; final buffer: {parts}")
    return "\n".join(lines)


def plot(results: dict[str, dict[int, list[dict]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    for ax, key, title in zip(
        axes, ["val_loss", "val_loss/expert"], ["all held-out problems", "expert (5 operands)"]
    ):
        for name, by_seed in results.items():
            curves = list(by_seed.values())
            x = np.mean([[r["tokens"] for r in c] for c in curves], axis=0) / 1e3
            y = np.array([[r[key] for r in c] for c in curves])  # (seeds, evals)
            (line,) = ax.plot(x, y.mean(0), label=name)
            ax.fill_between(x, y.min(0), y.max(0), color=line.get_color(), alpha=0.15)
        ax.set(title=f"validation loss: {title}", xlabel="training tokens seen (thousands)", ylabel="loss")
        ax.set_ylim(top=min(ax.get_ylim()[1], 3.0))
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle("Curriculum and replay on the arithmetic corpus (mean of seeds; band = min–max)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--num-problems", type=int, default=8000)
    ap.add_argument("--num-val", type=int, default=400)
    ap.add_argument("--eval-every", type=int, default=25)
    ap.add_argument(
        "--switch-at", type=float, nargs=2, default=[0.2, 0.45], help="stage starts, fraction of steps"
    )
    ap.add_argument("--mix-earlier", type=float, default=0.2)
    ap.add_argument("--replay-capacity", type=int, default=256)
    ap.add_argument("--replay-fraction", type=float, default=0.25)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=list(CONDITIONS))
    ap.add_argument("--out", default="docs/experiments")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    data = build_data(a)
    sizes = np.bincount(data["train_stages"], minlength=3).tolist()
    print(
        f"[curriculum] {len(data['train_ids'])} train problems, stages {dict(zip(STAGE_NAMES, sizes))}, "
        f"upper boundaries (operands + digits/10) {data['boundaries']}"
    )
    results: dict[str, dict[int, list[dict]]] = {name: {} for name in a.conditions}
    for seed in a.seeds:
        for name in a.conditions:
            t = time.perf_counter()
            curve = run_one(name, seed, data, a)
            results[name][seed] = curve
            last = curve[-1]
            print(
                f"[curriculum] seed {seed} {name:>20}: val loss {last['val_loss']:.3f} "
                f"(expert {last['val_loss/expert']:.3f}) after {last['tokens']} tokens, "
                f"{time.perf_counter() - t:.0f}s"
            )
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "curriculum.json").write_text(json.dumps({"args": vars(a), "results": results}, indent=1) + "\n")
    plot(results, out / "curriculum.png")
    print(
        f"\n{a.preset} preset, {a.steps} steps of {a.rows}x{a.seq_len} tokens, seeds {a.seeds} (mean ± std)\n"
    )
    print(summarise(results))
    print(f"\n[curriculum] total {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
