"""A sweep's config (``SWEEP.yaml``) and its search space over any config keys of a stage or pipeline.

::

    stage: sft                                  # a stage (pretrain, sft, ppo, distill) or pipeline
    config: recipes/configs/tiny/sft.yaml       # the recipe every trial starts from
    overrides: [log.eval_every=50]              # key.sub=value, as on the command line
    space:
      optim.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
      steps: {type: int, low: 50, high: 200, step: 50}
      lora.r: {choices: [4, 8, 16]}
    objective: {metric: eval/accuracy, direction: maximize}
    trials: 20
    sampler: tpe                                # tpe | random | grid
    output_dir: runs/sweep                      # trial-000/, trial-001/, ... study.db, results.md, plots/

Nothing here imports Optuna: the config is read (and refused in one line) before the study starts.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from r1rl.strict import Strict

Value = float | int | str | bool
MAX_GRID = 10_000  # values of one key on a grid


class ParamSpec(Strict):
    """One searched config key: a float or int range (optionally on a log scale, or stepped), or choices."""

    type: Literal["float", "int", "categorical"] | None = Field(
        None, description="float, int or categorical (null: categorical when choices are given)"
    )
    low: float | None = Field(None, description="lowest value (float and int)")
    high: float | None = Field(None, description="highest value (float and int)")
    log: bool = Field(False, description="sample on a log scale (float and int)")
    step: float | None = Field(None, gt=0, description="spacing of the values (float and int; grid needs it)")
    choices: list[Value] | None = Field(None, min_length=1, description="the values of a categorical key")

    @model_validator(mode="after")
    def _check(self) -> ParamSpec:
        if self.type is None:
            self.type = "categorical" if self.choices is not None else "float"
        if self.type == "categorical":
            if self.choices is None:
                raise ValueError("a categorical key needs choices: [...]")
            return self
        if self.choices is not None:
            raise ValueError(f"a {self.type} key takes low/high, not choices")
        if self.low is None or self.high is None or self.low > self.high:
            raise ValueError(f"a {self.type} key needs low <= high")
        if self.log and (self.low <= 0 or self.step is not None):
            raise ValueError("log: true needs low > 0 and no step")
        return self

    def grid(self) -> list[Value]:
        """Every value of the key, for the grid sampler: the choices, or low..high by step."""
        if self.choices is not None:
            return list(self.choices)
        if self.step is None:
            raise ValueError("the grid sampler needs choices or a step for every key")
        assert self.low is not None and self.high is not None
        n = int(round((self.high - self.low) / self.step)) + 1
        if n > MAX_GRID:
            raise ValueError(f"low..high by step is {n} values; a grid key takes at most {MAX_GRID}")
        values: list[Value] = [self.low + i * self.step for i in range(n)]
        return [int(round(float(v))) for v in values] if self.type == "int" else values

    def example(self) -> Value:
        """A value of the key (its first choice, or low), to check the key before any trial runs."""
        if self.choices is not None:
            return self.choices[0]
        assert self.low is not None
        return int(self.low) if self.type == "int" else self.low


class ObjectiveSpec(Strict):
    """What a trial scores: a metric of its run."""

    metric: str = Field(
        "eval/accuracy",
        description="a stage: a metric of metrics.jsonl (its last value; eval/... needs log.eval_every > 0) "
        "or of eval_results.json for the eval stage; a pipeline: a metric of a stage's eval in "
        "summary.json (accuracy, tier/<tier>/pass_rate)",
    )
    direction: Literal["maximize", "minimize"] = Field("maximize", description="maximize or minimize it")
    stage: str | None = Field(None, description="a pipeline: whose eval (default: the last trained stage)")


class PrunerSpec(Strict):
    """When a trial is stopped early, judged at each periodic held-out eval of the objective's metric."""

    name: Literal["median", "threshold", "none"] = Field(
        "median",
        description="median: stop a trial whose best eval so far is worse than the median of earlier "
        "trials at the same step; threshold: stop one whose eval is outside [lower, upper]; none: never",
    )
    startup_trials: int = Field(3, ge=0, description="median: trials that finish before any is pruned")
    warmup_steps: int = Field(0, ge=0, description="evals at or before this step never prune")
    lower: float | None = Field(None, description="threshold: prune below this value")
    upper: float | None = Field(None, description="threshold: prune above this value")

    @model_validator(mode="after")
    def _check(self) -> PrunerSpec:
        if self.name == "threshold" and self.lower is None and self.upper is None:
            raise ValueError("pruner threshold needs lower or upper")
        return self


class SweepConfig(Strict):
    """A hyper-parameter search: trials of one stage (or pipeline) recipe over a search space."""

    stage: str = Field(
        description="the stage every trial runs (pretrain, sft, ppo, distill, eval) or pipeline"
    )
    config: str = Field(description="the stage's (or pipeline's) YAML recipe every trial starts from")
    overrides: list[str] = Field(default_factory=list, description="key.sub=value overrides for every trial")
    space: dict[str, ParamSpec] = Field(min_length=1, description="searched config key -> its range")
    objective: ObjectiveSpec = Field(default_factory=ObjectiveSpec)
    trials: int = Field(20, ge=1, description="trials the study runs in all (finished and pruned count)")
    sampler: Literal["tpe", "random", "grid"] = Field("tpe", description="Optuna sampler")
    seed: int = Field(0, description="the sampler's seed")
    startup_trials: int = Field(
        10, ge=1, description="tpe: random trials before it models the space (Optuna's default)"
    )
    pruner: PrunerSpec = Field(default_factory=PrunerSpec)
    output_dir: str = Field(description="trial-NNN/ run directories, study.db, results.md, plots/")
    storage: str | None = Field(
        None,
        description="an Optuna storage URL (null: sqlite:///<output_dir>/study.db); processes or machines "
        "given the same URL and study_name share one study",
    )
    study_name: str = Field("sweep", description="the study's name in its storage")

    @model_validator(mode="after")
    def _check(self) -> SweepConfig:
        for key, spec in self.space.items():
            if key == "output_dir":
                raise ValueError("output_dir is each trial's own (trial-NNN) and cannot be searched")
            if self.sampler == "grid":
                try:
                    spec.grid()
                except ValueError as e:
                    raise ValueError(f"space.{key}: {e}") from None
        return self

    def grid(self) -> dict[str, list[Any]]:
        return {key: spec.grid() for key, spec in self.space.items()}
