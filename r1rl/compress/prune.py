"""Expert pruning: drop each MoE layer's least-used routed experts and write a smaller plain checkpoint.

Notation: ``L`` MoE layers, ``E`` routed experts per layer before pruning, ``E'`` after, ``k`` experts
per token, ``H`` hidden size.

**Layouts.** A prunable layer is a top-k softmax router (a module named ``*TopKRouter`` with an
``(E, H)`` weight) beside one ``*Experts`` module whose weights are stacked along a leading axis of
``E`` (Qwen2/3-MoE, Qwen3-Next, OLMoE, Mixtral …). Every parameter and buffer of both modules with a
leading ``E`` is indexed by the kept experts, and the config's one expert count (``num_experts``,
``num_local_experts`` …) becomes ``E'``; attention, shared experts, norms and embeddings are copied as
they are. Sigmoid or group-limited routers (DeepSeek-V3's bias-corrected scores) and other layouts are
refused in one line. The written folder is reloaded by plain transformers and must give the same
logits as the pruned model in memory before it becomes ``OUT``.

**The same count in every layer.** A transformers config has one expert count, so every layer drops
the same number of experts, each layer its own least used.

**Renormalising the router.** Dropping rows of the router weight makes its softmax run over the kept
experts only: ``p'_i = exp(z_i) / sum_{j kept} exp(z_j) = p_i / sum_{j kept} p_j``, the original
routing distribution conditioned on the kept experts — the mass it gave dropped experts goes to the
kept ones in proportion. No weight is rescaled for this; the smaller softmax computes it. Where the
router renormalises its top-k weights (``norm_topk_prob: true``; Mixtral always), a token whose top-k
held no dropped expert is computed exactly as before, and a token that had chosen a dropped expert
takes its best kept one instead. Without ``norm_topk_prob`` (Qwen3-MoE's and OLMoE's default) the
kept experts' weights also grow by ``1 / sum_{j kept} p_j`` for every token.

**Ranking.** ``usage``: tokens routed to each expert (top-k counts, padding masked,
:func:`r1rl.algorithms.router.expert_load`) in a calibration pass over the task's training rows
(prompt and completion), or summed over a PPO run's ``expert_load.jsonl``; ``random``: a seeded draw,
the baseline. Among equally used experts the lower index is kept.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from pydantic import Field
from transformers import AutoModelForCausalLM, PreTrainedModel

from r1rl.algorithms.router import expert_load
from r1rl.config.tasks import DataConfig, TaskConfig, default_task
from r1rl.errors import UserError
from r1rl.models.factory import count_parameters, load_merged, load_tokenizer, resolve_model_path
from r1rl.models.moe import EXPERT_KEYS, router_scoring, routing_shape
from r1rl.models.targets import EXPERTS
from r1rl.rundir import atomic_write_text, read_jsonl
from r1rl.strict import Strict, load_yaml, validate
from r1rl.tasks import build_task
from r1rl.train.prepare import sft_examples
from r1rl.train.supervised import collate

RANKINGS = ("usage", "random")
REPORT_FILE = "pruning.json"  # what was pruned and why, beside the weights (transformers ignores it)


@dataclass(frozen=True)
class PruneSpec:
    """One ``r1rl prune`` call (see :func:`prune`)."""

    model: str  # a run directory (its final/), a model or adapter folder, or a Hub id
    out: str  # the new checkpoint's folder; must not exist
    fraction: float  # share of each layer's experts to drop, rounded to whole experts
    ranking: str = "usage"  # usage | random
    seed: int = 0  # of the random ranking
    calibration: str | None = None  # a YAML config whose task:/data:/seed: give the calibration rows
    telemetry: str | None = None  # an expert_load.jsonl (or the run directory holding one)
    num_examples: int = 256  # calibration rows (the task's first training rows)
    batch_size: int = 16


@dataclass(frozen=True)
class MoeLayer:
    """One prunable layer: full module names of its router and of the experts beside it."""

    router: str
    experts: str


class Calibration(Strict):
    """The rows a calibration pass reads: the ``task:``, ``data:`` and ``seed:`` of any stage's config,
    a pipeline's or a run's ``config.yaml`` (other keys are not read)."""

    task: TaskConfig | None = Field(default_factory=default_task, description="the task whose rows calibrate")
    data: DataConfig | None = Field(None, description="your own dataset; its rows replace the task's")
    seed: int = Field(0, description="the task's seed (its split)")


def prune(spec: PruneSpec) -> dict[str, Any]:
    """Prune ``spec.model`` and write the smaller checkpoint to ``spec.out``; returns what
    ``pruning.json`` records. Bad input is a one-line :class:`UserError` before anything is written."""
    spec = resolved(spec)
    model = load_merged(spec.model).eval()
    layers = moe_layers(model)
    tokenizer = load_tokenizer(spec.model)
    num_experts, top_k = routing_shape(model.config) or (0, 0)
    drop = drop_count(num_experts, top_k, spec.fraction)
    before = count_parameters(model)
    load, ranked_on = ranking_load(spec, model, tokenizer, len(layers), num_experts)
    if load is None:
        keep = random_kept(len(layers), num_experts, drop, spec.seed)
    else:
        keep = least_used_kept(load, drop)
    prune_layers(model, layers, keep)
    report = {
        "source": spec.model,
        "model_type": model.config.model_type,
        "ranking": spec.ranking,
        "ranked_on": ranked_on,
        "seed": spec.seed if spec.ranking == "random" else None,
        "fraction": spec.fraction,
        "experts": {"before": num_experts, "after": num_experts - drop, "per_token": top_k},
        "parameters": {"before": before, "after": count_parameters(model)},
        "kept": keep,
        "tokens_per_expert": load.tolist() if load is not None else None,
    }
    write_checkpoint(model, tokenizer, Path(spec.out), report)
    return report


def resolved(spec: PruneSpec) -> PruneSpec:
    """``spec`` with its paths checked and filled in: a run directory's ``final/`` as the model and its
    ``config.yaml`` as the calibration config, a run directory's ``expert_load.jsonl`` as telemetry."""
    if not 0 < spec.fraction < 1:
        raise UserError(
            f"prune: --fraction must be between 0 and 1, the share of experts to drop (got {spec.fraction})"
        )
    if spec.ranking not in RANKINGS:
        raise UserError(f"prune: --ranking must be one of {', '.join(RANKINGS)} (got {spec.ranking!r})")
    if Path(spec.out).exists():
        raise UserError(f"prune: {spec.out} exists; not overwriting it")
    source, calibration = Path(spec.model), spec.calibration
    if (source / "final").is_dir() and (source / "config.yaml").is_file():  # a run directory
        calibration = calibration or str(source / "config.yaml")
        source = source / "final"
    telemetry = spec.telemetry
    if telemetry is not None:
        path = Path(telemetry) / "expert_load.jsonl" if Path(telemetry).is_dir() else Path(telemetry)
        if not path.is_file():
            raise UserError(f"prune: --telemetry: no such file: {path}")
        if spec.ranking != "usage":
            raise UserError("prune: --telemetry ranks experts by usage; leave it out with --ranking random")
        telemetry = str(path)
    if spec.ranking == "usage" and telemetry is None and calibration is None:
        raise UserError(
            "prune: usage ranking needs rows to count on: give a run directory, --calibration CONFIG.yaml "
            "(its task:/data:) or --telemetry expert_load.jsonl; or use --ranking random"
        )
    model = resolve_model_path(str(source), "prune: MODEL")
    return replace(spec, model=model, calibration=calibration, telemetry=telemetry)


def moe_layers(model: PreTrainedModel) -> list[MoeLayer]:
    """The prunable layers of ``model`` in layer order; any other layout is refused in one line."""
    config = model.config
    found: list[MoeLayer] = []
    for name, module in model.named_modules():
        if not type(module).__name__.endswith("TopKRouter"):
            continue
        parent = name.rpartition(".")[0]
        experts = [
            f"{parent}.{child}"
            for child, m in model.get_submodule(parent).named_children()
            if EXPERTS.search(type(m).__name__)
        ]
        if len(experts) != 1 or not _stacked(module, model.get_submodule(experts[0])):
            found = []
            break
        found.append(MoeLayer(name, experts[0]))
    grouped = (getattr(config, "n_group", None) or 1) > 1
    if not found or router_scoring(config) != "softmax" or grouped or experts_key(config) is None:
        raise UserError(
            f"prune: cannot prune {config.model_type} ({type(model).__name__}): pruning needs top-k softmax "
            "routers with an (E, H) weight beside experts stacked as (E, ., .) tensors, as in Qwen3-MoE, "
            "OLMoE and Mixtral"
        )
    return found


def _stacked(router: torch.nn.Module, experts: torch.nn.Module) -> bool:
    """Whether ``router`` has an ``(E, H)`` weight, every tensor of both modules a leading ``E``, and the
    experts at least one 3-D ``(E, ., .)`` weight."""
    weight = getattr(router, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
        return False
    num = weight.shape[0]
    tensors = [*router.state_dict().values(), *experts.state_dict().values()]
    return all(t.ndim >= 1 and t.shape[0] == num for t in tensors) and any(
        p.ndim == 3 for p in experts.parameters()
    )


def experts_key(config: Any) -> str | None:
    """The config key that holds the number of routed experts (:data:`EXPERT_KEYS`), at its top level."""
    return next((k for k in EXPERT_KEYS if isinstance(getattr(config, k, None), int)), None)


def drop_count(num_experts: int, top_k: int, fraction: float) -> int:
    """Experts dropped per layer: ``round(fraction · E)``, at least one, leaving at least ``k``."""
    drop = round(fraction * num_experts)
    if drop < 1:
        raise UserError(
            f"prune: --fraction {fraction} of {num_experts} experts drops none; "
            f"the smallest step is {1 / num_experts:.4g}"
        )
    if num_experts - drop < top_k:
        raise UserError(
            f"prune: --fraction {fraction} leaves {num_experts - drop} of {num_experts} experts, fewer than "
            f"the {top_k} each token is routed to (num_experts_per_tok)"
        )
    return drop


def least_used_kept(load: torch.Tensor, drop: int) -> list[list[int]]:
    """Kept experts of each layer, ascending: all but the ``drop`` least used. ``load``: (L, E); among
    equal counts the lower index ranks higher (a stable sort)."""
    order = torch.sort(load, dim=1, descending=True, stable=True).indices  # (L, E), most used first
    return [sorted(row[: load.shape[1] - drop].tolist()) for row in order]


def random_kept(num_layers: int, num_experts: int, drop: int, seed: int) -> list[list[int]]:
    """Kept experts of each layer, ascending, drawn uniformly at random (the baseline), seeded."""
    gen = torch.Generator().manual_seed(seed)
    return [
        sorted(torch.randperm(num_experts, generator=gen)[: num_experts - drop].tolist())
        for _ in range(num_layers)
    ]


def ranking_load(
    spec: PruneSpec, model: PreTrainedModel, tokenizer: Any, num_layers: int, num_experts: int
) -> tuple[torch.Tensor | None, str]:
    """``(L, E)`` tokens per expert that rank the experts, and what they were counted on; ``None`` for
    the random ranking."""
    if spec.ranking == "random":
        return None, f"seed {spec.seed}"
    if spec.telemetry is not None:
        load, ranked_on = telemetry_load(Path(spec.telemetry)), spec.telemetry
    else:
        assert spec.calibration is not None  # resolved() checked it
        task = calibration_task(spec.calibration)
        examples = [ids for ids, _ in sft_examples(task, tokenizer, spec.num_examples, stage="prune")]
        load = calibration_load(model, examples, spec.batch_size, tokenizer.pad_token_id)
        ranked_on = f"{len(examples)} training rows of task {task.name!r} ({spec.calibration})"
    if tuple(load.shape) != (num_layers, num_experts):
        raise UserError(
            f"prune: {ranked_on} counts {tuple(load.shape)} (layers, experts); the model has "
            f"({num_layers}, {num_experts})"
        )
    return load, ranked_on


def calibration_task(path: str) -> Any:
    """The task named by a config file's ``task:``, ``data:`` and ``seed:`` (:class:`Calibration`)."""
    raw = load_yaml(path)
    picked: dict[str, Any] = {k: raw[k] for k in ("task", "seed") if k in raw}
    if isinstance(raw.get("data"), dict) and "path" in raw["data"]:  # a pretrain config's data: is its corpus
        picked["data"] = raw["data"]
    cfg = validate(Calibration, picked, source=path)
    return build_task(cfg.task, cfg.data, cfg.seed)


def calibration_load(
    model: PreTrainedModel, examples: list[list[int]], batch_size: int, pad_id: int
) -> torch.Tensor:
    """Tokens routed to each expert of each MoE layer over ``examples`` (token ids), padding masked.
    -> (L, E)"""
    top_k = (routing_shape(model.config) or (0, 1))[1]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    total = torch.zeros(0)
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            batch = collate([(ids, ids) for ids in examples[start : start + batch_size]], pad_id)
            ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)  # (B, S)
            out = model(input_ids=ids, attention_mask=mask, output_router_logits=True)
            load = expert_load(out.router_logits, top_k, mask).cpu()  # (L, E)
            total = load if total.numel() == 0 else total + load
    model.to("cpu")
    return total


def telemetry_load(path: Path) -> torch.Tensor:
    """Tokens per expert summed over every step of a run's ``expert_load.jsonl``. -> (L, E)"""
    rows = read_jsonl(path)
    try:
        return torch.tensor([row["tokens_per_expert"] for row in rows], dtype=torch.float).sum(0)
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError):
        raise UserError(f"prune: {path} is not an expert_load.jsonl (rows of tokens_per_expert)") from None


def prune_layers(model: PreTrainedModel, layers: list[MoeLayer], keep: list[list[int]]) -> None:
    """Keep only experts ``keep[l]`` in layer ``l``, in place: index every ``(E, ...)`` tensor of its router
    and experts, and set every copy of the expert count (the config's, the modules') to ``E'``."""
    num = (routing_shape(model.config) or (0, 0))[0]
    for layer, kept in zip(layers, keep):
        index = torch.tensor(kept)
        for owner in (model.get_submodule(layer.router), model.get_submodule(layer.experts)):
            for module in owner.modules():
                _index_tensors(module, num, index)
    for module in model.modules():  # routers, experts and the LM head (its aux loss) keep their own copy
        for key in EXPERT_KEYS:
            if getattr(module, key, None) == num:
                setattr(module, key, len(keep[0]))
    setattr(model.config, experts_key(model.config) or "num_experts", len(keep[0]))


def _index_tensors(module: torch.nn.Module, num: int, index: torch.Tensor) -> None:
    """Replace ``module``'s own parameters and buffers with a leading ``num`` by their rows ``index``."""
    for name, param in list(module.named_parameters(recurse=False)):
        if param.shape[0] == num:
            kept = param.detach()[index.to(param.device)].clone()
            setattr(module, name, torch.nn.Parameter(kept, requires_grad=param.requires_grad))
    for name, buffer in list(module.named_buffers(recurse=False)):
        if buffer is not None and buffer.ndim >= 1 and buffer.shape[0] == num:
            module.register_buffer(name, buffer[index.to(buffer.device)].clone())


def write_checkpoint(model: PreTrainedModel, tokenizer: Any, out: Path, report: dict[str, Any]) -> None:
    """Save the model, tokenizer and ``pruning.json`` to a temporary folder, check that transformers
    loads it back as the same model, and rename it to ``out``; a failure leaves nothing behind."""
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        atomic_write_text(tmp / REPORT_FILE, json.dumps(report, indent=1) + "\n")
        check_reload(model, tmp)
        os.replace(tmp, out)
    except OSError as e:
        raise UserError(f"prune: cannot write {out} ({e.strerror or e})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_reload(model: PreTrainedModel, path: Path) -> None:
    """Plain transformers must load ``path`` with no missing, unexpected or resized weight, and give the
    same logits as ``model`` on a few tokens."""
    loaded, info = AutoModelForCausalLM.from_pretrained(path, dtype=model.dtype, output_loading_info=True)
    wrong = {k: list(v)[:3] for k, v in info.items() if k != "error_msgs" and v}
    ids = (torch.arange(12) % model.config.vocab_size).reshape(1, 12)
    with torch.no_grad():
        same = torch.allclose(model(ids).logits, loaded.eval()(ids).logits, atol=1e-5, rtol=1e-4)
    if wrong or not same:
        why = f"loading reported {wrong}" if wrong else "its logits differ from the pruned model's"
        raise UserError(
            f"prune: cannot prune {model.config.model_type}: the written checkpoint is wrong ({why})"
        )
