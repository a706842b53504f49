import random

import pytest

from r1rl.errors import UserError
from r1rl.tasks.arithmetic import (
    ArithmeticProblem,
    ArithmeticTask,
    arithmetic_logic,
    arithmetic_syntax,
    arithmetic_task,
)


def test_worked_solution_format():
    p = ArithmeticProblem((37, 48, 12), ("+", "-"))
    assert p.prompt == "37+48-12="
    assert p.completion == "<think>37+48=85;85-12=73</think><answer>73</answer>"
    assert p.answer == 73


def test_precedence_is_written_out():
    p = ArithmeticProblem((3, 4, 2), ("+", "*"))
    assert p.prompt == "(3+4)*2="
    assert p.answer == 14 == eval(p.expression)


def test_splits_are_disjoint_and_seeded():
    task = ArithmeticTask(digits=2, max_operands=3)
    train = task.problems("train", 3000, seed=0)
    test = task.problems("test", 300, seed=0)
    assert not {p.prompt for p in train} & {p.prompt for p in test}
    assert [p.prompt for p in task.problems("train", 50, seed=0)] == [p.prompt for p in train[:50]]
    assert [p.prompt for p in task.problems("train", 50, seed=1)] != [p.prompt for p in train[:50]]
    # a different difficulty never leaks test prompts into train
    other = ArithmeticTask(digits=2, max_operands=2).problems("train", 2000, seed=5)
    assert not {p.prompt for p in other} & {p.prompt for p in test}


def test_difficulty_knobs():
    rng = random.Random(0)
    task = ArithmeticTask(min_operands=4, max_operands=4, digits=3, operators="*")
    for _ in range(50):
        p = task.sample(rng)
        assert len(p.operands) == 4 and set(p.operators) == {"*"}
        assert p.operands[0] <= 999 and all(b <= 9 for b in p.operands[1:])


def test_every_generated_solution_earns_full_reward():
    task = ArithmeticTask(min_operands=2, max_operands=4, digits=2, operators="+-*")
    probs = task.problems("train", 300, seed=3)
    prompts, comps = [p.prompt for p in probs], [p.completion for p in probs]
    answers = [p.answer for p in probs]
    assert arithmetic_syntax(prompts, comps) == [1.0] * 300
    assert arithmetic_logic(prompts, comps) == [1.0] * 300
    assert arithmetic_task(prompts, comps, answer=answers) == [1.0] * 300


def test_chat_rows_score_as_their_text_does():
    probs = ArithmeticTask().problems("train", 50, seed=0)
    prompts = [p.prompt for p in probs]
    comps = [p.completion if i % 2 else f"<answer>{p.answer + 1}</answer>" for i, p in enumerate(probs)]
    chat_prompts = [
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": p}] for p in prompts
    ]
    chat_comps = [[{"role": "assistant", "content": c}] for c in comps]
    answers = [p.answer for p in probs]
    for reward in (arithmetic_syntax, arithmetic_logic, arithmetic_task):
        text = reward(prompts, comps, answer=answers)
        assert reward(chat_prompts, chat_comps, answer=answers) == text and sum(text) == 25


def test_exhausted_space_is_a_clear_error():
    task = ArithmeticTask(min_operands=2, max_operands=2, digits=1, operators="+")
    assert len(task.problems("train", 10_000, seed=0, allow_fewer=True)) <= 100
    with pytest.raises(UserError, match="distinct 'train' problems"):
        task.problems("train", 10_000, seed=0)


def test_bad_knobs():
    with pytest.raises(ValueError):
        ArithmeticTask(operators="/")
    with pytest.raises(ValueError):
        ArithmeticTask(min_operands=3, max_operands=2)
