"""The model card: ``huggingface_hub.ModelCard`` from a Jinja template and the builders of its parts.

Its metadata holds the base model, licence, tags, the Hub datasets named in the configs and the
eval results as ``model-index``; its body the lineage (each stage with its resolved config), the
task, the reward hierarchy of the last PPO or distill stage and the eval tables. Model facts
(architecture, experts, parameter count) are read from the files about to be pushed, or from an
adapter's base on disk.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from r1rl.report.hub.run import LineageStage, RunInfo, is_hub_id, read_task, reward_code

if TYPE_CHECKING:
    from huggingface_hub import ModelCard

# the stages whose config holds a reward hierarchy, and what the card says they did with it
REWARDS_BY = {
    "ppo": "The PPO stage optimised",
    "distill": "The distill stage trained on the teacher's samples that passed",
}
DATASET_KEYS = ("dataset", "datasets", "dataset_name", "dataset_id")  # config keys naming Hub datasets

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

Trained on `{{ task.name }}`{% if task.data %}, the rows of `{{ task.data }}` (your own data){% endif %}.
{%- for note in task.notes %} **Note: {{ note }}.**{% endfor %}
{% endif %}
{%- if envs %}
## Tools and environments

Trained and evaluated on multi-turn episodes: the model calls tools by writing
`<tool_call>{"name": ..., "arguments": {...}}</tool_call>` and reads their results as `tool` messages.

| stage | tools | environment | max turns | max tokens |
|---|---|---|---|---|
{% for e in envs -%}
| {{ e.stage }} | {% for t in e.tools %}`{{ t }}`{% if not loop.last %}, {% endif %}{% endfor %} | \
{% if e.environment %}`{{ e.environment }}`{% endif %} | {{ e.max_turns }} | {{ e.max_tokens }} |
{% endfor %}
{% endif %}
{%- if rewards %}
## Reward hierarchy

{{ rewards_by }} these tiers, lowest first, combined in `{{ rewards.mode }}` mode
{%- if rewards.mode == "gated" %} (a tier counts only once every tier below it passes)
{%- elif rewards.mode == "scheduled" %} (weights move from `weight` to `weight_end` between steps \
{{ rewards.schedule_start }} and {{ rewards.schedule_end }}){% endif %}.

| tier | reward | threshold | weight |
|---|---|---|---|
{% for t in rewards.tiers -%}
| {{ t.name }} | {% if t.code %}[`{{ t.reward }}`]({{ t.code }}){% else %}`{{ t.reward }}`{% endif %} | \
{{ t.threshold }} | {{ t.weight }}
{%- if t.get("weight_end") is not none %} → {{ t.weight_end }}{% endif %} |
{% endfor %}
{%- if rewards.code %}
The reward code is in this repository, as the run used it: {% for f in rewards.code %}[`{{ f }}`]({{ f }})\
{% if not loop.last %}, {% endif %}{% endfor %}.
{% endif %}
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
        # card metadata beyond the common fields is any attribute; ModelCardData's type declares only those
        data.base_model_relation = "adapter" if kind == "adapter" else "finetune"  # type: ignore[attr-defined]
    rewarded = next((s for s in reversed(info.lineage) if s.stage in REWARDS_BY), None)
    code, names = reward_code(info)  # reward files as the repository holds them (uploaded with the model)
    configs = {s.path: _with_code(s.config, names.get(s.path, {})) for s in info.lineage}
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
                "start": _start(s),
                "yaml": yaml.safe_dump(configs[s.path], sort_keys=False),
            }
            for s in info.lineage
        ],
        envs=_envs(info),
        rewards=_rewards(configs[rewarded.path], code) if rewarded else None,
        rewards_by=REWARDS_BY[rewarded.stage] if rewarded else None,
        task=read_task(info),
        eval_rows=_eval_rows(info.eval_results),
        eval_model=(info.eval_results or {}).get("model"),
        summary_table=_summary_table(info.summary),
    )


def _with_code(config: Any, names: dict[str, str]) -> Any:
    """``config`` with every ``reward: path/to/file.py:fn`` of a kept file named as the repository holds
    it (``rewards/file.py:fn``), not where it lay on the training machine."""
    if isinstance(config, dict):
        out = {k: _with_code(v, names) for k, v in config.items()}
        reward = out.get("reward")
        if isinstance(reward, str) and reward.rpartition(":")[0] in names:
            path, _, fn = reward.rpartition(":")
            out["reward"] = f"{names[path]}:{fn}"
        return out
    if isinstance(config, list):
        return [_with_code(v, names) for v in config]
    return config


def _rewards(config: dict[str, Any], code: dict[str, Path]) -> dict[str, Any] | None:
    """The rewarded stage's hierarchy for the card: each tier with the repository file of its code."""
    rewards = config.get("rewards")
    if not isinstance(rewards, dict):
        return None
    tiers = []
    for t in rewards.get("tiers") or []:
        path = t.get("reward").rpartition(":")[0] if isinstance(t.get("reward"), str) else ""
        tiers.append({**t, "code": path if path in code else None})
    used = sorted({t["code"] for t in tiers if t["code"]})
    return {**rewards, "tiers": tiers, "code": used}


def _envs(info: RunInfo) -> list[dict[str, Any]]:
    """Each stage's ``env`` section that has tools or an environment (the multi-turn stages)."""
    out = []
    for s in info.lineage:
        env = s.config.get("env") or {}
        if env.get("tools") or env.get("environment"):
            out.append({"stage": s.stage, **env})
    return out


def _start(run: LineageStage) -> str:
    """The lineage table's "started from": the model trained on, and a distill stage's teacher."""
    start = run.config.get("model_path") or "from scratch"
    teacher = run.config.get("teacher_path")
    return f"{start}, taught by {teacher}" if teacher else start


def _adapter_base_on_hub(files: dict[str, Path]) -> str | None:
    if "adapter_config.json" not in files:
        return None
    base = json.loads(files["adapter_config.json"].read_text()).get("base_model_name_or_path")
    return base if base and is_hub_id(base) else None


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
                        if isinstance(v, str) and is_hub_id(v) and v not in found:
                            found.append(v)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for stage in info.lineage:
        walk(stage.config)
    return found
