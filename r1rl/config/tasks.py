"""What a stage trains on: a built-in task by name, or your own ``data:`` section."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from r1rl.config.base import Strict


class ArithmeticTaskConfig(Strict):
    """The embedded arithmetic task: a seeded generator of worked problems (``r1rl.tasks.arithmetic``)."""

    name: Literal["arithmetic"] = "arithmetic"
    min_operands: int = Field(2, ge=2, description="fewest terms in a problem")
    max_operands: int = Field(3, ge=2, description="most terms in a problem")
    digits: int = Field(2, ge=1, le=6, description="digits of the largest operand")
    operators: str = Field("+-", pattern=r"^[+\-*]+$", description="operators drawn from")
    test_fraction: float = Field(0.1, gt=0, lt=1, description="share of prompt space held out")
    answer_only_fraction: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of SFT completions that give only the answer, not the steps",
    )
    train_size: int = Field(20_000, ge=1, description="distinct training problems (SFT takes the first ones)")
    heldout_size: int = Field(500, ge=1, description="held-out problems (the same ones whatever the seed)")

    @model_validator(mode="after")
    def _operands(self) -> ArithmeticTaskConfig:
        if self.min_operands > self.max_operands:
            raise ValueError(f"min_operands ({self.min_operands}) > max_operands ({self.max_operands})")
        return self


class BenchmarkTaskConfig(Strict):
    """A built-in task on a benchmark's data: its loader and prompt format are the eval harness's."""

    name: Literal["gsm8k", "mbpp", "cuad"] = Field(
        description="gsm8k (math tiers), mbpp (code), cuad (extraction)"
    )
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


def _task_by_name(value: Any) -> Any:
    """``task: gsm8k`` means ``task: {name: gsm8k}``; a mapping without a name is the arithmetic task."""
    if isinstance(value, str):
        return {"name": value}
    if isinstance(value, dict) and "name" not in value:
        return {"name": "arithmetic", **value}
    return value


TaskConfig = Annotated[
    ArithmeticTaskConfig | BenchmarkTaskConfig, Field(discriminator="name"), BeforeValidator(_task_by_name)
]


class DataConfig(Strict):
    """Your own dataset, loaded with ``datasets``: a local file or folder, or a Hub dataset.

    Every column other than the prompt (and the SFT completion) reaches every reward function as
    a keyword argument, as in TRL.
    """

    path: str | None = Field(
        None,
        description="a local json/jsonl/parquet/csv/tsv file, a folder (train.jsonl, test.jsonl: 2 splits), "
        "or a Hub dataset id",
    )
    subset: str | None = Field(None, description="the Hub dataset's configuration (load_dataset's name)")
    split: str = Field("train", description="the split trained on")
    data_files: str | list[str] | dict[str, str | list[str]] | None = Field(
        None, description="files per split, as load_dataset's data_files"
    )
    name: str | None = Field(
        None, description="the task's name in results and cards (default: the file's stem)"
    )
    prompt_column: str = Field(
        "prompt", description="the prompt: text, or a list of {role, content} chat messages"
    )
    completion_column: str = Field(
        "completion", description="SFT: the target, text or messages (loss on it and the EOS only)"
    )
    messages_column: str | None = Field(
        None,
        description="chat data: one conversation per row; the prompt is every turn before the last reply",
    )
    answer_column: str | None = Field(None, description="a column the rewards read as 'answer'")
    columns: dict[str, str] = Field(
        default_factory=dict, description="reward column -> dataset column, e.g. {answer: target}"
    )
    prompt_template: str | None = Field(
        None,
        description="Jinja template over the row's columns: the prompt, e.g. 'Q: {{question}}\\nA:'",
    )
    system_prompt: str | None = Field(None, description="chat data: a system message put before every prompt")
    stop: list[str] = Field(
        default_factory=list,
        description="stop sequences that end a completion (the text is cut before them for the rewards)",
    )
    eval_split: str | None = Field(None, description="the held-out split; null = a seeded eval_fraction")
    eval_fraction: float = Field(0.1, gt=0, lt=1, description="held-out share of split, when no eval_split")
    split_seed: int = Field(
        0, ge=0, description="seed of that split; fixed, so every stage and run holds out the same rows"
    )
    shuffle: bool = Field(False, description="shuffle the training rows (the stage's seed) before limit")
    limit: int | None = Field(None, ge=1, description="train on the first N rows")
    eval_limit: int | None = Field(None, ge=1, description="evaluate on the first N held-out rows")
    max_prompt_length: int | None = Field(
        None, ge=1, description="drop rows whose prompt is longer than this many tokens (counted)"
    )
    max_length: int | None = Field(
        None, ge=2, description="SFT: truncate prompt + completion to this many tokens"
    )
    num_proc: int | None = Field(
        None,
        ge=1,
        description="processes for datasets.map; tokens are cached (the main process first under a launcher)",
    )


class PretrainDataConfig(DataConfig):
    """The pretraining corpus: the task's documents (or ``data.path``'s rows), or ``r1rl.data`` sources."""

    num_problems: int = Field(60_000, ge=10, description="documents in the corpus (the task's first N)")
    seq_len: int = Field(128, ge=16, description="packed sequence length")
    formatted_fraction: float = Field(
        0.0, ge=0, le=1, description="share of documents written in the answer format rather than plain steps"
    )
    sources: list[dict[str, Any]] = Field(
        default_factory=list,
        description="r1rl.data sources ({type: file|hf|arithmetic|stdlib, ...}); empty = the task's problems",
    )
    weights: list[float] | None = Field(None, description="mixture weight per source")
    temperature: float = Field(1.0, gt=0, description="mixture temperature: p_i ∝ w_i^(1/T)")
    filters: list[dict[str, Any]] = Field(
        default_factory=list, description="quality filters ({type: length|symbol_ratio|repetition|...})"
    )
    dedup: dict[str, Any] | None = Field(None, description="exact/near dedup options, e.g. {threshold: 0.8}")
    val_fraction: float = Field(0.0, ge=0, lt=1, description="held-out share, scored as val/loss at the end")
