"""Built-in tasks on benchmark data: GSM8K (math tiers), MBPP (code tiers), CUAD (extraction tiers).

Each is the eval harness's task of the same name (``eval/tasks/<name>.yaml``) seen from training:
its loader (local files under ``../shared/data`` or the Hub), its prompt format (``doc_to_text``),
its SFT target (``target_delimiter`` + ``doc_to_target``), its stop sequences and its scorer
columns, so a model trained here is scored on the same strings the benchmark uses. The reward
tiers are the built-in suite whose task tier *is* the benchmark's scorer.

Training and held-out splits, one builder per task:

- ``gsm8k``: from the Hub, ``train`` and ``test``. Offline only the test split exists, so a
  seeded ``1 - eval_fraction`` of it trains and the rest is held out; the task then carries the
  note "contaminated: trained on test", which the model card repeats.
- ``mbpp``: the sanitized set's ``train`` problems (task ids 601–974) train, its ``test``
  problems (11–510) are held out; each row's asserts run in the sandbox.
- ``cuad``: one file of contract fields, split by contract (``source_file``): a seeded
  ``eval_fraction`` of the contracts is held out, so no contract is on both sides.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from r1rl.registry import Registry
from r1rl.tasks.base import NOT_COLUMNS, Split

CONTAMINATED = "contaminated: trained on test"


class BenchmarkTask:
    """Records rendered from a harness task's documents; ``load()`` gives ``(train, heldout, notes)``.

    Documents are loaded on first use, so naming the task (for its rewards) reads no file.
    """

    def __init__(
        self,
        name: str,
        load: Callable[[], tuple[list[dict[str, Any]], list[dict[str, Any]], tuple[str, ...]]],
        rewards: list[dict[str, Any]],
        cfg: Any,
    ) -> None:
        from r1rl.eval.registry import get_task

        self.harness = get_task(name)
        self.name = name
        self.rewards = rewards
        self.stop = tuple(s for s in self.harness.generation.until or [] if s)
        self.system_prompt, self.num_proc = None, None
        self.max_prompt_length, self.max_length = cfg.max_prompt_length, cfg.max_length
        self._load = load
        self._limits = (cfg.limit, cfg.eval_limit)
        self._docs: dict[str, list[dict[str, Any]]] | None = None
        self._notes: tuple[str, ...] | None = None

    @property
    def notes(self) -> tuple[str, ...]:
        self._ensure()
        return self._notes or ()

    def _ensure(self) -> dict[str, list[dict[str, Any]]]:
        if self._docs is None:
            train, held, self._notes = self._load()
            self._docs = {"train": train[: self._limits[0]], "test": held[: self._limits[1]]}
        return self._docs

    def records(self, split: Split) -> list[dict[str, Any]]:
        return [self.record(d) for d in self._ensure()[split]]

    def record(self, doc: dict[str, Any]) -> dict[str, Any]:
        """``{"prompt", "completion", **columns}`` of one document; its columns are the scorer's."""
        h = self.harness
        columns = {k: v for k, v in h.scorer_columns(doc).items() if k not in NOT_COLUMNS}
        completion = h.spec.target_delimiter + h.target_text(doc)
        return {"prompt": h.doc_to_text(doc), "completion": completion, **columns}

    def corpus(self, n: int, seed: int, formatted_fraction: float = 1.0) -> list[str]:
        """Pretraining documents: the training records as prompt + completion."""
        return [r["prompt"] + r["completion"] for r in self.records("train")[:n]]


BUILDERS: Registry[BenchmarkTask] = Registry("task")


def build_benchmark_task(cfg: Any) -> BenchmarkTask:
    """The built-in task ``cfg.name`` (a :class:`r1rl.config.BenchmarkTaskConfig`)."""
    return BUILDERS.get(cfg.name, "task.name")(cfg)


def _docs(cfg: Any, split: str) -> list[dict[str, Any]]:
    from r1rl.eval.registry import get_task

    return get_task(cfg.name).load(split, cfg.data_dir, cfg.source)


def _suite(prefix: str) -> list[dict[str, Any]]:
    return [{"name": tier, "reward": f"{prefix}_{tier}"} for tier in ("syntax", "logic", "task")]


def _seeded_split(
    docs: list[dict[str, Any]], fraction: float, seed: int, key: Callable[[int, dict[str, Any]], Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(train, heldout)``: a seeded ``fraction`` of the groups ``key(row, doc)`` makes is held out whole."""
    keys = [str(key(i, d)) for i, d in enumerate(docs)]
    groups = sorted(set(keys))
    random.Random(seed).shuffle(groups)
    held = set(groups[: max(1, round(len(groups) * fraction))])
    return [d for d, k in zip(docs, keys) if k not in held], [d for d, k in zip(docs, keys) if k in held]


@BUILDERS.register("gsm8k")
def gsm8k(cfg: Any) -> BenchmarkTask:
    def load() -> tuple[list[dict[str, Any]], list[dict[str, Any]], tuple[str, ...]]:
        if cfg.source == "hub":
            return _docs(cfg, "train"), _docs(cfg, "test"), ()
        train, held = _seeded_split(_docs(cfg, "test"), cfg.eval_fraction, cfg.split_seed, key=lambda i, d: i)
        return train, held, (CONTAMINATED,)

    return BenchmarkTask("gsm8k", load, _suite("math"), cfg)


@BUILDERS.register("mbpp")
def mbpp(cfg: Any) -> BenchmarkTask:
    return BenchmarkTask("mbpp", lambda: (_docs(cfg, "train"), _docs(cfg, "test"), ()), _suite("code"), cfg)


@BUILDERS.register("cuad")
def cuad(cfg: Any) -> BenchmarkTask:
    def load() -> tuple[list[dict[str, Any]], list[dict[str, Any]], tuple[str, ...]]:
        by_contract = lambda i, d: d["source_file"]  # noqa: E731
        train, held = _seeded_split(_docs(cfg, "test"), cfg.eval_fraction, cfg.split_seed, key=by_contract)
        return train, held, ()

    return BenchmarkTask("cuad", load, _suite("extraction"), cfg)
