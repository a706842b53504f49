"""What a run directory holds: the stage to push, its lineage, eval results, summary and task.

``RUN_DIR`` is a stage's ``output_dir``; a pipeline's ``output_dir`` (its last finished stage is
pushed, with ``summary.json`` and ``eval/<stage>/eval_results.json``); or an eval run (the model
it scored is pushed, with its results). The lineage follows each stage's ``model_path`` back to
the run that wrote it, so stages run one by one are described as fully as a pipeline. Nothing
here writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from r1rl.config import STAGE_CONFIGS, TRAIN_STAGES, PipelineConfig
from r1rl.errors import UserError

# which config type wrote a run directory's config.yaml: the pipeline's, or a stage's
CONFIG_KINDS: dict[str, type[BaseModel]] = {
    "pipeline": PipelineConfig,
    **STAGE_CONFIGS,
}


@dataclass(frozen=True)
class LineageStage:
    stage: str  # pretrain | sft | ppo | distill
    path: Path  # the stage's output_dir
    config: dict[str, Any]  # its resolved config.yaml


@dataclass(frozen=True)
class RunInfo:
    lineage: list[LineageStage]  # oldest first; the last one is pushed
    origin: str | None  # the Hub model the first stage started from; None = from scratch or a local model
    eval_results: dict[str, Any] | None  # eval_results.json of the pushed model
    summary: dict[str, Any] | None  # a pipeline's summary.json

    @property
    def pushed(self) -> LineageStage:
        return self.lineage[-1]


def describe_run(run_dir: str | Path, eval_results: str | Path | None = None) -> RunInfo:
    """What ``run_dir`` holds: the stage to push, its lineage, eval results and pipeline summary.

    ``eval_results`` (an eval run directory or its ``eval_results.json``) overrides the results
    found next to the run.
    """
    path = Path(run_dir).expanduser().resolve()
    if not path.is_dir():
        raise UserError(f"no such run directory: {run_dir}")
    kind, config = _read_config(path)
    summary, results = None, None
    if kind == "pipeline":
        finished = [s for s in TRAIN_STAGES if (path / s / "final").is_dir()]
        if not finished:
            raise UserError(f"{path}: no stage of this pipeline has finished (no <stage>/final/ yet)")
        stage_dir = path / finished[-1]
        summary = _read_json(path / "summary.json")
        results = path / "eval" / finished[-1] / "eval_results.json"
    elif kind == "eval":
        model = Path(config.get("model_path", "")).expanduser()
        if model.name != "final" or not (model.parent / "config.yaml").is_file():
            raise UserError(
                f"{path} evaluated {config.get('model_path')}, which is not an r1rl run's final/; "
                "push that model's own run directory"
            )
        stage_dir, results = model.parent.resolve(), path / "eval_results.json"
    else:
        stage_dir = path
        parent = path.parent
        if _is_pipeline(parent):
            summary = _read_json(parent / "summary.json")
            results = parent / "eval" / path.name / "eval_results.json"
    if eval_results is not None:
        results = Path(eval_results).expanduser()
        results = results / "eval_results.json" if results.is_dir() else results
        if not results.is_file():
            raise UserError(f"eval results: no such file: {results}")
    lineage, origin = _lineage(stage_dir)
    if not (stage_dir / "final").is_dir():
        raise UserError(f"{stage_dir}: the {lineage[-1].stage} stage has not finished (no final/ yet)")
    return RunInfo(lineage, origin, _read_eval_results(results), summary)


def _is_pipeline(path: Path) -> bool:
    try:
        return _read_config(path)[0] == "pipeline"
    except UserError:  # no config.yaml, or not one r1rl wrote
        return False


def _lineage(stage_dir: Path) -> tuple[list[LineageStage], str | None]:
    """Follow ``model_path`` from ``stage_dir`` back to the first stage; also the Hub id it started from."""
    runs: list[LineageStage] = []
    d: Path | None = stage_dir
    while d is not None:
        kind, config = _read_config(d)
        if kind not in TRAIN_STAGES:
            raise UserError(f"{d}: a {kind} run has no model of its own to push")
        runs.append(LineageStage(kind, d, config))
        model_path = config.get("model_path")
        if model_path is None:  # pretrained from scratch
            return runs[::-1], None
        d = _previous_run(d, model_path)
        if d is not None and any(r.path == d for r in runs):
            raise UserError(f"{d}: its model_path chain loops back on itself")
        if d is None:
            return runs[::-1], model_path if is_hub_id(model_path) else None
    raise AssertionError("unreachable")


def _previous_run(run: Path, model_path: str) -> Path | None:
    """The run directory whose ``final/`` is ``model_path``, if r1rl wrote it.

    A pipeline run with a relative ``output_dir`` records relative model paths; they resolve from
    the directory training started in, else as a sibling of ``run`` inside the pipeline's folder.
    """
    p = Path(model_path).expanduser()
    for candidate in [p] if p.is_absolute() else [p, run.parent / p.parent.name / p.name]:
        if candidate.name == "final" and candidate.is_dir() and (candidate.parent / "config.yaml").is_file():
            return candidate.parent.resolve()
    return None


def is_hub_id(name: str) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if Path(name).expanduser().exists() or name.startswith((".", "/", "~")):
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _read_config(run: Path) -> tuple[str, dict[str, Any]]:
    path = run / "config.yaml"
    if not path.is_file():
        raise UserError(f"{run} is not an r1rl run directory (no config.yaml)")
    config = _load_yaml(path)
    return _kind(run, config), config


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of config keys")
    return data


def _kind(run: Path, config: dict[str, Any]) -> str:
    """Which stage (or ``pipeline``) wrote ``config``: the one (strict) config type that accepts it."""
    for kind, cls in CONFIG_KINDS.items():
        try:
            cls.model_validate(config)
            return kind
        except ValidationError:
            continue
    # a config written by another r1rl version: trust the stage named in its metrics
    metrics = run / "metrics.jsonl"
    if metrics.is_file():
        first = next((line for line in metrics.read_text().splitlines() if line.strip()), "{}")
        try:
            stage = json.loads(first).get("stage")
        except (json.JSONDecodeError, AttributeError):
            stage = None
        if stage in CONFIG_KINDS:
            return stage
    raise UserError(f"{run / 'config.yaml'}: not a config written by an r1rl stage or pipeline")


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None


def _read_eval_results(path: Path | None) -> dict[str, Any] | None:
    results = _read_json(path) if path is not None else None
    if results is None:
        return None
    tasks = results.get("tasks")
    if not isinstance(tasks, dict) or not all(isinstance(m, dict) for m in tasks.values()):
        raise UserError(f"{path}: expected {{'tasks': {{task: {{metric: value, 'n': int}}}}}}")
    return results


def read_task(info: RunInfo) -> dict[str, Any] | None:
    """The last trained stage's ``task.json`` (its name, and its data file's for a ``data:`` section),
    with the notes of every stage of the lineage."""
    found = [_task_json(s) for s in info.lineage if (s.path / "task.json").is_file()]
    if not found:
        return None
    notes = list(dict.fromkeys(n for t in found for n in t.get("notes", [])))
    return {"name": found[-1].get("name"), "data": found[-1].get("data"), "notes": notes}


def reward_code(info: RunInfo) -> tuple[dict[str, Path], dict[Path, dict[str, str]]]:
    """The reward files the lineage's stages trained with (the copies in their ``rewards/``), named for
    the repository — ``rewards/<file>.py``, ``rewards/<stem>_2.py`` for another file of the same name —
    and, per stage, ``{file as its config names it: its name in the repository}``."""
    files: dict[str, Path] = {}
    names: dict[Path, dict[str, str]] = {}
    for stage in info.lineage:
        names[stage.path] = {}
        for written, copy in _task_json(stage).get("reward_code", {}).items():
            local = stage.path / copy
            if not local.is_file():
                continue
            name, n = copy, 1
            while name in files and files[name].read_bytes() != local.read_bytes():
                n += 1
                name = f"rewards/{Path(copy).stem}_{n}.py"
            files[name] = local
            names[stage.path][written] = name
    return files, names


def _task_json(stage: LineageStage) -> dict[str, Any]:
    try:
        data = json.loads((stage.path / "task.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}
