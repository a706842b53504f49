"""The stage table: each stage's name, config type and recipe — for the CLI, the pipeline, the Hub card.

A stage's wiring lives in one place only, its recipe script ``recipes/<stage>.py`` (installed as
``r1rl.recipes.<stage>``): ``run(config) -> RunDir``. ``STAGES[name](cfg)`` runs that recipe
(or a copy of it, ``recipe=path/to/my_recipe.py``) and pushes ``final/`` to the Hub when the
config asks for it.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from r1rl.config import (
    DistillConfig,
    EvalConfig,
    PPOConfig,
    PretrainConfig,
    SFTConfig,
    StageBase,
)
from r1rl.errors import RewardFailedError, UserError
from r1rl.registry import Registry

if TYPE_CHECKING:  # the table itself stays light: torch loads with the recipe that runs
    from r1rl.rundir import RunDir


# a recipe: the installed one's name is the stage's; a script (``r1rl cp``) or its ``run`` function
Recipe = str | Path | Callable[[Any], "RunDir"]


@dataclass(frozen=True)
class Stage:
    name: str
    config: type[StageBase]
    recipe: str  # module under r1rl.recipes
    help: str
    trains: bool = True  # writes a final/ model (eval does not)

    def load(self, recipe: Recipe | None = None) -> Callable[[Any], RunDir]:
        """The recipe's ``run``: the installed one, the one in the file ``recipe``, or ``recipe`` itself."""
        if recipe is None:
            return importlib.import_module(f"r1rl.recipes.{self.recipe}").run
        if callable(recipe):
            return recipe
        return load_recipe_file(Path(recipe))

    def __call__(self, cfg: Any, recipe: Recipe | None = None, overwrite: bool = False) -> RunDir:
        return self.run(cfg, recipe, overwrite)[0]

    def run(
        self, cfg: Any, recipe: Recipe | None = None, overwrite: bool = False, force: bool = False
    ) -> tuple[RunDir, bool]:
        """Run the stage into ``cfg.output_dir`` — or skip, resume, extend or refuse, as
        :mod:`r1rl.run.rerun` decides against the run already there (``force``: afresh, whatever the
        config); returns the run and whether it ran. The only place a stage's run directory is
        judged: the recipe it then calls starts (or resumes) without looking again. A reward that
        stopped the run (:class:`~r1rl.errors.RewardFailedError`) leaves its traceback in the run
        directory's ``reward_errors.log``."""
        from r1rl.parallel.distributed import is_main, main_decides
        from r1rl.run import rerun
        from r1rl.rundir import RunDir

        rd = RunDir(cfg.output_dir)

        def decide() -> str:  # the main process's look at the run directory, and what it did there
            finished = rd.is_finished() if self.trains else rd.eval_results.exists()
            new = resolved_config(cfg).model_dump(mode="json")
            decision = rerun.plan(self.name, rd.path, new, finished, overwrite, force)
            rerun.act(self.name, rd.path, decision)
            return decision

        decision = main_decides(decide, cfg.device)
        if decision == "skip":  # nothing is retrained; a push asked for still happens
            return (push_if_asked(cfg, rd) if self.trains else rd), False
        if is_main():  # what a run stopped by a broken reward left is about that run, not this one
            (rd.path / RewardFailedError.LOG).unlink(missing_ok=True)
        try:
            rd = self.load(recipe)(cfg)
        except RewardFailedError as e:
            raise (e.written_to(rd.path) if is_main() else e) from None
        return (push_if_asked(cfg, rd) if self.trains else rd), True


STAGES: Registry[Stage] = Registry("stage")
STAGES.add("pretrain", Stage("pretrain", PretrainConfig, "pretrain", "pretrain a MoE from scratch"))
STAGES.add("sft", Stage("sft", SFTConfig, "sft", "LoRA supervised fine-tuning"))
STAGES.add("ppo", Stage("ppo", PPOConfig, "ppo", "PPO with a learned critic over the reward hierarchy"))
STAGES.add(
    "distill",
    Stage("distill", DistillConfig, "distill", "a student trained on the teacher's accepted samples"),
)
STAGES.add("eval", Stage("eval", EvalConfig, "eval", "held-out accuracy and benchmarks", trains=False))


def stage_of(config_type: type) -> Stage:
    """The stage whose config type is ``config_type`` (what a recipe script's ``recipe_main`` runs)."""
    for _, stage in STAGES.items():
        if stage.config is config_type:
            return stage
    raise UserError(f"no stage takes a {config_type.__name__}; stages take {', '.join(STAGES.names())}")


def load_recipe_file(path: Path) -> Callable[[Any], RunDir]:
    """``run`` from a recipe script (a copy made with ``r1rl cp``); a file without one is a UserError."""
    if not path.is_file():
        raise UserError(f"--recipe: file not found: {path}")
    spec = importlib.util.spec_from_file_location(f"r1rl_user_recipe_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    try:
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    except Exception as e:  # a broken copy is bad input: say which file and why
        raise UserError(f"--recipe: {path} failed to load ({type(e).__name__}: {e})") from None
    if not callable(getattr(module, "run", None)):
        raise UserError(f"--recipe: {path} defines no run(config) function")
    return module.run


def resolved_config(cfg: Any) -> Any:
    """The config as its stage writes it to ``config.yaml`` (:func:`r1rl.train.prepare.resolved_config`)."""
    if not hasattr(cfg, "rewards") and getattr(getattr(cfg, "data", None), "path", None) is None:
        return cfg  # nothing to fill in: the task is not even built
    from r1rl.train import prepare

    return prepare.resolved_config(cfg, prepare.task_of(cfg))


def push_if_asked(cfg: Any, rd: RunDir) -> RunDir:
    """``push_to_hub: true``: upload ``final/``, the tokenizer and a model card when the stage ends
    (from the main process only, under a multi-process launcher)."""
    from r1rl.parallel.distributed import is_main

    if getattr(cfg, "push_to_hub", False) and is_main():
        from r1rl.report.hub import push_run

        print(f"[hub] {rd.path} → {push_run(rd.path, cfg.hub_repo_id, private=cfg.hub_private)}")
    return rd


def recipes_dir() -> Path:
    """Where the recipe scripts and their YAML configs are (the installed ``r1rl.recipes`` package)."""
    return Path(importlib.import_module("r1rl.recipes").__file__).parent  # type: ignore[arg-type]
