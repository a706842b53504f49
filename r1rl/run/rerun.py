"""Running a stage into a run directory that already holds a run: resume, skip, extend or refuse.

Nothing happens in silence. The resolved config is compared with the ``config.yaml`` in the run
directory, leaving out what cannot change the result (:data:`IGNORED`: CPU threads, trackers,
Hub pushes) and comparing paths by what they point to (``runs/x`` and ``/abs/runs/x`` are the
same, :data:`PATH_KEYS`):

- **the same config**: a finished run is skipped, an unfinished one resumes from its newest
  checkpoint — and a line says which;
- **a longer PPO run** (only ``steps`` larger): continued from the finished run's final
  checkpoint, which is exact because PPO's learning rate is constant after warm-up (its old
  ``final/`` is kept as ``final.step-<N>/``); pretraining and SFT refuse, since their cosine
  schedule depends on the total number of steps;
- **any other change**: refused in one line naming the changed keys (old → new), unless
  ``--overwrite``: the old run is moved aside (``<dir>.prev-<N>``), never deleted, and the stage
  starts afresh.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from r1rl.errors import UserError

IGNORED = ("threads", "report_to", "push_to_hub", "hub_repo_id", "hub_private")
PATH_KEYS = (
    "output_dir",
    "model_path",
    "teacher_path",
    "critic_model_path",
    "data.path",
    "data_dir",
    "task.data_dir",
)
EXTENDABLE = ("ppo",)  # constant learning rate after warm-up: a longer run continues exactly


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists are values)."""
    if not isinstance(tree, dict):
        return {prefix.rstrip("."): tree}
    out: dict[str, Any] = {}
    for k, v in tree.items():
        out.update(flatten(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {f"{prefix}{k}": v})
    return out


def _normal(key: str, value: Any) -> Any:
    if key in PATH_KEYS and isinstance(value, str):
        p = Path(value).expanduser()
        return str(p.resolve()) if p.exists() or value.startswith((".", "/", "~")) else value
    return value


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(key, old, new)`` for every option that differs, the ignored ones left out."""
    a, b = flatten(old), flatten(new)
    keys = sorted(set(a) | set(b))
    changes = []
    for k in keys:
        if k.split(".")[0] in IGNORED:
            continue
        if _normal(k, a.get(k)) != _normal(k, b.get(k)):
            changes.append((k, a.get(k), b.get(k)))
    return changes


def describe(changes: list[tuple[str, Any, Any]], most: int = 4) -> str:
    shown = ", ".join(f"{k}: {o!r} → {n!r}" for k, o, n in changes[:most])
    return shown + (f" (and {len(changes) - most} more)" if len(changes) > most else "")


def check_writable(run_dir: Path) -> None:
    """``output_dir`` is a directory, or can be made one, that this process may write (one line if not)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"output_dir {run_dir} is a file, not a directory")
    existing = run_dir
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"output_dir {run_dir}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"output_dir {run_dir}: {existing} is not writable")


def old_value(config: Path, key: str) -> Any:
    """A key of a run directory's ``config.yaml`` (``None`` when absent)."""
    return flatten(yaml.safe_load(config.read_text()) or {}).get(key)


def move_aside(path: Path) -> Path:
    """Rename ``path`` to the first free ``<path>.prev-<N>``; nothing is deleted."""
    n = 1
    while (target := path.with_name(f"{path.name}.prev-{n}")).exists():
        n += 1
    os.replace(path, target)
    return target


def plan(
    stage: str, run_dir: Path, new: dict[str, Any], finished: bool, overwrite: bool, force: bool = False
) -> str:
    """What to do with ``run_dir``: ``"fresh"``, ``"resume"``, ``"skip"``, ``"extend"`` or ``"overwrite"``
    (move the old run aside, then fresh); a refused re-run is a one-line :class:`UserError`.

    ``force``: start afresh whatever the config (a pipeline re-ran an earlier stage, so this one was
    trained on a result that is gone). Pure: it reads the run directory and changes nothing
    (:func:`act` then does).
    """
    check_writable(run_dir)
    config = run_dir / "config.yaml"
    if not config.is_file():
        return "fresh"
    try:
        old = yaml.safe_load(config.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError):
        old = {"unreadable config.yaml": True}
    changes = config_changes(old, new)
    if force:
        return "overwrite"
    if not changes:
        return "skip" if finished else "resume"
    if overwrite:
        return "overwrite"
    if [k for k, _, _ in changes] == ["steps"] and finished and changes[0][2] > changes[0][1]:
        if stage in EXTENDABLE:
            return "extend"
        raise UserError(
            f"{run_dir}: steps {changes[0][1]} → {changes[0][2]}: the {stage} learning rate follows a cosine "
            "decay over the total steps, so a longer run is not this one continued; "
            "use --overwrite to start afresh (the old run is moved aside) or another output_dir"
        )
    raise UserError(
        f"{run_dir} holds a run with another config ({describe(changes)}); "
        "use --overwrite to start afresh (the old run is moved aside) or another output_dir"
    )


def act(stage: str, run_dir: Path, decision: str) -> None:
    """Carry out ``decision`` and say so in one line (on the main process, before the others hear of
    it: :func:`r1rl.parallel.distributed.main_decides`)."""
    if decision == "overwrite":
        print(f"[{stage}] moved the run in {run_dir} to {move_aside(run_dir)}; starting afresh")
    elif decision == "extend":
        kept = keep_final(run_dir, old_value(run_dir / "config.yaml", "steps") or 0)
        print(
            f"[{stage}] {run_dir} is finished; continuing it to the new steps (its final/ is kept as {kept})"
        )
    elif decision == "skip":
        print(f"[{stage}] {run_dir} is finished; skipping")
    elif decision == "resume":
        print(f"[{stage}] {run_dir} has the same config; resuming it")


def keep_final(run_dir: Path, steps: int) -> Path | None:
    """Before extending a finished run: its ``final/`` becomes ``final.step-<steps>/``."""
    final = run_dir / "final"
    if not final.is_dir():
        return None
    target = run_dir / f"final.step-{steps:08d}"
    if target.exists():
        shutil.rmtree(target)
    os.replace(final, target)
    return target
