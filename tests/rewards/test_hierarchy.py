import math

import pytest
from r1rl.rewards import RewardHierarchy, Tier, resolve

from r1rl.config import RewardsConfig, TierConfig
from r1rl.errors import UserError


def const(values):
    return lambda prompts, completions, **kw: list(values)


def test_gated_combination_by_hand():
    tiers = [
        Tier("syntax", const([1.0, 0.0, 1.0]), threshold=1.0),
        Tier("logic", const([0.5, 1.0, 1.0]), threshold=1.0),
        Tier("task", const([1.0, 1.0, 0.0]), threshold=1.0),
    ]
    res = RewardHierarchy(tiers, "gated")(["p"] * 3, ["c"] * 3)
    # sample 0: syntax passes, logic 0.5 counts but fails its gate, task gated off -> (1 + .5)/3
    # sample 1: syntax fails -> only syntax (0) counts -> 0
    # sample 2: syntax, logic pass; task 0 -> 2/3
    assert res.rewards == pytest.approx([1.5 / 3, 0.0, 2 / 3])
    m = res.metrics()
    assert m["reward/tier/syntax/pass_rate"] == pytest.approx(2 / 3)
    assert m["reward/tier/logic/pass_rate"] == pytest.approx(2 / 3)
    assert m["reward/tier/task/pass_rate"] == pytest.approx(2 / 3)


def test_weighted_combination_and_not_applicable():
    tiers = [Tier("a", const([1.0, None]), weight=1.0), Tier("b", const([0.0, 0.5]), weight=3.0)]
    res = RewardHierarchy(tiers, "weighted")(["p"] * 2, ["c"] * 2)
    assert res.rewards == pytest.approx([1 / 4, 0.5])
    assert res.passed["a"] == [True, True]


def test_errors_are_counted_not_silent():
    def boom(prompts, completions, **kw):
        raise RuntimeError("bad")

    tiers = [
        Tier("raises", boom),
        Tier("short", const([1.0])),
        Tier("nan", const([math.nan, 1.0])),
    ]
    res = RewardHierarchy(tiers, "weighted")(["p"] * 2, ["c"] * 2)
    assert res.errors == {"raises": 2, "short": 2, "nan": 1}
    m = res.metrics()
    assert m["reward/tier/raises/errors"] == 2 and m["reward/tier/nan/errors"] == 1
    assert all(math.isfinite(r) for r in res.rewards)


def test_resolve_by_name_module_and_file(tmp_path):
    assert resolve("arithmetic_task").__name__ == "arithmetic_task"
    assert resolve("r1rl.rewards.arithmetic:arithmetic_logic").__name__ == "arithmetic_logic"
    f = tmp_path / "my_reward.py"
    f.write_text(
        "def short(prompts, completions, **kw):\n    return [float(len(c) < 5) for c in completions]\n"
    )
    fn = resolve(f"{f}:short")
    assert fn(["p"], ["abc"]) == [1.0]


@pytest.mark.parametrize(
    "spec,msg",
    [
        ("arithmetic_tsak", "did you mean 'arithmetic_task'"),
        ("no_such_pkg.mod:fn", "cannot import 'no_such_pkg.mod'"),
        ("r1rl.rewards.arithmetic:missing", "has no attribute 'missing'"),
        ("/no/such/file.py:fn", "file not found"),
        ("r1rl.rewards.arithmetic:parse", "expected signature"),
    ],
)
def test_resolve_errors(spec, msg):
    with pytest.raises(UserError, match=msg):
        resolve(spec)


def test_hierarchy_from_config_and_trl_style_call():
    cfg = RewardsConfig(tiers=[TierConfig(name="syntax", reward="arithmetic_syntax")])
    fn = RewardHierarchy.from_config(cfg).as_reward_function()
    assert fn(["1+2="], ["<think>1+2=3</think><answer>3</answer>", "x"]) == [1.0, 0.0]
