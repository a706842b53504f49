"""``r1rl sweep``: trials as run directories, a resumed study, one-line errors, pruning from the eval."""

import time
from pathlib import Path

import pytest
import yaml

from r1rl.errors import UserError
from r1rl.run.cli import main
from r1rl.strict import validate
from r1rl.tune.space import ParamSpec, SweepConfig

pytest.importorskip("optuna")
MICRO_SFT = Path(__file__).parents[2] / "recipes" / "configs" / "micro" / "sft.yaml"


def write_sweep(tmp_path, pretrained, **over):
    sweep = {
        "stage": "sft",
        "config": str(MICRO_SFT),
        "overrides": [f"model_path={pretrained}", "steps=2", "log.eval_every=1", "log.eval_examples=4"],
        "space": {
            "optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
            "lora.r": {"choices": [2, 4]},
        },
        "trials": 2,
        "pruner": {"name": "none"},
        "output_dir": str(tmp_path / "sweep"),
        **over,
    }  # fmt: skip
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def test_a_sweep_runs_its_trials_as_run_directories_and_a_rerun_resumes_the_study(
    tmp_path, micro_pretrained, capsys
):
    path = write_sweep(tmp_path, micro_pretrained)
    assert main(["sweep", str(path)]) == 0
    out = tmp_path / "sweep"
    for n in (0, 1):
        trial = out / f"trial-{n:03d}"
        assert (trial / "final").is_dir() and (trial / "config.yaml").exists()
        assert '"eval/accuracy"' in (trial / "metrics.jsonl").read_text()
    table = (out / "results.md").read_text()
    assert table.count("| complete |") == 2 and "`optim.lr`" in table and "`lora.r`" in table
    assert {p.name for p in (out / "plots").iterdir()} >= {
        "optimization_history.png",
        "param_importances.png",
    }
    first = (out / "trial-000" / "metrics.jsonl").stat().st_mtime_ns
    capsys.readouterr()

    assert main(["sweep", str(path), "trials=3"]) == 0  # the stored study goes on: one more trial
    printed = capsys.readouterr().out
    assert "2 of 3 trials already done" in printed and "trial 2 →" in printed and "trial 0 →" not in printed
    assert (out / "trial-002" / "final").is_dir()
    assert (out / "trial-000" / "metrics.jsonl").stat().st_mtime_ns == first
    assert (out / "results.md").read_text().count("| complete |") == 3


def test_a_hopeless_trial_is_pruned_at_its_periodic_eval(tmp_path, micro_pretrained):
    pruner = {"name": "threshold", "lower": 0.99}  # no micro model solves 99%: every trial is hopeless
    path = write_sweep(tmp_path, micro_pretrained, trials=1, pruner=pruner)
    assert main(["sweep", str(path)]) == 0
    trial = tmp_path / "sweep" / "trial-000"
    assert not (trial / "final").exists()  # stopped after its first eval, at step 1 of 2
    assert [r for r in (trial / "metrics.jsonl").read_text().splitlines() if "eval/accuracy" in r]
    assert "| pruned |" in (tmp_path / "sweep" / "results.md").read_text()


@pytest.mark.parametrize(
    "over, expected",
    [
        (
            {"space": {"optim.lrr": {"low": 1e-4, "high": 1e-2}}},
            "unknown config key 'optim.lrr' (did you mean 'lr'",
        ),
        ({"stage": "sfft"}, "unknown stage 'sfft'"),
        ({"overrides": ["model_path=x"]}, "set log.eval_every > 0"),
        ({"sampler": "grid"}, "space.optim.lr: the grid sampler needs choices or a step"),
        ({"space": {"steps": 5}}, "space.steps"),
        ({"sampler": "bayes"}, "bad value for 'sampler'"),
        ({"config": "missing.yaml"}, "config file not found: missing.yaml"),
    ],
)
def test_bad_sweeps_are_one_line_before_any_trial(tmp_path, capsys, over, expected):
    path = write_sweep(tmp_path, "unused", **over)
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("r1rl: error: ") and err.count("\n") == 1 and expected in err, err
    assert not (tmp_path / "sweep" / "trial-000").exists()


def test_a_space_key_is_a_range_or_choices_and_the_grid_lists_every_value():
    assert ParamSpec(choices=[1, 2]).type == "categorical"
    assert ParamSpec(type="int", low=10, high=30, step=10).grid() == [10, 20, 30]
    assert ParamSpec(low=0.1, high=0.3, step=0.1).grid() == pytest.approx([0.1, 0.2, 0.3])
    for bad in ({"low": 2, "high": 1}, {"type": "float", "choices": [1]}, {"low": 0, "high": 1, "log": True}):
        with pytest.raises(UserError):
            validate(SweepConfig, {"stage": "sft", "config": "c", "output_dir": "o", "space": {"x": bad}})


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # the test's own ask() outside optimize
def test_a_trial_whose_process_died_is_retried_with_its_values_in_its_own_run_directory(
    tmp_path, micro_pretrained, monkeypatch, capsys
):
    from r1rl.tune import study as study_module

    monkeypatch.setattr(study_module, "GRACE_S", 1)
    path = write_sweep(tmp_path, micro_pretrained, trials=1)
    cfg = validate(SweepConfig, yaml.safe_load(path.read_text()))
    study = study_module.open_study(cfg)
    dead = study.ask()  # what a killed sweep leaves: a running trial whose heartbeat stopped
    dead.suggest_float("optim.lr", 1e-4, 1e-2, log=True)
    dead.suggest_categorical("lora.r", [2, 4])
    study._storage.record_heartbeat(dead._trial_id)
    time.sleep(2.5)  # SQLite keeps whole seconds: the heartbeat is then over GRACE_S old

    assert main(["sweep", str(path)]) == 0
    assert "trial 1 (a retry of the killed trial-000)" in capsys.readouterr().out
    assert (tmp_path / "sweep" / "trial-000" / "final").is_dir()
    assert not (tmp_path / "sweep" / "trial-001").exists()
    table = (tmp_path / "sweep" / "results.md").read_text()
    assert "| fail |" in table and "| complete (retry of 000) |" in table
