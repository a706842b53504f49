import math

import pytest
from r1rl.rewards import RewardError, RewardHierarchy, Tier, resolve

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
        Tier("nan", const([math.nan, 1.0])),
    ]
    res = RewardHierarchy(tiers, "weighted")(["p"] * 2, ["c"] * 2)
    assert res.errors == {"raises": 2, "nan": 1}
    first = res.failures["raises"]
    assert first.detail == "raised RuntimeError: bad" and "boom" in first.trace
    m = res.metrics()
    assert m["reward/tier/raises/errors"] == 2 and m["reward/tier/nan/errors"] == 1
    assert all(math.isfinite(r) for r in res.rewards)


def test_resolve_by_name_module_and_file(tmp_path):
    assert resolve("arithmetic_task").__name__ == "arithmetic_task"
    assert resolve("r1rl.tasks.arithmetic:arithmetic_logic").__name__ == "arithmetic_logic"
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
        ("r1rl.tasks.arithmetic:missing", "has no attribute 'missing'"),
        ("/no/such/file.py:fn", "file not found"),
        ("r1rl.tasks.arithmetic:parse", "expected signature"),
    ],
)
def test_resolve_errors(spec, msg):
    with pytest.raises(UserError, match=msg):
        resolve(spec)


def test_hierarchy_from_config_and_trl_style_call():
    cfg = RewardsConfig(tiers=[TierConfig(name="syntax", reward="arithmetic_syntax")])
    fn = RewardHierarchy.from_config(cfg).as_reward_function()
    assert fn(["1+2="], ["<think>1+2=3</think><answer>3</answer>", "x"]) == [1.0, 0.0]


# --- typed outcomes and on_error -----------------------------------------------------------


def boom(prompts, completions, **kw):
    raise RuntimeError("judge crashed\nwith a traceback-like second line")


def test_outcomes_are_counted_per_tier_and_logged_as_metrics():
    from r1rl.rewards import reward_error, reward_timeout

    tiers = [
        Tier("a", const([1.0, None, reward_error("bad json"), reward_timeout("judge"), 0.5])),
        Tier("b", const([1.0] * 5)),
    ]
    res = RewardHierarchy(tiers, "weighted")(["p"] * 5, ["c"] * 5)
    assert (res.errors, res.timeouts, res.not_applicable) == ({"a": 1}, {"a": 1}, {"a": 1})
    assert res.scores["a"] == [1.0, None, 0.0, 0.0, 0.5]  # on_error=zero (the default)
    m = res.metrics()
    assert (m["reward/tier/a/errors"], m["reward/tier/a/timeouts"], m["reward/tier/a/not_applicable"]) == (
        1,
        1,
        1,
    )
    assert (m["reward/tier/b/errors"], m["reward/tier/b/timeouts"], m["reward/tier/b/not_applicable"]) == (
        0,
        0,
        0,
    )


def test_on_error_zero_skip_raise():
    values = [1.0, math.inf, 0.0]
    zero = RewardHierarchy([Tier("t", const(values), on_error="zero")])(["p"] * 3, ["c"] * 3)
    skip = RewardHierarchy([Tier("t", const(values), on_error="skip")])(["p"] * 3, ["c"] * 3)
    assert zero.scores["t"] == [1.0, 0.0, 0.0] and zero.passed["t"] == [True, False, False]
    # skip = not applicable: the sample passes the gate and leaves the weight sum
    assert skip.scores["t"] == [1.0, None, 0.0] and skip.passed["t"] == [True, True, False]
    assert zero.errors == skip.errors == {"t": 1}
    with pytest.raises(RewardError) as e:
        RewardHierarchy([Tier("judge", boom, on_error="raise")])(["p"] * 2, ["c"] * 2)
    msg = str(e.value)
    assert "\n" not in msg
    assert "reward 'boom' in tier 'judge' failed on 2 of 2 samples" in msg
    assert "RuntimeError: judge crashed with a traceback-like second line" in msg


def test_timeout_s_bounds_a_call():
    import time

    def slow(prompts, completions, **kw):
        time.sleep(2)
        return [1.0] * len(completions)

    t0 = time.perf_counter()
    res = RewardHierarchy([Tier("slow", slow, timeout_s=0.1), Tier("fast", const([1.0, 1.0]))], "weighted")(
        ["p"] * 2, ["c"] * 2
    )
    assert time.perf_counter() - t0 < 1.5
    assert res.timeouts == {"slow": 2} and res.scores["slow"] == [0.0, 0.0]
    assert res.rewards == [0.5, 0.5]


def test_on_error_raise_for_a_timeout_names_it():
    def late(prompts, completions, **kw):
        raise TimeoutError("judge did not answer in 30 s")

    with pytest.raises(RewardError, match=r"failed on 1 of 1 samples \(timeout: timed out: TimeoutError"):
        RewardHierarchy([Tier("judge", late, on_error="raise")])(["p"], ["c"])


def test_missing_column_is_an_error_that_names_it():
    res = RewardHierarchy([Tier("task", resolve("arithmetic_task"))])(["1+2="], ["<answer>3</answer>"])
    assert res.errors == {"task": 1}
    with pytest.raises(RewardError, match=r"needs column 'answer' \(columns given: none\)"):
        RewardHierarchy([Tier("task", resolve("arithmetic_task"), on_error="raise")])(["1+2="], ["x"])


def test_tier_options_are_checked():
    with pytest.raises(ValueError, match="on_error must be one of"):
        Tier("t", const([1.0]), on_error="ignore")
    with pytest.raises(ValueError, match="normalize must be one of"):
        Tier("t", const([1.0]), normalize="zscore")
    with pytest.raises(ValueError, match="tier names must be unique"):
        RewardHierarchy([Tier("t", const([1.0])), Tier("t", const([1.0]))])
    with pytest.raises(ValueError, match="unknown hierarchy mode 'gatd'"):
        RewardHierarchy([Tier("t", const([1.0]))], "gatd")
    with pytest.raises(ValueError, match="only mode 'scheduled' uses"):
        RewardHierarchy([Tier("t", const([1.0]), weight_end=2.0)], "weighted")


# --- modes --------------------------------------------------------------------------------


def test_gated_equals_weighted_when_every_tier_passes():
    tiers = [Tier("a", const([1.0, 1.0]), weight=2.0), Tier("b", const([0.7, 0.2]), weight=1.0)]
    gated = RewardHierarchy(tiers, "gated")(["p"] * 2, ["c"] * 2).rewards
    weighted = RewardHierarchy(tiers, "weighted")(["p"] * 2, ["c"] * 2).rewards
    assert gated == pytest.approx(weighted)
    assert gated == pytest.approx([(2 + 0.7) / 3, (2 + 0.2) / 3])


def test_scheduled_weights_interpolate_linearly_by_hand():
    tiers = [
        Tier("syntax", const([1.0]), weight=1.0, weight_end=0.0),
        Tier("task", const([0.0]), weight=0.0, weight_end=3.0),
        Tier("const", const([0.5]), weight=2.0),  # no weight_end: constant
    ]
    h = RewardHierarchy(tiers, "scheduled", schedule_start=10, schedule_end=20)
    assert h.weights(0) == h.weights(10) == {"syntax": 1.0, "task": 0.0, "const": 2.0}
    assert h.weights(15) == {"syntax": 0.5, "task": 1.5, "const": 2.0}
    assert h.weights(20) == h.weights(99) == {"syntax": 0.0, "task": 3.0, "const": 2.0}
    h.set_step(15)
    res = h(["p"], ["c"])
    assert res.rewards == pytest.approx([(0.5 * 1.0 + 1.5 * 0.0 + 2.0 * 0.5) / 4.0])
    assert res.metrics()["reward/tier/task/weight"] == 1.5
    with pytest.raises(ValueError, match="schedule_end > schedule_start"):
        RewardHierarchy(tiers, "scheduled")


def test_batch_normalisation_whitens_each_tier_but_not_its_gate():
    tiers = [Tier("a", const([1.0, 0.0, None, 0.5]), threshold=0.5, normalize="batch")]
    res = RewardHierarchy(tiers, "weighted")(["p"] * 4, ["c"] * 4)
    mean, std = 0.5, math.sqrt(((0.5**2) * 2) / 3)  # over the 3 applicable scores
    assert res.rewards == pytest.approx([(1 - mean) / std, (0 - mean) / std, 0.0, 0.0], abs=1e-6)
    assert res.passed["a"] == [True, False, True, True]  # raw scores against the threshold
    assert res.scores["a"] == [1.0, 0.0, None, 0.5]


def test_running_normalisation_matches_statistics_of_all_batches():
    batches = [[1.0, 0.0, 1.0], [0.0, 0.0], [1.0, 0.5, 0.25, 0.0]]
    it = iter(batches)
    tier = Tier("a", lambda p, c, **kw: next(it), normalize="running")
    h = RewardHierarchy([tier], "weighted")
    seen = []
    for b in batches:
        res = h(["p"] * len(b), ["c"] * len(b))
        seen += b
        mean = sum(seen) / len(seen)
        std = math.sqrt(sum((x - mean) ** 2 for x in seen) / len(seen))
        assert res.rewards == pytest.approx([(x - mean) / (std + 1e-8) for x in b])
    assert h.running["a"].count == len(seen)
    state = h.state_dict()
    h2 = RewardHierarchy([Tier("a", const([1.0]), normalize="running")], "weighted")
    h2.load_state_dict(state)
    assert (h2.running["a"].mean, h2.running["a"].std) == pytest.approx(
        (h.running["a"].mean, h.running["a"].std)
    )
    with h2.frozen():
        h2(["p"], ["c"])
    assert h2.running["a"].count == len(seen)  # frozen: held-out scoring leaves the statistics alone


def test_as_reward_function_follows_trainer_state_and_logs_metrics():
    class State:
        global_step = 7

    logged = {}
    h = RewardHierarchy(
        [Tier("a", const([1.0]), weight=0.0, weight_end=1.0), Tier("b", const([0.0]))],
        "scheduled",
        schedule_end=10,
    )
    out = h.as_reward_function()(["p"], ["c"], trainer_state=State(), log_metric=logged.__setitem__)
    assert h.step == 7 and out == pytest.approx([0.7 / 1.7])
    assert logged["reward/tier/a/weight"] == pytest.approx(0.7) and "reward/tier/b/errors" in logged


# --- configuration and resolution ------------------------------------------------------------


def test_config_carries_the_new_options():
    cfg = RewardsConfig(
        mode="scheduled", schedule_end=50, on_error="skip", normalize="batch",
        tiers=[
            TierConfig(name="syntax", reward="math_syntax", weight=1.0, weight_end=0.2),
            TierConfig(name="task", reward="math_task", on_error="raise", normalize="none", timeout_s=3),
        ],
    )  # fmt: skip
    h = RewardHierarchy.from_config(cfg)
    (syntax, task) = h.tiers
    assert (syntax.on_error, syntax.normalize, syntax.weight_end) == ("skip", "batch", 0.2)
    assert (task.on_error, task.normalize, task.timeout_s) == ("raise", "none", 3)
    assert h.mode == "scheduled" and h.schedule_end == 50


@pytest.mark.parametrize(
    "rewards,msg",
    [
        ({"mode": "scheduled"}, "mode scheduled needs schedule_end > schedule_start"),
        ({"tiers": [{"name": "a", "reward": "math_task", "weight_end": 1}]}, "weight_end is set but mode is"),
        ({"tiers": [{"name": "a", "reward": "x"}, {"name": "a", "reward": "y"}]}, "repeated: a"),
        ({"tiers": []}, "rewards.tiers is empty"),
        ({"on_error": "ignore"}, "bad value for 'rewards.on_error'"),
        (
            {"tiers": [{"name": "a", "reward": "x", "on_eror": "zero"}]},
            "unknown config key 'rewards.tiers.0.on_eror'",
        ),
    ],
)
def test_bad_rewards_config_is_one_line_user_error(rewards, msg):
    from r1rl.config import PPOConfig, validate

    with pytest.raises(UserError, match=msg) as e:
        validate(PPOConfig, {"output_dir": "x", "model_path": "m", "rewards": rewards})
    assert "\n" not in str(e.value)


def test_from_config_names_the_tier_of_a_bad_reward():
    cfg = RewardsConfig(
        tiers=[TierConfig(name="t0", reward="math_syntax"), TierConfig(name="t1", reward="math_tsk")]
    )
    with pytest.raises(
        UserError,
        match=r"rewards.tiers\[1\] \(t1\): unknown reward 'math_tsk' \(did you mean 'math_task'\?\)",
    ):
        RewardHierarchy.from_config(cfg)


def test_resolve_wrong_signature_and_attribute_typo(tmp_path):
    f = tmp_path / "judges.py"
    f.write_text(
        "def two_args(prompts, completions):\n    return []\n"
        "def length_reward(prompts, completions, **kw):\n    return [0.0] * len(completions)\n"
        "THRESHOLD = 3\n"
    )
    with pytest.raises(
        UserError, match=r"expected signature fn\(prompts, completions, \*\*columns\), got two_args"
    ):
        resolve(f"{f}:two_args")
    with pytest.raises(
        UserError, match="has no attribute 'length_rewrd' \\(did you mean 'length_reward'\\?\\)"
    ):
        resolve(f"{f}:length_rewrd")
    with pytest.raises(UserError, match="'THRESHOLD' is a int, not a function"):
        resolve(f"{f}:THRESHOLD")


def test_register_rejects_duplicates_and_bad_signatures():
    from r1rl.rewards import register

    with pytest.raises(ValueError, match="'math_task' is already registered"):
        register("math_task", tier="task")(lambda prompts, completions, **kw: [])
    with pytest.raises(UserError, match="expected signature"):
        register("no_kwargs_reward", tier="task")(lambda prompts, completions: [])


def test_builtin_suites_are_registered_with_their_tiers():
    from r1rl.rewards import registered

    reg = registered()
    for suite in ("arithmetic", "math", "code", "extraction"):
        for tier in ("syntax", "logic", "task"):
            assert reg[f"{suite}_{tier}"].tier == tier
    h = RewardHierarchy.from_rewards(["math_syntax", "math_logic", "math_task"], mode="weighted")
    assert h.tier_names == ["syntax", "logic", "task"]


def test_gathered_statistics_span_every_process():
    """With ``gather`` (data-parallel training), batch and running statistics cover the other
    processes' scores too; a frozen (held-out) call uses only its own and never gathers."""
    other = [0.0, 0.0, 1.0]  # what the other process scored this step
    calls = []

    def gather(values):
        calls.append(list(values))
        return list(values) + other

    for mode in ("batch", "running"):
        h = RewardHierarchy([Tier("a", const([1.0, 0.5, None]), normalize=mode)], "weighted")
        h.gather = gather
        res = h(["p"] * 3, ["c"] * 3)
        pooled = [1.0, 0.5, *other]
        mean = sum(pooled) / len(pooled)
        std = math.sqrt(sum((x - mean) ** 2 for x in pooled) / len(pooled))
        assert res.rewards == pytest.approx([(1.0 - mean) / (std + 1e-8), (0.5 - mean) / (std + 1e-8), 0.0])
        if mode == "running":
            assert h.running["a"].count == 5
    assert calls == [[1.0, 0.5], [1.0, 0.5]]
    with h.frozen():
        h(["p"] * 3, ["c"] * 3)
    assert len(calls) == 2 and h.running["a"].count == 5


def test_a_broken_contract_stops_on_the_first_call_naming_tier_and_function():
    from r1rl.rewards import RewardContractError

    def one_too_few(prompts, completions, **kw):
        return [1.0] * (len(completions) - 1)

    h = RewardHierarchy([Tier("syntax", const([1.0, 1.0])), Tier("task", one_too_few, on_error="skip")])
    msg = r"^reward 'one_too_few' in tier 'task' returned 1 scores for 2 completions"
    with pytest.raises(RewardContractError, match=msg):
        h(["p"] * 2, ["c"] * 2)
