"""``r1rl prune MODEL_OR_RUN OUT --fraction F``: the command's arguments, checked before torch loads."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from r1rl.errors import UserError

DESCRIPTION = """Drop each MoE layer's least-used routed experts (the same number in every layer) and
write a smaller plain Hugging Face checkpoint that loads in transformers without r1rl. Experts are
ranked by the tokens routed to them in a calibration pass over the task's training rows (a run's
config.yaml, or --calibration), or by a PPO run's expert_load.jsonl (--telemetry); --ranking random is
the baseline. OUT/pruning.json records the kept experts and the parameter counts. To heal the pruned
model: r1rl sft recipes/configs/tiny/sft.yaml model_path=OUT output_dir=OUT-healed"""


def add_prune_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``prune`` to the ``r1rl`` CLI's subcommands."""
    p = subparsers.add_parser(
        "prune", help="drop each MoE layer's least-used experts; write a smaller plain checkpoint",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument(
        "model", metavar="MODEL_OR_RUN",
        help="a run directory (its final/; its config.yaml's task calibrates), a model or adapter folder",
    )  # fmt: skip
    p.add_argument("out", metavar="OUT", help="the pruned checkpoint's folder (must not exist)")
    p.add_argument(
        "--fraction", required=True, metavar="F",
        help="share of each layer's experts to drop, rounded to whole experts (0.25 of 8 experts: 2)",
    )  # fmt: skip
    p.add_argument(
        "--ranking", default="usage", metavar="usage|random",
        help="usage (default): drop the least-used experts; random: a seeded draw, the baseline",
    )  # fmt: skip
    p.add_argument("--seed", default="0", help="seed of --ranking random (default 0)")
    p.add_argument(
        "--calibration", metavar="CONFIG.yaml",
        help="a config whose task:/data:/seed: give the calibration rows (default: the run's config.yaml)",
    )  # fmt: skip
    p.add_argument(
        "--telemetry", metavar="EXPERT_LOAD",
        help="rank by a PPO run's expert_load.jsonl (or its run directory) instead of a calibration pass",
    )  # fmt: skip
    p.add_argument("--num-examples", default="256", metavar="N", help="calibration rows (default 256)")
    p.add_argument("--batch-size", default="16", metavar="N", help="calibration batch size (default 16)")
    p.add_argument("--threads", default=None, metavar="N", help="torch CPU threads (default: torch's)")
    return p


def run_prune(args: argparse.Namespace) -> int:
    """Check the arguments (one line each, before torch loads), prune, and print one line of what it did."""
    fraction = _number(args.fraction, "--fraction", float)
    if not 0 < fraction < 1:
        raise UserError(
            f"prune: --fraction must be between 0 and 1, the share of experts to drop (got {fraction})"
        )
    if args.ranking not in ("usage", "random"):
        raise UserError(f"prune: --ranking must be usage or random (got {args.ranking!r})")
    if Path(args.out).exists():
        raise UserError(f"prune: {args.out} exists; not overwriting it")
    counts = {
        k: _number(getattr(args, k), f"--{k.replace('_', '-')}", int) for k in ("num_examples", "batch_size")
    }
    if min(counts.values()) < 1:
        raise UserError("prune: --num-examples and --batch-size must be at least 1")
    import torch  # the checks above answer in a second; pruning needs torch
    from transformers.utils import logging as hf_logging

    from r1rl.compress.prune import PruneSpec, prune

    hf_logging.disable_progress_bar()  # the command's output is its one line (or one error line)

    if args.threads is not None:
        torch.set_num_threads(_number(args.threads, "--threads", int))
    spec = PruneSpec(
        model=args.model, out=args.out, fraction=fraction, ranking=args.ranking,
        seed=_number(args.seed, "--seed", int), calibration=args.calibration, telemetry=args.telemetry,
        **counts,
    )  # fmt: skip
    report = prune(spec)
    experts, params = report["experts"], report["parameters"]
    print(
        f"[prune] {experts['before']} → {experts['after']} experts in each of {len(report['kept'])} layers "
        f"({report['ranking']}: {report['ranked_on']}); "
        f"{params['before']:,} → {params['after']:,} parameters; wrote {args.out}"
    )
    return 0


def _number(raw: str, flag: str, kind: type) -> Any:
    try:
        return kind(raw)
    except (TypeError, ValueError):
        raise UserError(
            f"prune: {flag} expects {'a number' if kind is float else 'an integer'} (got {raw!r})"
        ) from None
