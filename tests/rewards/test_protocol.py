"""Every reward call ends, per sample, in one typed outcome; nothing is silently 0 or 1."""

import math
import pickle

import numpy as np
import pytest
from r1rl.rewards.protocol import (
    Failure,
    Outcome,
    RewardContractError,
    RewardError,
    RewardTimeout,
    as_text,
    call_reward,
    count_outcomes,
    required_columns,
    resolve_outcomes,
    reward_error,
    reward_timeout,
)

from r1rl.errors import UserError


def returning(value):
    return lambda prompts, completions, **kw: value


def kinds(outcomes):
    return [o.kind for o in outcomes]


@pytest.mark.parametrize(
    "values,expected",
    [
        ([1.0, 0, True, np.float32(0.5), np.int64(2)], ["score"] * 5),
        ([None, reward_error("x"), reward_timeout("y")], ["not_applicable", "error", "timeout"]),
        ([math.nan, math.inf, -math.inf], ["error"] * 3),
        ([np.array(0.5), np.array([2.0])[0]], ["score"] * 2),  # 0-d arrays and tensors, as TRL takes them
    ],
)
def test_each_value_is_classified(values, expected):
    out = call_reward(returning(values), ["p"] * len(values), ["c"] * len(values))
    assert kinds(out) == expected
    assert [o.value for o in out if o.kind == "score"] == [float(v) for v in values if expected[0] == "score"]


@pytest.mark.parametrize(
    "result,detail",
    [
        ([1.0, 0.0], "returned 2 scores for 3 completions"),
        ([1.0] * 4, "returned 4 scores for 3 completions"),
        (None, "returned a NoneType"),
        (0.5, "returned a float"),
        ("abc", "returned a str"),  # a string of the right length is not three scores
        ([1.0, "1.0", 0.0], "returned '1.0' for sample 1"),
        ([1.0, 0.0, [1.0]], "returned [1.0] for sample 2"),
        ([{"a": 1}, 0.0, 1.0], "returned {'a': 1} for sample 0"),
    ],
)
def test_a_broken_contract_raises_one_line_naming_the_function(result, detail):
    def judge(prompts, completions, **kw):
        return result

    with pytest.raises(RewardContractError) as e:
        call_reward(judge, ["p"] * 3, ["c"] * 3)
    msg = str(e.value)
    assert msg.startswith(f"reward 'judge' {detail}") and "\n" not in msg
    assert msg.endswith("a reward function returns a list of one score (a number or None) per completion")
    assert issubclass(RewardContractError, UserError)


def test_an_exception_keeps_its_traceback_for_the_log():
    def judge(prompts, completions, **kw):
        return {}["answer"]

    (out,) = call_reward(judge, ["p"], ["c"])
    assert out.detail == "raised KeyError: 'answer'"
    assert "Traceback" in out.trace and 'return {}["answer"]' in out.trace and "judge" in out.trace


def test_exceptions_and_timeouts_are_outcomes_not_crashes():
    def raises(prompts, completions, **kw):
        raise KeyError("answer")

    def times_out(prompts, completions, **kw):
        raise RewardTimeout("judge")

    assert kinds(call_reward(raises, ["p"], ["c"])) == ["error"]
    assert call_reward(raises, ["p"], ["c"])[0].detail == "raised KeyError: 'answer'"
    assert kinds(call_reward(times_out, ["p"] * 2, ["c"] * 2)) == ["timeout", "timeout"]


def test_keyboard_interrupt_is_not_swallowed():
    def interrupted(prompts, completions, **kw):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        call_reward(interrupted, ["p"], ["c"])


def test_missing_required_column_is_named_before_the_call():
    calls = []

    def task(prompts, completions, answer, **kw):
        calls.append(1)
        return [1.0] * len(completions)

    out = call_reward(task, ["p"], ["c"], {"reference": [1]})
    assert calls == [] and out[0].detail == "needs column 'answer' (columns given: reference)"
    assert required_columns(task) == ["answer"]


def test_failure_is_a_nan_float_that_survives_pickling():
    f = reward_error("bad json")
    assert isinstance(f, float) and math.isnan(f)
    g = pickle.loads(pickle.dumps(f))
    assert isinstance(g, Failure) and (g.kind, g.detail) == ("error", "bad json")
    with pytest.raises(ValueError, match="'error' or 'timeout'"):
        Failure("oops")


def test_resolve_outcomes_policies():
    outs = [Outcome("score", 1.0), Outcome("not_applicable"), Outcome("timeout", None, "slow")]
    assert resolve_outcomes(outs, "zero") == [1.0, None, 0.0]
    assert resolve_outcomes(outs, "skip") == [1.0, None, None]
    with pytest.raises(RewardError, match=r"^judge failed on 1 of 3 samples \(timeout: slow\); set on_error"):
        resolve_outcomes(outs, "raise", "judge")
    assert count_outcomes(outs) == {"score": 1, "not_applicable": 1, "error": 0, "timeout": 1}


def test_as_text_reads_conversations():
    assert as_text("x") == "x"
    assert as_text([{"role": "assistant", "content": "<answer>3</answer>"}]) == "<answer>3</answer>"
    assert as_text(None) == ""
