"""The ``r1rl`` command: stages, the pipeline, recipes and configs to start from, Hub pushes.

Bad input (an unknown key, a mistyped value, a missing file) prints one line naming the
problem and exits with status 2; nothing a previous stage wrote is touched.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from r1rl import __version__
from r1rl.compress.export import add_export_parser, run_export
from r1rl.errors import Preempted, UserError

if TYPE_CHECKING:
    from pydantic import BaseModel

DESCRIPTION = (
    "RL post-training for MoE language models: pretrain, SFT, PPO over a reward hierarchy, distill, eval."
)
EPILOG = """commands:
  r1rl pretrain|sft|ppo|distill|eval CONFIG.yaml [key.sub=value ...] [--recipe my_recipe.py]
  r1rl run PIPELINE.yaml [key.sub=value ...]      every stage; finished stages are skipped
  r1rl config STAGE                               a complete, commented default config
  r1rl tasks [NAME]                               the registered tasks (task: NAME), or one task's options
  r1rl cp ppo my_ppo.py                           copy a recipe script (or recipes/configs/<path>) to edit
  r1rl eval --compare EVAL_A EVAL_B               paired significance test of two evals
  r1rl push RUN_DIR --repo-id you/name            final model + model card to the Hub
  r1rl export RUN_DIR OUT [--quantize int8|int4]  a plain transformers model, merged, optionally quantised
  r1rl sweep SWEEP.yaml                           hyper-parameter search (Optuna); re-run to resume
  r1rl prune RUN_DIR OUT --fraction 0.25          drop each layer's least-used experts: a smaller model
`r1rl STAGE --help` lists every option of that stage."""


OVERWRITE = "start afresh where the run directory holds a run with another config (it is moved aside)"


def build_parser() -> argparse.ArgumentParser:
    from r1rl.config import TRAIN_STAGES, PipelineConfig
    from r1rl.config.docs import help_text
    from r1rl.run.stages import STAGES

    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="r1rl", description=DESCRIPTION, epilog=EPILOG, formatter_class=raw)
    parser.add_argument("--version", action="version", version=f"r1rl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in (*TRAIN_STAGES, "eval"):
        stage = STAGES[name]
        p = sub.add_parser(
            name, help=stage.help, description=(stage.config.__doc__ or stage.help).strip(),
            epilog="options (key.sub=value):\n" + help_text(stage.config), formatter_class=raw,
        )  # fmt: skip
        p.add_argument("config", nargs="?" if name == "eval" else None, help="YAML recipe")
        p.add_argument("overrides", nargs="*", help="key.sub=value overrides")
        p.add_argument("--recipe", metavar="FILE", help="run this copy of the stage's recipe (see r1rl cp)")
        p.add_argument("--overwrite", action="store_true", help=OVERWRITE)
        if name == "eval":
            p.add_argument(
                "--compare", nargs=2, metavar=("RUN_A", "RUN_B"),
                help="paired comparison of two eval run directories instead of evaluating",
            )  # fmt: skip
    p = sub.add_parser(
        "run", help="run every stage of a pipeline recipe; finished stages are skipped",
        epilog="options (key.sub=value):\n" + help_text(PipelineConfig), formatter_class=raw,
    )  # fmt: skip
    p.add_argument("config", help="YAML pipeline recipe")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE)
    p = sub.add_parser("config", help="print a complete, commented default config of a stage")
    p.add_argument("stage", choices=[*STAGES.names(), "pipeline"])
    p = sub.add_parser("tasks", help="list the registered tasks, or one task's options")
    p.add_argument("name", nargs="?", help="a task: print its options (task: {name: NAME, ...})")
    p = sub.add_parser("cp", help="copy a recipe script or a recipes/configs file to edit")
    p.add_argument(
        "name",
        nargs="?",
        help="a stage (pretrain, sft, ppo, distill, eval) or a config path, e.g. tiny/ppo.yaml",
    )
    p.add_argument("dest", nargs="?", help="where to write it (default: its file name, here)")
    p.add_argument("--list", action="store_true", help="list what can be copied")
    from r1rl.report.hub import add_push_parser  # light: huggingface_hub loads only when a push runs

    add_push_parser(sub)
    add_export_parser(sub)
    from r1rl.tune.cli import add_sweep_parser  # light: Optuna loads only when a sweep runs

    add_sweep_parser(sub)
    from r1rl.compress.cli import add_prune_parser  # light: torch loads only when a prune runs

    add_prune_parser(sub)
    return parser


def guarded(fn: Callable[[], int]) -> int:
    """Run ``fn``; a :class:`UserError` becomes one line on stderr and exit status 2, a SIGTERM stop
    (:class:`r1rl.train.loop.Preempted`) one line from the main process and exit status 143."""
    try:
        return fn()
    except Preempted as e:
        from r1rl.parallel.distributed import is_main

        if is_main():
            sys.stderr.write(
                f"r1rl: stopped by SIGTERM after step {e.step}; checkpoint written to {e.checkpoint}; "
                "run the same command to resume\n"
            )
            sys.stderr.flush()
        return 143
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
    except BrokenPipeError:  # the reader went away (`r1rl config ppo | head`): stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's own flush at exit fails too
        return 141


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return guarded(lambda: _dispatch(args))


def recipe_main(
    run: Callable[[Any], Any], config_type: type[BaseModel], argv: list[str] | None = None
) -> int:
    """``python my_recipe.py CONFIG.yaml [key.sub=value ...] [--overwrite]``: load the config and run
    the recipe as its stage runs any (:meth:`r1rl.run.stages.Stage.run`: skip, resume or refuse; push
    if asked)."""
    from r1rl.config import load_config
    from r1rl.run.stages import stage_of

    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: python {Path(sys.argv[0]).name} CONFIG.yaml [key.sub=value ...] [--overwrite]")
        return 0 if argv else 2

    def go() -> int:
        overrides = [a for a in argv[1:] if a != "--overwrite"]
        cfg = load_config(config_type, argv[0], overrides)
        stage_of(config_type).run(cfg, recipe=run, overwrite="--overwrite" in argv[1:])
        return 0

    return guarded(go)


def _dispatch(args: argparse.Namespace) -> int:
    from r1rl.config import PipelineConfig, load_config

    if args.command == "push":
        from r1rl.report.hub import run_push

        return run_push(args)
    if args.command == "export":
        return run_export(args)
    if args.command == "sweep":
        from r1rl.run.sweep import run_sweep

        return run_sweep(args)
    if args.command == "prune":
        from r1rl.compress.cli import run_prune

        return run_prune(args)
    if args.command == "config":
        return _print_config(args.stage)
    if args.command == "tasks":
        return _print_tasks(args.name)
    if args.command == "cp":
        return _copy(args.name, args.dest, args.list)
    if args.command == "eval" and args.compare:
        from r1rl.eval.compare import compare, format_comparison

        if args.config:
            raise UserError("--compare takes two eval run directories and no recipe")
        print(format_comparison(compare(*args.compare), *args.compare))
        return 0
    if args.command == "eval" and not args.config:
        raise UserError("eval needs a recipe (r1rl eval CONFIG.yaml) or --compare RUN_A RUN_B")
    if args.command == "run":
        from r1rl.run import pipeline

        cfg = load_config(PipelineConfig, args.config, args.overrides)
        pipeline.stage_configs(cfg, source=args.config)  # validate every section before any work
        pipeline.run(cfg, source=args.config, overwrite=args.overwrite)
        return 0
    from r1rl.run.stages import STAGES

    stage = STAGES[args.command]
    stage(
        load_config(stage.config, args.config, args.overrides), recipe=args.recipe, overwrite=args.overwrite
    )
    return 0


def _print_tasks(name: str | None) -> int:
    """The task registry: one line per task (its file, rewards, what it is), or one task's options."""
    from r1rl.config.docs import help_text
    from r1rl.tasks import TASKS

    if name is not None:
        task = TASKS.get(name, "task")
        print(f"task: {{name: {name}, ...}}  ({task.build.__module__})\n" + help_text(task.options))
        return 0
    rows = []
    for task_name, task in TASKS.items():
        about = (task.options.__doc__ or "").strip().split("\n")[0]
        rows.append(f"  {task_name:<12} {task.build.__module__:<22} {about}")
    print("tasks (task: NAME in any stage; r1rl tasks NAME lists its options):\n" + "\n".join(rows))
    return 0


def _print_config(name: str) -> int:
    from r1rl.config import PipelineConfig
    from r1rl.config.docs import commented_yaml
    from r1rl.run.stages import STAGES

    cls = PipelineConfig if name == "pipeline" else STAGES[name].config
    print(
        commented_yaml(
            cls,
            f"r1rl {'run' if name == 'pipeline' else name}: {(cls.__doc__ or '').strip().splitlines()[0]}",
        )
    )
    return 0


def _copy(name: str | None, dest: str | None, listing: bool) -> int:
    """Copy a stage's recipe script (``ppo``) or a config under ``recipes/configs`` (``tiny/ppo.yaml``)."""
    from r1rl.run.stages import STAGES, recipes_dir

    root = recipes_dir()
    configs = sorted(str(p.relative_to(root / "configs")) for p in (root / "configs").rglob("*.yaml"))
    if listing or name is None:
        print("recipes: " + ", ".join(STAGES.names()) + "\nconfigs: " + ", ".join(configs))
        return 0
    if name in STAGES:
        source = root / f"{STAGES[name].recipe}.py"
    elif name in configs:
        source = root / "configs" / name
    else:
        from r1rl.errors import did_you_mean

        raise UserError(
            f"cp: nothing called {name!r} to copy{did_you_mean(name, [*STAGES.names(), *configs])}"
        )
    target = Path(dest) if dest else Path(source.name)
    if target.is_dir():
        target = target / source.name
    if target.exists():
        raise UserError(f"cp: {target} exists; not overwriting it")
    shutil.copyfile(source, target)
    print(f"[cp] {source.name} → {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
