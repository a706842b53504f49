"""Difficulty scores, stage assignment, the stage schedule (by step and by plateau), the sampler."""

import numpy as np
import pytest

from r1rl.data.curriculum import (
    CurriculumSampler,
    StageSchedule,
    assign_stages,
    difficulty_scores,
    random_order,
)
from r1rl.data.scoring import CharNGramScorer
from r1rl.data.sources import ArithmeticSource, Document
from r1rl.errors import UserError


def test_difficulty_kinds():
    docs = [
        Document("abc", "s", {"operands": 3, "digits": 2}),
        Document("a", "s", {"operands": 2, "digits": 1}),
    ]
    assert difficulty_scores(docs, "length").tolist() == [3, 1]
    assert difficulty_scores(docs, "operands").tolist() == [3.2, 2.1]
    scorer = CharNGramScorer.fit(["aaaa"] * 5, n=2)
    ppl = difficulty_scores([Document("aaaa", "s"), Document("zzzz", "s")], "perplexity", scorer=scorer)
    assert ppl[0] < ppl[1]
    with pytest.raises(UserError, match="did you mean 'length'"):
        difficulty_scores(docs, "lenght")
    with pytest.raises(UserError, match="no meta\\['operands'\\]"):
        difficulty_scores([Document("x", "web")], "operands")


def test_stages_follow_difficulty_and_keep_ties_together():
    assert assign_stages(np.array([5.0, 1, 3, 2, 6, 4])).tolist() == [2, 0, 1, 0, 2, 1]
    # discrete scores: equal scores never straddle a boundary
    scores = np.array([2, 2, 2, 3, 3, 4, 4, 5, 5, 5])
    stages = assign_stages(scores)
    for v in np.unique(scores):
        assert len(set(stages[scores == v])) == 1
    assert (np.diff(stages[np.argsort(scores, kind="stable")]) >= 0).all()
    assert assign_stages(np.array([1.0, 5, 9]), boundaries=[4, 8]).tolist() == [0, 1, 2]


def test_arithmetic_stages_order_by_operands():
    docs = list(ArithmeticSource(600, min_operands=2, max_operands=5, digits=2, seed=0))
    stages = assign_stages(difficulty_scores(docs, "operands"))
    mean_ops = [np.mean([d.meta["operands"] for d, s in zip(docs, stages) if s == k]) for k in range(3)]
    assert mean_ops[0] < mean_ops[1] < mean_ops[2]


def test_schedule_by_steps_is_a_function_of_step():
    sch = StageSchedule(3, switch_steps=[10, 20])
    assert [sch.stage_at(s) for s in (0, 9, 10, 19, 20, 500)] == [0, 0, 1, 1, 2, 2]
    assert sch.stage_at(5) == 0  # going back (a resumed run) works too
    assert sch.observe(0, 100.0) is False  # losses do not matter in this mode
    with pytest.raises(UserError, match="increasing"):
        StageSchedule(3, switch_steps=[20, 10])
    with pytest.raises(UserError, match="must list 2"):
        StageSchedule(3, switch_steps=[10])


def test_schedule_advances_on_plateau():
    sch = StageSchedule(3, patience=3, min_delta=0.01, smoothing=0.0)
    # improving losses: no switch
    assert not any(sch.observe(step, loss) for step, loss in enumerate([4.0, 3.0, 2.0, 1.5]))
    # flat for 3 steps -> next stage, at the step after the third flat one
    switched = [sch.observe(step, 1.5) for step in range(4, 7)]
    assert switched == [False, False, True] and sch.stage == 1 and sch.switches == [(7, 1)]
    # a small (< 1%) improvement does not count as progress
    for step, loss in zip(range(7, 10), [2.0, 1.995, 1.99]):
        sch.observe(step, loss)
    assert sch.stage == 1
    sch.observe(10, 1.99)
    assert sch.stage == 2 and sch.switches[-1] == (11, 2)
    assert sch.observe(11, 1.99) is False and sch.stage == 2  # the last stage is final


def test_plateau_respects_min_steps_and_state_round_trip():
    sch = StageSchedule(2, patience=1, min_delta=0.0, smoothing=0.0, min_steps=5)
    for step in range(4):
        sch.observe(step, 1.0)
    assert sch.stage == 0
    state = sch.state_dict()
    sch.observe(4, 1.0)
    assert sch.stage == 1
    again = StageSchedule(2, patience=1, min_delta=0.0, smoothing=0.0, min_steps=5)
    again.load_state_dict(state)
    again.observe(4, 1.0)
    assert again.stage == 1 and again.switches == sch.switches


def test_sampler_draws_current_stage_and_mixes_earlier():
    stages = np.repeat([0, 1, 2], 100)  # examples 0-99 basic, 100-199 intermediate, 200-299 expert
    sch = StageSchedule(3, switch_steps=[10, 20])
    sampler = CurriculumSampler(stages, sch, mix_earlier=0.25, seed=0)
    first = np.concatenate([sampler.sample(10, step) for step in range(10)])
    assert (stages[first] == 0).all()
    assert sorted(first.tolist()) == list(range(100))  # a full pass without replacement
    late = np.concatenate([sampler.sample(100, step) for step in range(20, 60)])
    share = np.bincount(stages[late], minlength=3) / len(late)
    assert share[2] == pytest.approx(0.75, abs=0.03)
    assert share[0] == pytest.approx(0.125, abs=0.03) and share[1] == pytest.approx(0.125, abs=0.03)


def test_sampler_is_seeded_and_resumable():
    stages = np.repeat([0, 1, 2], 50)

    def make(seed):
        return CurriculumSampler(stages, StageSchedule(3, switch_steps=[3, 6]), mix_earlier=0.3, seed=seed)

    a, b, c = make(0), make(0), make(1)
    draws_a = [a.sample(16, s).tolist() for s in range(8)]
    assert draws_a == [b.sample(16, s).tolist() for s in range(8)]
    assert draws_a != [c.sample(16, s).tolist() for s in range(8)]
    d = make(0)
    for s in range(4):
        d.sample(16, s)
    resumed = make(0)
    resumed.load_state_dict(d.state_dict())
    assert [resumed.sample(16, s).tolist() for s in range(4, 8)] == draws_a[4:]


def test_random_order_and_empty_stage():
    r = random_order(10, seed=0)
    assert sorted(r.sample(10, 0).tolist()) == list(range(10))
    with pytest.raises(UserError, match="have no examples"):
        CurriculumSampler(np.zeros(5, dtype=int), StageSchedule(3, switch_steps=[1, 2]))
