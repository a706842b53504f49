"""What the benchmark tasks (``gsm8k.py``, ``mbpp.py``, ``cuad.py``) share.

Each is a task of the eval harness seen from training: its file holds the harness spec (the
loader — local files under ``../shared/data`` or the Hub —, the prompt format ``doc_to_text``, the
SFT target ``target_delimiter`` + ``doc_to_target``, the stop sequences, the scorer and its
columns) and registers it with :mod:`r1rl.eval.registry`, so a model trained here is scored on the
same strings the benchmark uses. The reward tiers are a generic suite of :mod:`r1rl.rewards`
whose task tier *is* the benchmark's scorer.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field

from r1rl.eval import registry as harness
from r1rl.records import NOT_COLUMNS, Split
from r1rl.strict import Strict

CONTAMINATED = "contaminated: trained on test"
Docs = list[dict[str, Any]]
Loader = Callable[[], tuple[Docs, Docs, tuple[str, ...]]]  # () -> (train, held-out, notes)


class BenchmarkOptions(Strict):
    """A built-in task on a benchmark's data: its loader and prompt format are the eval harness's."""

    name: str = Field(description="the task (each benchmark task's file fixes it)")
    source: Literal["local", "hub"] = Field(
        "local", description="local files under data_dir, or the Hugging Face Hub (needs the network)"
    )
    data_dir: str | None = Field(
        None, description="local data root (default $R1RL_DATA_DIR or ../shared/data)"
    )
    eval_fraction: float = Field(
        0.2, gt=0, lt=1,
        description="held-out share where the data has no training split (GSM8K offline; CUAD, by contract)",
    )  # fmt: skip
    split_seed: int = Field(
        0, ge=0, description="seed of that split; fixed, so every stage sees the same one"
    )
    max_prompt_length: int | None = Field(
        None, ge=1, description="drop rows whose prompt is longer than this many tokens (counted)"
    )
    max_length: int | None = Field(
        None, ge=2, description="SFT: truncate prompt + completion to this many tokens"
    )
    limit: int | None = Field(None, ge=1, description="train on the first N rows")
    eval_limit: int | None = Field(None, ge=1, description="evaluate on the first N held-out rows")


class BenchmarkTask:
    """Records rendered from a harness task's documents; ``load()`` gives ``(train, heldout, notes)``.

    Documents are loaded on first use, so naming the task (for its rewards) reads no file.
    """

    def __init__(
        self,
        name: str,
        load: Loader,
        rewards: list[dict[str, Any]],
        options: BenchmarkOptions,
    ) -> None:
        self.harness = harness.get_task(name)
        self.name = name
        self.rewards = rewards
        self.stop = tuple(s for s in self.harness.generation.until or [] if s)
        self.system_prompt, self.num_proc = None, None
        self.max_prompt_length, self.max_length = options.max_prompt_length, options.max_length
        self._load = load
        self._limits = (options.limit, options.eval_limit)
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


def docs(options: BenchmarkOptions, split: str) -> Docs:
    """The harness task's documents of ``split``, from the options' source and data root."""
    return harness.get_task(options.name).load(split, options.data_dir, options.source)


def suite(prefix: str) -> list[dict[str, Any]]:
    """The reward tiers ``<prefix>_syntax``, ``<prefix>_logic``, ``<prefix>_task`` of :mod:`r1rl.rewards`."""
    return [{"name": tier, "reward": f"{prefix}_{tier}"} for tier in ("syntax", "logic", "task")]


def seeded_split(
    docs: list[dict[str, Any]], fraction: float, seed: int, key: Callable[[int, dict[str, Any]], Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(train, heldout)``: a seeded ``fraction`` of the groups ``key(row, doc)`` makes is held out whole."""
    keys = [str(key(i, d)) for i, d in enumerate(docs)]
    groups = sorted(set(keys))
    random.Random(seed).shuffle(groups)
    held = set(groups[: max(1, round(len(groups) * fraction))])
    return [d for d, k in zip(docs, keys) if k not in held], [d for d, k in zip(docs, keys) if k in held]
