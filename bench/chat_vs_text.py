"""Held-out accuracy of the tiny pipeline on the same rows written as text and as chat.

The rows are the embedded arithmetic task's (two-digit ``+-`` problems, 2–3 terms, fully worked
answers; ``--rows`` training rows and the task's 500 held-out problems), written three ways:

- ``text``: ``prompt`` / ``completion`` columns (``37+48-12=`` / ``<think>...</think><answer>73</answer>``);
- ``chat``: a ``messages`` column, the prompt as the user's turn and the completion as the assistant's,
  pretrained on as the chat template renders it (``<|im_start|>user\\n37+48-12=<|im_end|>\\n...``);
- ``chat-joined``: the same chat rows, pretrained on as r1rl did before the corpus went through the
  template: the messages' contents joined with newlines (written out as text rows, which give exactly
  those documents), then SFT and eval on the chat rows.

Each arm runs ``recipes/configs/tiny/{pretrain,sft,eval}.yaml`` with ``data.path`` set to its rows and
the step counts given here, one thread, one run after another; eval is greedy on the held-out rows, the
top tier's pass rate, of the SFT model and of the pretrained model alone (prompted as SFT prompts it).

    python bench/chat_vs_text.py --seeds 0 1 2

Results go to ``--out/results.jsonl``; a rerun skips the (arm, seed) pairs already there, and a stage
whose run directory holds a finished run of the same config is skipped, not run again.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

CONFIGS = Path(__file__).parents[1] / "recipes" / "configs" / "tiny"
ARMS = ("text", "chat-joined", "chat")
PRETRAIN_ROWS = {"text": "text", "chat-joined": "joined", "chat": "chat"}  # arm -> the rows it pretrains on


def write_rows(out: Path, n: int) -> dict[str, Path]:
    """The task's first ``n`` training rows and its held-out rows, in each layout (folders of two splits)."""
    from r1rl.tasks.arithmetic import ArithmeticTask

    task = ArithmeticTask(answer_only_fraction=0.0, train_size=n)
    splits = {s: task.records(s) for s in ("train", "test")}

    def chat(r: dict) -> dict:
        turns = [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["completion"]}]
        return {"messages": turns, "answer": r["answer"]}

    def joined(r: dict) -> dict:  # today's corpus document of a chat row, as a text row
        return {"prompt": "\n".join(m["content"] for m in chat(r)["messages"]), "answer": r["answer"]}

    layouts = {"text": lambda r: dict(r), "chat": chat, "joined": joined}
    folders = {}
    for name, fn in layouts.items():
        folder = out / "data" / name
        folder.mkdir(parents=True, exist_ok=True)
        for split, rows in splits.items():
            (folder / f"{split}.jsonl").write_text("".join(json.dumps(fn(r)) + "\n" for r in rows))
        folders[name] = folder
    return folders


def data_overrides(folder: Path, chat: bool) -> list[str]:
    chat_keys = ["data.messages_column=messages"] if chat else []
    return [f"data.path={folder}", "data.eval_split=test", *chat_keys]


def run_arm(arm: str, seed: int, folders: dict[str, Path], a: argparse.Namespace) -> dict:
    """Pretrain, SFT and eval of one arm and seed; its accuracy and each stage's seconds."""
    from r1rl.config import load_config
    from r1rl.run.stages import STAGES

    out = Path(a.out) / f"{arm}-seed{seed}"
    pre_data = data_overrides(folders[PRETRAIN_ROWS[arm]], arm == "chat")
    data = data_overrides(folders["text" if arm == "text" else "chat"], arm != "text")
    runs = [  # (run directory, stage, overrides)
        ("pretrain", "pretrain", [*pre_data, f"steps={a.pretrain_steps}", f"data.num_problems={a.rows}",
                                  f"tokenizer.num_texts={min(a.rows, 20000)}", "checkpoint.every=0"]),
        ("sft", "sft", [*data, f"model_path={out}/pretrain/final", f"steps={a.sft_steps}",
                        f"num_examples={a.sft_examples}"]),
        ("eval-pretrain", "eval", [*data, f"model_path={out}/pretrain/final"]),
        ("eval", "eval", [*data, f"model_path={out}/sft/final"]),
    ]  # fmt: skip
    out_row: dict = {}
    for name, stage, overrides in runs:
        t0 = time.perf_counter()
        common = [f"seed={seed}", "threads=1", f"output_dir={out}/{name}"]
        rd = STAGES[stage](
            load_config(STAGES[stage].config, CONFIGS / f"{stage}.yaml", [*common, *overrides])
        )
        out_row[f"{name}_s"] = round(time.perf_counter() - t0, 1)
        if stage == "eval":
            (metrics,) = json.loads((rd.path / "eval_results.json").read_text())["tasks"].values()
            out_row["accuracy" if name == "eval" else "pretrained_accuracy"] = metrics["accuracy"]
    return out_row


def table(rows: list[dict], seeds: list[int]) -> None:
    """Held-out accuracy per arm and seed after SFT (and of the pretrained model alone), each arm's mean."""
    print("| arm | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |")
    print("|---|" + "---|" * (len(seeds) + 1))
    for key, label in (("accuracy", "after SFT"), ("pretrained_accuracy", "pretrained only")):
        for arm in ARMS:
            acc = {r["seed"]: r[key] for r in rows if r["arm"] == arm and key in r}
            if not acc:
                continue
            cells = " | ".join(f"{100 * acc[s]:.1f}%" if s in acc else "—" for s in seeds)
            have = [acc[s] for s in seeds if s in acc]
            print(f"| {arm}, {label} | {cells} | {100 * statistics.mean(have):.1f}% |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    ap.add_argument("--rows", type=int, default=20000, help="training rows (the pretraining corpus)")
    ap.add_argument("--pretrain-steps", type=int, default=300)
    ap.add_argument("--sft-steps", type=int, default=60)
    ap.add_argument("--sft-examples", type=int, default=2000)
    ap.add_argument("--out", default="runs/chat_vs_text")
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out = Path(a.out)
    folders = write_rows(out, a.rows)
    results = out / "results.jsonl"
    rows = [json.loads(x) for x in results.read_text().splitlines()] if results.exists() else []
    have = {(r["arm"], r["seed"]) for r in rows}
    for seed in a.seeds:  # one after another: one thread each, never two runs at once
        for arm in a.arms:
            if (arm, seed) in have:
                continue
            row = {"arm": arm, "seed": seed, **run_arm(arm, seed, folders, a)}
            with results.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
            rows.append(row)
    table(rows, a.seeds)


if __name__ == "__main__":
    main()
