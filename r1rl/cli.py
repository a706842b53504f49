"""``r1rl pretrain|sft|ppo|eval|run CONFIG.yaml [key=value ...]``; ``eval --compare A B``; ``push RUN``.

Bad input (an unknown key, a mistyped value, a missing file) prints one line naming the
problem and exits with status 2; nothing a previous stage wrote is touched.
"""

from __future__ import annotations

import argparse
import sys

from r1rl.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="r1rl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_ in [
        ("pretrain", "pretrain a MoE from scratch"),
        ("sft", "LoRA supervised fine-tuning"),
        ("ppo", "PPO with a learned critic over the reward hierarchy"),
        ("eval", "evaluate a model on the embedded task and benchmarks, or --compare two evals"),
        ("run", "run every stage of a pipeline recipe; finished stages are skipped"),
    ]:
        p = sub.add_parser(name, help=help_)
        p.add_argument("config", nargs="?" if name == "eval" else None, help="YAML recipe")
        p.add_argument("overrides", nargs="*", help="key.sub=value overrides")
        if name == "eval":
            p.add_argument(
                "--compare", nargs=2, metavar=("RUN_A", "RUN_B"),
                help="paired comparison of two eval run directories instead of evaluating",
            )  # fmt: skip
    from r1rl.hub import add_push_parser  # light: huggingface_hub loads only when a push runs

    add_push_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except UserError as e:
        # one write per line, so the processes of a launcher cannot interleave their messages
        sys.stderr.write(f"r1rl: error: {e}\n")
        sys.stderr.flush()
        return 2
    except KeyboardInterrupt:
        print(
            "r1rl: interrupted; re-run the same command to resume from the last checkpoint", file=sys.stderr
        )
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    from r1rl.config import PipelineConfig, load_config

    if args.command == "push":
        from r1rl.hub import run_push

        return run_push(args)
    if args.command == "eval" and args.compare:
        from r1rl.eval.compare import compare, format_comparison

        if args.config:
            raise UserError("--compare takes two eval run directories and no recipe")
        print(format_comparison(compare(*args.compare), *args.compare))
        return 0
    if args.command == "eval" and not args.config:
        raise UserError("eval needs a recipe (r1rl eval CONFIG.yaml) or --compare RUN_A RUN_B")
    if args.command == "run":
        from r1rl import pipeline

        cfg = load_config(PipelineConfig, args.config, args.overrides)
        pipeline.stage_configs(cfg, source=args.config)  # validate every section before any work
        pipeline.run(cfg, source=args.config)
        return 0
    from r1rl.stages import CONFIG_TYPES, STAGES

    cfg = load_config(CONFIG_TYPES[args.command], args.config, args.overrides)
    STAGES[args.command](cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
