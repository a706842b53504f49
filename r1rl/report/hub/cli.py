"""``r1rl push RUN_DIR --repo-id ID``: the command's arguments, and the command on its own."""

from __future__ import annotations

import argparse
import sys
import tempfile
from typing import Any

from r1rl.errors import UserError
from r1rl.report.hub.upload import WHATS, push_run

NEW_FOLDER = "\0new"  # --dry-run given without a folder


def add_push_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``push`` to the ``r1rl`` CLI's subcommands."""
    p = subparsers.add_parser(
        "push",
        help="push a run's final model, tokenizer and model card to the Hugging Face Hub",
        description="Push a run's final/ (as it is, or an adapter merged into its base), its tokenizer and a "
        "model card to the Hugging Face Hub. The token comes from HF_TOKEN or `hf auth login`.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a stage's or a pipeline's output_dir, or an eval run")
    p.add_argument("--repo-id", required=True, metavar="ID", help="namespace/name of the model repo")
    p.add_argument(
        "--what", choices=WHATS, default=None,
        help="full|adapter: push final/ as it is, checking it is one; merged: merge an adapter into its base",
    )  # fmt: skip
    p.add_argument(
        "--dry-run", metavar="DIR", nargs="?", const=NEW_FOLDER, default=None,
        help="write the exact upload folder to DIR (default: a new temporary folder); upload nothing",
    )  # fmt: skip
    p.add_argument(
        "--private",
        action="store_true",
        help="create the repo private (an existing repo keeps its visibility)",
    )
    p.add_argument("--revision", default=None, help="branch to commit to (created if missing); default main")
    p.add_argument("--license", default="apache-2.0", help="licence in the model card (default apache-2.0)")
    p.add_argument(
        "--base-model", default=None, metavar="ID", help="Hub id of the base, when it was trained locally"
    )
    p.add_argument(
        "--eval-results", default=None, metavar="PATH", help="an eval run dir or eval_results.json"
    )
    p.add_argument("--message", default=None, help="commit message")
    return p


def run_push(args: argparse.Namespace) -> int:
    if args.dry_run == NEW_FOLDER:  # --dry-run without a folder: a new one, named in the printed line
        args.dry_run = tempfile.mkdtemp(prefix="r1rl-push-")
    push_run(
        args.run_dir,
        args.repo_id,
        what=args.what,
        private=args.private,
        revision=args.revision,
        dry_run=args.dry_run,
        license=args.license,
        base_model=args.base_model,
        eval_results=args.eval_results,
        commit_message=args.message,
    )
    return 0


def main_push(argv: list[str] | None = None) -> int:
    """``r1rl push`` on its own: bad input prints one line and exits with status 2, as the CLI does."""
    parser = argparse.ArgumentParser(prog="r1rl")
    add_push_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["push", *(sys.argv[1:] if argv is None else argv)])
    try:
        return run_push(args)
    except UserError as e:
        print(f"r1rl: error: {e}", file=sys.stderr)
        return 2
