"""Push a run to the Hugging Face Hub: ``r1rl push RUN_DIR --repo-id ID``.

One commit carries:

- ``final/`` as it is — a full transformers model or a PEFT adapter — or, with ``what="merged"``,
  an adapter merged into its base (``r1rl.model.load_merged``);
- the tokenizer, which every stage saves beside the weights in ``final/``;
- ``README.md``, a model card built with ``huggingface_hub.ModelCard``: its metadata holds the base
  model, licence, tags and the eval results as ``model-index``; its body the lineage (each stage
  with its resolved config), the PPO stage's reward hierarchy and the eval table.

``RUN_DIR`` is a stage's ``output_dir``; a pipeline's ``output_dir`` (its last finished stage is
pushed, with ``summary.json`` and ``eval/<stage>/eval_results.json``); or an eval run (the model
it scored is pushed, with its results). The lineage follows each stage's ``model_path`` back to
the run that wrote it, so stages run one by one are described as fully as a pipeline.

Details that matter:

- Nothing is written into the run directory. The upload is a map from path-in-repo to local
  file; what push generates (the card, merged weights, a re-pointed adapter config) goes to a
  temporary folder. ``dry_run=DIR`` writes exactly those files to ``DIR`` and uploads nothing.
- The token comes from ``HF_TOKEN`` or the login cache (``huggingface_hub.get_token``). There is
  no ``--token`` flag, so it never lands in shell history; it is handed to ``HfApi`` only, and
  every error message is scrubbed of it before anyone sees it.
- The repo id (huggingface_hub's own validator) and the token's presence are checked before any
  network call. 401, 403 and 404 become one-line :class:`~r1rl.errors.UserError` s, not retried.
- Connection failures and 408/429/5xx retry the whole push (create repo → branch → commit) with
  exponential backoff, a bounded number of times. A Hub commit is atomic, so a failed attempt
  leaves nothing half-pushed; if a commit landed but its reply was lost, the retry's pre-upload
  finds every file unchanged and ``create_commit`` makes no second commit.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from r1rl.config import EvalConfig, PipelineConfig, PPOConfig, PretrainConfig, SFTConfig
from r1rl.errors import UserError

if TYPE_CHECKING:
    from huggingface_hub import ModelCard

WHATS = ("full", "adapter", "merged")
TRAIN_STAGES = ("pretrain", "sft", "ppo")  # r1rl.pipeline's order; not imported to keep this module light
CONFIG_KINDS: dict[str, type[BaseModel]] = {
    "pipeline": PipelineConfig,
    "pretrain": PretrainConfig,
    "sft": SFTConfig,
    "ppo": PPOConfig,
    "eval": EvalConfig,
}
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")
DATASET_KEYS = ("dataset", "datasets", "dataset_name", "dataset_id")  # config keys naming Hub datasets
TRANSIENT_STATUS = (408, 429, 500, 502, 503, 504)

T = TypeVar("T")


# --------------------------------------------------------------------------- reading a run


@dataclass(frozen=True)
class StageRun:
    stage: str  # pretrain | sft | ppo
    path: Path  # the stage's output_dir
    config: dict[str, Any]  # its resolved config.yaml


@dataclass(frozen=True)
class RunInfo:
    lineage: list[StageRun]  # oldest first; the last one is pushed
    origin: str | None  # the Hub model the first stage started from; None = from scratch or a local model
    eval_results: dict[str, Any] | None  # eval_results.json of the pushed model
    summary: dict[str, Any] | None  # a pipeline's summary.json

    @property
    def pushed(self) -> StageRun:
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


def _lineage(stage_dir: Path) -> tuple[list[StageRun], str | None]:
    """Follow ``model_path`` from ``stage_dir`` back to the first stage; also the Hub id it started from."""
    runs: list[StageRun] = []
    d: Path | None = stage_dir
    while d is not None:
        kind, config = _read_config(d)
        if kind not in TRAIN_STAGES:
            raise UserError(f"{d}: a {kind} run has no model of its own to push")
        runs.append(StageRun(kind, d, config))
        model_path = config.get("model_path")
        if model_path is None:  # pretrained from scratch
            return runs[::-1], None
        d = _previous_run(d, model_path)
        if d is not None and any(r.path == d for r in runs):
            raise UserError(f"{d}: its model_path chain loops back on itself")
        if d is None:
            return runs[::-1], model_path if _is_hub_id(model_path) else None
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


def _is_hub_id(name: str) -> bool:
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


# --------------------------------------------------------------------------- what goes up


@dataclass(frozen=True)
class Upload:
    files: dict[str, Path]  # path in the repo -> local file
    kind: str  # adapter | full | merged
    card: ModelCard


def prepare_upload(
    info: RunInfo,
    repo_id: str,
    work: Path,
    *,
    what: str | None = None,
    license: str = "apache-2.0",
    base_model: str | None = None,
) -> Upload:
    """The files to upload for ``info``; generated ones (card, merged model) are written under ``work``."""
    final = info.pushed.path / "final"
    files, kind = _model_files(final, what, work, base_model)
    card = build_card(info, files, kind, repo_id, license=license, base_model=base_model)
    card.save(work / "README.md")
    files["README.md"] = work / "README.md"
    return Upload(dict(sorted(files.items())), kind, card)


def _model_files(
    final: Path, what: str | None, work: Path, base_model: str | None
) -> tuple[dict[str, Path], str]:
    is_adapter = (final / "adapter_config.json").is_file()
    if what == "adapter" and not is_adapter:
        raise UserError(f"{final} is a full model, not a PEFT adapter; push it with --what full")
    if what == "full" and is_adapter:
        raise UserError(
            f"{final} is a PEFT adapter; push it as it is with --what adapter, "
            "or merged into its base with --what merged"
        )
    # PEFT writes its own placeholder README.md into an adapter folder; the card replaces it
    files = {
        p.relative_to(final).as_posix(): p
        for p in sorted(final.rglob("*"))
        if p.is_file() and p.relative_to(final).as_posix() != "README.md" and not p.name.startswith(".")
    }
    if "tokenizer_config.json" not in files:
        raise UserError(
            f"{final} holds no tokenizer (tokenizer_config.json); r1rl stages save it beside the model"
        )
    kind = "adapter" if is_adapter else "full"
    if is_adapter and what == "merged":
        merged = work / "merged"
        _merge(final, merged)
        files = {k: v for k, v in files.items() if k not in ADAPTER_FILES}
        files.update({p.relative_to(merged).as_posix(): p for p in sorted(merged.rglob("*")) if p.is_file()})
        kind = "merged"
    elif is_adapter and base_model is not None:
        # the adapter records the absolute local path of its base; point it at the Hub copy instead
        config = json.loads(files["adapter_config.json"].read_text())
        config["base_model_name_or_path"] = base_model
        (work / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        files["adapter_config.json"] = work / "adapter_config.json"
    return files, kind


def _merge(adapter: Path, out: Path) -> None:
    from r1rl.model import load_merged  # torch and transformers load only when merging

    try:
        model = load_merged(str(adapter))
    except (OSError, ValueError) as e:
        base = json.loads((adapter / "adapter_config.json").read_text()).get("base_model_name_or_path")
        raise UserError(
            f"cannot merge {adapter}: its base model {base!r} did not load ({_first_line(e)})"
        ) from None
    model.save_pretrained(out)


# --------------------------------------------------------------------------- the model card

CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ model_name }}

{{ headline }}

## Use it

```python
{{ usage }}
```

## Model

| | |
|---|---|
{% for key, value in facts -%}
| {{ key }} | {{ value }} |
{% endfor %}
## Lineage

{{ chain }}

| # | stage | run directory | started from |
|---|---|---|---|
{% for row in lineage -%}
| {{ loop.index }} | {{ row.stage }} | `{{ row.path }}` | {{ row.start }} |
{% endfor %}
{%- if task %}
## Task

Trained on `{{ task.name }}`.
{%- for note in task.notes %} **Note: {{ note }}.**{% endfor %}
{% endif %}
{%- if rewards %}
## Reward hierarchy

The PPO stage optimised these tiers, lowest first, combined in `{{ rewards.mode }}` mode
{%- if rewards.mode == "gated" %} (a tier counts only once every tier below it passes)
{%- elif rewards.mode == "scheduled" %} (weights move from `weight` to `weight_end` between steps \
{{ rewards.schedule_start }} and {{ rewards.schedule_end }}){% endif %}.

| tier | reward | threshold | weight |
|---|---|---|---|
{% for t in rewards.tiers -%}
| {{ t.name }} | `{{ t.reward }}` | {{ t.threshold }} | {{ t.weight }}
{%- if t.get("weight_end") is not none %} → {{ t.weight_end }}{% endif %} |
{% endfor %}
{%- endif %}
{%- if eval_rows %}
## Evaluation

Held-out split, from `{{ eval_model }}`:

| task | metric | value | n |
|---|---|---|---|
{% for r in eval_rows -%}
| {{ r.task }} | {{ r.metric }} | {{ r.value }} | {{ r.n }} |
{% endfor %}
{%- endif %}
{%- if summary_table %}
## Every stage of the pipeline

{{ summary_table }}
{% endif %}
## Training configs
{% for row in lineage %}
<details><summary>{{ row.stage }}: <code>config.yaml</code></summary>

```yaml
{{ row.yaml }}```

</details>
{% endfor %}
Pushed with `r1rl push`.
"""


def build_card(
    info: RunInfo,
    files: dict[str, Path],
    kind: str,
    repo_id: str,
    *,
    license: str = "apache-2.0",
    base_model: str | None = None,
) -> ModelCard:
    """A ``huggingface_hub.ModelCard`` for the files about to be pushed."""
    from huggingface_hub import ModelCard, ModelCardData

    base = base_model or info.origin or _adapter_base_on_hub(files)
    model_config = _model_config(files, kind)
    model_type = model_config.get("model_type")
    stages = [s.stage for s in info.lineage]
    tags = ["r1rl", "moe", *([model_type] if model_type else []), *(s for s in stages if s != "pretrain")]
    if any("lora" in s.config and not s.config.get("full_finetune") for s in info.lineage):
        tags.append("lora")
    if kind == "adapter":
        tags.append("peft")
    name = repo_id.split("/")[-1]
    evals = _eval_results(info.eval_results)
    data = ModelCardData(
        base_model=base,
        datasets=_datasets(info) or None,
        eval_results=evals or None,
        library_name="peft" if kind == "adapter" else "transformers",
        license=license,
        model_name=name if evals else None,
        pipeline_tag="text-generation",
        tags=tags,
    )
    if base is not None:
        data.base_model_relation = "adapter" if kind == "adapter" else "finetune"
    ppo = next((s for s in reversed(info.lineage) if s.stage == "ppo"), None)
    return ModelCard.from_template(
        data,
        template_str=CARD_TEMPLATE,
        model_name=name,
        headline=_headline(kind, model_config, files, stages, base),
        usage=_usage(kind, repo_id),
        facts=_facts(kind, model_config, files),
        chain=" → ".join([base or info.lineage[0].config.get("model_path") or "from scratch", *stages]),
        lineage=[
            {
                "stage": s.stage,
                "path": s.path,
                "start": s.config.get("model_path") or "from scratch",
                "yaml": yaml.safe_dump(s.config, sort_keys=False),
            }
            for s in info.lineage
        ],
        rewards=ppo.config.get("rewards") if ppo else None,
        task=_task(info),
        eval_rows=_eval_rows(info.eval_results),
        eval_model=(info.eval_results or {}).get("model"),
        summary_table=_summary_table(info.summary),
    )


def _task(info: RunInfo) -> dict[str, Any] | None:
    """The last trained stage's ``task.json``, with the notes of every stage of the lineage."""
    found = [
        json.loads((s.path / "task.json").read_text())
        for s in info.lineage
        if (s.path / "task.json").is_file()
    ]
    if not found:
        return None
    notes = list(dict.fromkeys(n for t in found for n in t.get("notes", [])))
    return {"name": found[-1].get("name"), "notes": notes}


def _adapter_base_on_hub(files: dict[str, Path]) -> str | None:
    if "adapter_config.json" not in files:
        return None
    base = json.loads(files["adapter_config.json"].read_text()).get("base_model_name_or_path")
    return base if base and _is_hub_id(base) else None


def _model_config(files: dict[str, Path], kind: str) -> dict[str, Any]:
    """``config.json`` of the model, or of an adapter's base when that is on disk."""
    if "config.json" in files:
        return json.loads(files["config.json"].read_text())
    if kind == "adapter":
        base = json.loads(files["adapter_config.json"].read_text()).get("base_model_name_or_path", "")
        path = Path(base) / "config.json"
        if base and path.is_file():
            return json.loads(path.read_text())
    return {}


def _parameters(files: dict[str, Path]) -> int:
    """Tensor elements in the pushed ``*.safetensors`` files, read from their headers alone."""
    total = 0
    for name, path in files.items():
        if not name.endswith(".safetensors"):
            continue
        with path.open("rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))  # safetensors: u64 header length, then JSON
            header = json.loads(f.read(size))
        total += sum(math.prod(t["shape"]) for k, t in header.items() if k != "__metadata__")
    return total


def _human(n: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def _headline(
    kind: str, config: dict[str, Any], files: dict[str, Path], stages: list[str], base: str | None
) -> str:
    moe = ""
    if _experts(config):
        moe = f" ({_experts(config)} experts, top-{config.get('num_experts_per_tok', '?')} routing)"
    arch = f"`{config.get('model_type', 'transformers')}` Mixture-of-Experts model{moe}"
    trained = f"trained with r1rl ({' → '.join(stages)})"
    if kind == "adapter":
        on = f"`{base}`" if base else "a local base model (see the lineage)"
        return f"A LoRA adapter for a {arch} on {on}, {trained}. The repository holds the PEFT adapter."
    merged = (
        " The LoRA adapter is merged into its base: a plain transformers model." if kind == "merged" else ""
    )
    return f"A {_human(_parameters(files))}-parameter {arch}, {trained}.{merged}"


def _experts(config: dict[str, Any]) -> int | None:
    """Routed experts per layer, under the name each MoE architecture gives them."""
    return next(
        (config[k] for k in ("num_experts", "num_local_experts", "n_routed_experts") if k in config), None
    )


def _usage(kind: str, repo_id: str) -> str:
    if kind == "adapter":
        return (
            "from peft import AutoPeftModelForCausalLM\nfrom transformers import AutoTokenizer\n\n"
            f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")\n'
            f'model = AutoPeftModelForCausalLM.from_pretrained("{repo_id}")  # base from adapter_config.json'
        )
    return (
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
        f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")\n'
        f'model = AutoModelForCausalLM.from_pretrained("{repo_id}")'
    )


def _facts(kind: str, config: dict[str, Any], files: dict[str, Path]) -> list[tuple[str, Any]]:
    facts: list[tuple[str, Any]] = [
        ("weights", {"adapter": "PEFT LoRA adapter", "merged": "merged LoRA"}.get(kind, "full"))
    ]
    facts.append(("parameters" if kind != "adapter" else "adapter parameters", _human(_parameters(files))))
    facts += [(k, config[k]) for k in ("model_type", "num_hidden_layers", "hidden_size") if k in config]
    if _experts(config):
        facts.append(("experts per layer", _experts(config)))
    facts += [(k, config[k]) for k in ("num_experts_per_tok", "vocab_size") if k in config]
    if kind == "adapter":
        adapter = json.loads(files["adapter_config.json"].read_text())
        facts += [
            (f"lora {k}", adapter[k])
            for k in ("r", "lora_alpha", "target_modules", "target_parameters")
            if adapter.get(k)
        ]
    return facts


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _eval_results(results: dict[str, Any] | None) -> list[Any]:
    """One ``EvalResult`` per (task, metric) of ``eval_results.json``; ``n`` goes into the dataset name."""
    from huggingface_hub import EvalResult

    out = []
    for task, metrics in (results or {}).get("tasks", {}).items():
        n = metrics.get("n")
        for metric, value in metrics.items():
            if metric == "n" or metric.endswith("_stderr") or not _numeric(value):
                continue
            out.append(
                EvalResult(
                    task_type="text-generation",
                    dataset_type=task,
                    dataset_name=f"{task} (held-out, n={n})" if n is not None else task,
                    dataset_split="test",
                    metric_type=metric,
                    metric_name=metric,
                    metric_value=value,
                )
            )
    return out


def _eval_rows(results: dict[str, Any] | None) -> list[dict[str, Any]]:
    rows = []
    for task, metrics in (results or {}).get("tasks", {}).items():
        for metric, value in metrics.items():
            if metric == "n" or metric.endswith("_stderr") or not _numeric(value):
                continue
            stderr = metrics.get(f"{metric}_stderr")
            shown = f"{value:.4g}" + (f" ± {stderr:.2g}" if _numeric(stderr) else "")
            rows.append({"task": task, "metric": metric, "value": shown, "n": metrics.get("n", "")})
    return rows


def _summary_table(summary: dict[str, Any] | None) -> str | None:
    stages = (summary or {}).get("stages") or {}
    if not stages:
        return None
    keys = [k for k in next(iter(stages.values())).get("eval", {}) if k != "n" and not k.endswith("_stderr")]
    lines = ["| stage | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for stage, entry in stages.items():
        values = [entry.get("eval", {}).get(k) for k in keys]
        lines.append(f"| {stage} | " + " | ".join(f"{v:.3f}" if _numeric(v) else "" for v in values) + " |")
    return "\n".join(lines)


def _datasets(info: RunInfo) -> list[str]:
    """Hub dataset ids named anywhere in the lineage's configs (the embedded task is generated, not one)."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in DATASET_KEYS:
                    for v in value if isinstance(value, list) else [value]:
                        if isinstance(v, str) and _is_hub_id(v) and v not in found:
                            found.append(v)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for stage in info.lineage:
        walk(stage.config)
    return found


# --------------------------------------------------------------------------- pushing


def push_run(
    run_dir: str | Path,
    repo_id: str,
    *,
    what: str | None = None,
    private: bool = False,
    revision: str | None = None,
    dry_run: str | Path | None = None,
    license: str = "apache-2.0",
    base_model: str | None = None,
    eval_results: str | Path | None = None,
    commit_message: str | None = None,
    endpoint: str | None = None,
    attempts: int = 5,
    retry_delay: float = 1.0,
    max_retry_delay: float = 30.0,
) -> str:
    """Push ``run_dir``'s model to ``repo_id``; returns the commit URL (for a dry run, the folder written).

    ``what``: ``None`` pushes ``final/`` as it is; ``"full"``/``"adapter"`` also check that it is
    one; ``"merged"`` merges an adapter into its base first (a full model goes up as it is).
    ``base_model`` names the Hub copy of a locally trained base (written into the card and into
    a pushed adapter's config). ``endpoint`` defaults to ``HF_ENDPOINT``, else huggingface_hub's.
    A push is tried ``attempts`` times on network errors, waiting ``retry_delay`` × 2^k seconds
    (at most ``max_retry_delay``) between tries.
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if what is not None and what not in WHATS:
        raise UserError(f"what: {what!r} is not one of {', '.join(WHATS)}")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise UserError(f"bad repo id {repo_id!r}: {_first_line(e)}") from None
    if base_model is not None and not _is_hub_id(base_model):
        raise UserError(f"base model {base_model!r} is not a Hub model id (namespace/name)")
    if attempts < 1:
        raise UserError(f"attempts must be at least 1, got {attempts}")
    info = describe_run(run_dir, eval_results)
    out = Path(dry_run).expanduser() if dry_run is not None else None
    if out is not None and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"dry run: {out} exists and is not an empty folder")
    token = _token() if out is None else None  # before a merge that may take minutes
    endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or _default_endpoint()).rstrip("/")
    with tempfile.TemporaryDirectory(prefix="r1rl-push-") as work:
        upload = prepare_upload(info, repo_id, Path(work), what=what, license=license, base_model=base_model)
        _warn_local_base(upload)
        if out is not None:
            for name, src in upload.files.items():
                (out / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, out / name)
            print(
                f"[push] dry run: wrote {len(upload.files)} files ({upload.kind}) to {out}; nothing uploaded"
            )
            return str(out)
        assert token is not None
        message = commit_message or f"r1rl: {info.pushed.stage} model ({upload.kind})"
        description = "Lineage: " + " → ".join(s.stage for s in info.lineage)
        try:
            url = _retrying(
                lambda: _commit(upload, repo_id, token, endpoint, private, revision, message, description),
                attempts=attempts,
                delay=retry_delay,
                max_delay=max_retry_delay,
                token=token,
            )
        except (OSError, ValueError, *_network_errors()) as e:  # HfHubHTTPError is an OSError
            raise _user_error(e, repo_id, endpoint, attempts, token) from None
    print(f"[push] {info.pushed.stage} ({upload.kind}, {len(upload.files)} files) → {url}")
    return url


def _network_errors() -> tuple[type[Exception], ...]:
    import httpx2  # huggingface_hub's HTTP client

    return (httpx2.HTTPError,)


def _default_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _token() -> str:
    """The token from ``HF_TOKEN`` or the login cache; never printed."""
    from huggingface_hub import constants, get_token

    if constants.HF_HUB_OFFLINE:
        raise UserError(
            "HF_HUB_OFFLINE is set, so the Hub cannot be reached; unset it to push (or use --dry-run)"
        )
    try:
        token = get_token()
    except Exception as e:  # an OIDC exchange that was asked for and failed
        raise UserError(f"could not obtain a Hugging Face token: {type(e).__name__}") from None
    if not token:
        raise UserError("no Hugging Face token: set HF_TOKEN to a write token or run `hf auth login`")
    return token


def _warn_local_base(upload: Upload) -> None:
    if upload.kind != "adapter":
        return
    base = json.loads(upload.files["adapter_config.json"].read_text()).get("base_model_name_or_path", "")
    if base and not _is_hub_id(base):
        print(
            f"[push] warning: the adapter's base model is the local path {base}; others cannot load it. "
            "Push the base too and pass --base-model ID, or push with --what merged",
            file=sys.stderr,
        )


def _commit(
    upload: Upload,
    repo_id: str,
    token: str,
    endpoint: str,
    private: bool,
    revision: str | None,
    message: str,
    description: str,
) -> str:
    """One push attempt: create the repo (and branch) if needed, then one atomic commit of every file."""
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(endpoint=endpoint, token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    if revision is not None and revision != "main":
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    # operations are mutated by create_commit, so every attempt builds fresh ones
    operations = [
        CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(src)) for name, src in upload.files.items()
    ]
    info = api.create_commit(
        repo_id, operations, commit_message=message, commit_description=description, revision=revision
    )
    return info.commit_url


def _retrying(
    fn: Callable[[], T],
    *,
    attempts: int,
    delay: float,
    max_delay: float,
    token: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``fn()``, retried on transient network errors with exponential backoff (``delay`` × 2^k)."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as e:
            if attempt == attempts or not _is_transient(e):
                raise
            wait = min(max_delay, delay * 2 ** (attempt - 1))
            reason = _scrub(_describe(e), token)
            print(
                f"[push] attempt {attempt}/{attempts} failed ({reason}); retrying in {wait:.2g}s",
                file=sys.stderr,
            )
            sleep(wait)
    raise AssertionError("unreachable")


def _status(e: BaseException) -> int | None:
    response = getattr(e, "response", None)
    return getattr(response, "status_code", None)


def _is_transient(e: BaseException) -> bool:
    import httpx2  # huggingface_hub's HTTP client
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(e, OfflineModeIsEnabled):
        return False
    if isinstance(e, HfHubHTTPError):
        return _status(e) in TRANSIENT_STATUS
    return isinstance(e, (httpx2.TransportError, ConnectionError, TimeoutError))


def _describe(e: BaseException) -> str:
    status = _status(e)
    return f"HTTP {status}" if status is not None else f"{type(e).__name__}: {_first_line(e)}"


def _user_error(e: Exception, repo_id: str, endpoint: str, attempts: int, token: str) -> UserError:
    """One line for a failed push, naming the repo and what to do; never the token."""
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    status = _status(e)
    server = _first_line(getattr(e, "server_message", None) or "") if isinstance(e, HfHubHTTPError) else ""
    detail = f": {server}" if server else ""
    if isinstance(e, UserError):
        msg = str(e)
    elif status == 401:
        msg = (
            f"the Hub rejected the token (401 Unauthorized) pushing to {repo_id}; "
            "set HF_TOKEN to a valid token or run `hf auth login`"
        )
    elif status == 403:
        msg = f"the token may not write to {repo_id} (403 Forbidden){detail}; use a token with write access"
    elif isinstance(e, RevisionNotFoundError):
        msg = f"revision not found in {repo_id}{detail}"
    elif isinstance(e, RepositoryNotFoundError) or status == 404:
        msg = f"repository {repo_id} not found, or not visible to this token (404){detail}"
    elif _is_transient(e):
        msg = f"could not push to {repo_id} at {endpoint} after {attempts} attempts ({_describe(e)})"
    elif status is not None:
        msg = f"the Hub refused the push to {repo_id} (HTTP {status}){detail}"
    else:
        msg = f"push to {repo_id} failed: {type(e).__name__}: {_first_line(e)}"
    return UserError(_scrub(msg, token))


def _first_line(e: BaseException | str) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else ""


def _scrub(text: str, token: str | None) -> str:
    return text.replace(token, "***") if token else text


# --------------------------------------------------------------------------- CLI


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
        "--dry-run", metavar="DIR", default=None, help="write the exact upload folder to DIR; upload nothing"
    )
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


if __name__ == "__main__":
    sys.exit(main_push())
