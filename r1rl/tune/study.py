"""The Optuna study behind ``r1rl sweep``: samplers, pruners, storage, and the trials it runs.

- **Trials are ordinary runs.** Trial ``n`` runs the stage (or pipeline) into
  ``<output_dir>/trial-NNN`` with the sampled values as ``key.sub=value`` overrides, so every
  tool that reads a run directory reads a trial.
- **Stored, resumable, shareable.** The study lives in ``sqlite:///<output_dir>/study.db`` unless
  ``storage`` names another Optuna storage URL; a re-run loads it (``load_if_exists``) and runs only
  the trials still missing — finished and pruned ones count. Processes or machines given the same
  URL and study name share one study. Every running trial writes a heartbeat: one whose process
  was killed is failed once its heartbeat is :data:`GRACE_S` old and retried with the same values in
  its own run directory, so the stage resumes from that trial's last checkpoint.
- **Pruning from the periodic held-out eval.** While a trial trains, each periodic eval of the
  objective's metric (``log.eval_every``) is reported to the pruner
  (:func:`r1rl.train.loop.eval_listener`); a trial judged hopeless stops there and is marked pruned.

Optuna is an optional dependency (``pip install r1rl[sweep]``): it is imported when a sweep starts.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from r1rl.errors import UserError
from r1rl.rundir import read_jsonl
from r1rl.train.loop import eval_listener
from r1rl.tune.space import ParamSpec, SweepConfig, Value

if TYPE_CHECKING:
    import optuna

HEARTBEAT_S, GRACE_S = 10, 30  # a trial whose process stopped writing heartbeats this long ago is retried
DB_SCHEMES = ("sqlite", "postgresql", "mysql", "oracle", "mssql")
# runs a trial: (the sampled values, its run directory) -> the objective's value
TrialRunner = Callable[[dict[str, Value], Path], float]


def import_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise UserError("r1rl sweep needs Optuna: pip install 'r1rl[sweep]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def storage_url(cfg: SweepConfig) -> str:
    return cfg.storage or f"sqlite:///{Path(cfg.output_dir).resolve() / 'study.db'}"


def open_study(cfg: SweepConfig) -> optuna.Study:
    """The sweep's study, created or loaded from its storage (a wrong URL is one line)."""
    optuna = import_optuna()
    url = storage_url(cfg)
    storage: Any = url
    if url.split(":", 1)[0].split("+", 1)[0] in DB_SCHEMES:
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        try:
            storage = optuna.storages.RDBStorage(
                url,
                heartbeat_interval=HEARTBEAT_S,
                grace_period=GRACE_S,
                heartbeat_stale_trial_callback=retry,
            )
        except Exception as e:  # SQLAlchemy's errors: a bad URL, an unreachable server, no driver
            reason = str(e).splitlines()[0] if str(e) else ""
            raise UserError(f"storage {url}: cannot open it ({type(e).__name__}: {reason})") from None
    try:
        study = optuna.create_study(
            storage=storage, study_name=cfg.study_name, direction=cfg.objective.direction,
            sampler=sampler(cfg), pruner=pruner(cfg), load_if_exists=True,
        )  # fmt: skip
    except ValueError as e:  # e.g. the stored study has the other direction
        raise UserError(f"study {cfg.study_name!r} in {url}: {e}") from None
    if study.trials:
        study.sampler = sampler(cfg, offset=len(study.trials))
    return study


def sampler(cfg: SweepConfig, offset: int = 0) -> optuna.samplers.BaseSampler:
    """The sweep's sampler, seeded with ``seed + offset`` (a resumed study passes its trials so far, so
    the sampler does not draw the first run's values again)."""
    optuna = import_optuna()
    seed = cfg.seed + offset
    if cfg.sampler == "grid":
        return optuna.samplers.GridSampler(cfg.grid(), seed=seed)
    if cfg.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=cfg.startup_trials)


def pruner(cfg: SweepConfig) -> optuna.pruners.BasePruner:
    optuna = import_optuna()
    p = cfg.pruner
    if p.name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=p.startup_trials, n_warmup_steps=p.warmup_steps)
    if p.name == "threshold":
        return optuna.pruners.ThresholdPruner(lower=p.lower, upper=p.upper, n_warmup_steps=p.warmup_steps)
    return optuna.pruners.NopPruner()


def suggest(trial: optuna.Trial, key: str, spec: ParamSpec) -> Value:
    """The trial's value of one searched key."""
    if spec.type == "categorical":
        return cast(Value, trial.suggest_categorical(key, tuple(spec.choices or ())))
    assert spec.low is not None and spec.high is not None
    if spec.type == "int":
        step = int(spec.step or 1)
        return trial.suggest_int(key, int(spec.low), int(spec.high), step=step, log=spec.log)
    return trial.suggest_float(key, spec.low, spec.high, step=spec.step, log=spec.log)


def trial_dir(cfg: SweepConfig, trial: optuna.Trial) -> Path:
    """``trial-NNN``; a retried trial (its process was killed) reuses the first try's directory."""
    optuna = import_optuna()
    frozen = next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)
    first = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(frozen)
    return Path(cfg.output_dir) / f"trial-{trial.number if first is None else first:03d}"


def pruning_listener(trial: optuna.Trial, stage: str, metric: str) -> Callable[[str, int, dict], None]:
    """Reports ``stage``'s periodic ``metric`` to the trial; raises ``optuna.TrialPruned`` when the
    pruner judges it hopeless (the training loop stops there)."""
    optuna = import_optuna()

    def listen(logged_stage: str, step: int, row: dict[str, Any]) -> None:
        value = row.get(metric)
        if logged_stage != stage or value is None:
            return
        trial.report(float(value), step)
        if trial.should_prune():
            print(f"[sweep] trial {trial.number} pruned at {stage} step {step} ({metric} = {value:.4g})")
            raise optuna.TrialPruned(f"{metric} = {value} at step {step}")

    return listen


def finished(study: optuna.Study) -> int:
    states = (import_optuna().trial.TrialState.COMPLETE, import_optuna().trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=states))


def run_study(cfg: SweepConfig, run_trial: TrialRunner, watch: tuple[str, str]) -> optuna.Study:
    """Run the trials the study still lacks (``cfg.trials`` finished or pruned in all); ``watch`` is the
    (stage, metric of its metrics.jsonl) whose periodic evals go to the pruner."""
    lib = import_optuna()
    study = open_study(cfg)
    total = min(cfg.trials, grid_size(cfg)) if cfg.sampler == "grid" else cfg.trials
    if finished(study):
        print(f"[sweep] study {cfg.study_name!r}: {finished(study)} of {total} trials already done")

    def objective(trial: optuna.Trial) -> float:
        params = {key: suggest(trial, key, spec) for key, spec in cfg.space.items()}
        out = trial_dir(cfg, trial)
        killed = out.name != f"trial-{trial.number:03d}"
        retry = f" (a retry of the killed {out.name})" if killed else ""
        print(
            f"[sweep] trial {trial.number}{retry} → {out}: "
            + ", ".join(f"{k}={v}" for k, v in params.items())
        )
        with eval_listener(pruning_listener(trial, *watch)):
            value = run_trial(params, out)
        print(f"[sweep] trial {trial.number}: {cfg.objective.metric} = {value:.4g}")
        return value

    done_states = (lib.trial.TrialState.COMPLETE, lib.trial.TrialState.PRUNED)
    stop = lib.study.MaxTrialsCallback(total, states=done_states)
    for _ in range(3):  # a round may end short when it retried a killed trial of an earlier run
        left = total - finished(study)
        if left <= 0:
            break
        study.optimize(objective, n_trials=left, callbacks=[stop], catch=())
    return study


def grid_size(cfg: SweepConfig) -> int:
    size = 1
    for values in cfg.grid().values():
        size *= len(values)
    return size


def metric_of(run_dir: Path, metric: str) -> float:
    """The last value of ``metric`` in a run's ``metrics.jsonl`` (or its ``eval_results.json``)."""
    results = run_dir / "eval_results.json"
    if results.exists():
        tasks = json.loads(results.read_text())["tasks"]
        for scores in tasks.values():
            if metric in scores:
                return float(scores[metric])
    rows = [r for r in read_jsonl(run_dir / "metrics.jsonl") if r.get(metric) is not None]
    if not rows:
        raise UserError(f"objective metric {metric!r}: {run_dir} logged no value of it")
    return float(rows[-1][metric])


def summary_metric(run_dir: Path, stage: str, metric: str) -> float:
    """A pipeline's ``summary.json``: ``metric`` of ``stage``'s held-out eval."""
    summary = json.loads((run_dir / "summary.json").read_text())
    scores = summary["stages"].get(stage, {}).get("eval", {})
    if metric not in scores:
        raise UserError(f"objective metric {metric!r}: the {stage} eval in {run_dir} has {sorted(scores)}")
    return float(scores[metric])
