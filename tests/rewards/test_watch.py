"""A tier whose every sample fails, step after step, stops the run; one that fails on some does not."""

import pytest
from r1rl.rewards import RewardHierarchy, Tier, reward_error
from r1rl.rewards.watch import FailureWatch, check_eval_failures, failed_samples

from r1rl.config import RewardsConfig, TierConfig
from r1rl.errors import RewardFailedError, UserError


def broken(prompts, completions, **kw):
    return [float(c) for c in completions]  # ValueError on any completion that is not a number


def parse(prompts, completions, **kw):
    return [float(c) if c.isdigit() else reward_error(f"not a number: {c}") for c in completions]


def steps(h, watch, batches):
    for i, completions in enumerate(batches):
        watch.observe(h(["p"] * len(completions), completions))
        yield i


def test_every_sample_failing_for_max_failed_steps_stops_with_the_first_exception():
    h = RewardHierarchy([Tier("format", lambda p, c, **kw: [1.0] * len(c)), Tier("task", broken)])
    watch = FailureWatch(h)
    assert watch.max_failed_steps == 3  # the default, as rewards.max_failed_steps
    done = []
    with pytest.raises(RewardFailedError) as e:
        done.extend(steps(h, watch, [["x1", "x2"], ["y"], ["z1", "z2"], ["never"]]))
    assert done == [0, 1]  # the third all-failed step raises
    msg = str(e.value)
    assert msg == (
        "reward 'broken' (tier 'task') failed on every sample for 3 steps in a row "
        "(rewards.max_failed_steps=3); first: raised ValueError: could not convert string to float: 'x1'"
    )
    assert isinstance(e.value, UserError)
    assert "Traceback" in e.value.trace and "float(c)" in e.value.trace and e.value.trace.startswith(msg)


def test_a_tier_failing_on_some_samples_keeps_training_and_a_good_step_resets_the_streak():
    h = RewardHierarchy([Tier("task", parse)], max_failed_steps=2)
    watch = FailureWatch(h)
    batches = [["1", "x"], ["x", "y"], ["2"], ["x"], ["1", "x"], ["3", "x"]] * 3
    assert list(steps(h, watch, batches)) == list(range(len(batches)))
    assert watch.streak == {"task": 0}
    with pytest.raises(RewardFailedError, match="for 2 steps in a row"):
        list(steps(h, watch, [["a"], ["b"]]))


def test_returned_failures_and_timeouts_count_and_every_rank_decides_alike():
    def judge(prompts, completions, **kw):
        return [reward_error("no key")] * len(completions)

    h = RewardHierarchy([Tier("judge", judge)], max_failed_steps=1)
    # under a launcher the counts are summed over ranks: another rank scored its samples
    FailureWatch(h).observe(h(["p"], ["c"]), lambda counts: {**counts, "n": counts["n"] + 4})
    with pytest.raises(RewardFailedError, match=r"first: sample 0: no key$"):
        FailureWatch(h).observe(h(["p"], ["c"]))


def test_streaks_survive_a_checkpoint():
    h = RewardHierarchy([Tier("task", broken)], max_failed_steps=2)
    watch = FailureWatch(h)
    watch.observe(h(["p"], ["x"]))
    resumed = FailureWatch(h)
    resumed.load_state_dict(watch.state_dict())
    with pytest.raises(RewardFailedError):
        resumed.observe(h(["p"], ["y"]))


def test_max_failed_steps_comes_from_the_config():
    cfg = RewardsConfig(tiers=[TierConfig(name="task", reward="math_task")], max_failed_steps=5)
    assert FailureWatch(RewardHierarchy.from_config(cfg)).max_failed_steps == 5
    with pytest.raises(ValueError):
        RewardsConfig(max_failed_steps=0)


def test_an_eval_is_one_step():
    h = RewardHierarchy([Tier("task", parse)])
    res = h(["p"] * 3, ["1", "x", "2"])
    check_eval_failures(res, h)  # some samples failed: scored, counted
    assert failed_samples(res) == 1
    with pytest.raises(RewardFailedError, match=r"on every one of the 2 held-out samples; first: sample 0"):
        check_eval_failures(h(["p"] * 2, ["x", "y"]), h)


def test_the_traceback_goes_to_the_run_directory(tmp_path):
    h = RewardHierarchy([Tier("task", broken)], max_failed_steps=1)
    with pytest.raises(RewardFailedError) as e:
        FailureWatch(h).observe(h(["p"], ["x"]))
    err = e.value.written_to(tmp_path / "run")
    log = (tmp_path / "run" / "reward_errors.log").read_text()
    assert str(err) == f"{e.value}; traceback in {tmp_path / 'run' / 'reward_errors.log'}"
    assert "Traceback (most recent call last)" in log and "ValueError" in log
