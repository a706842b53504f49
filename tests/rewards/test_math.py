"""GSM8K-style math rewards: formats, written steps, numeric equivalence."""

import json
from pathlib import Path

import pytest
from r1rl.rewards.math import (
    evaluate_expression,
    extract_final_number,
    math_logic,
    math_syntax,
    math_task,
    numeric_equal,
    steps,
)

GSM8K = Path("/work/shared/data/gsm8k/test.jsonl")


@pytest.mark.parametrize(
    "a,b,equal",
    [
        ("1,000", "1000", True),
        ("1,234,567.50", 1234567.5, True),
        ("2.50", "2.5", True),
        ("1/2", "0.5", True),
        ("$18", "18", True),
        ("25%", "25", True),
        ("-7", "7", False),
        ("\u22127", "-7", True),  # Unicode minus
        ("+3", "3", True),
        ("3.0", 3, True),
        ("0.1", 1 / 10, True),
        ("18 dollars", "18", True),
        ("12", "13", False),
        ("", "0", False),
        (None, None, False),
        ("1/0", "1", False),
    ],
)
def test_numeric_equal(a, b, equal):
    assert numeric_equal(a, b) is equal


@pytest.mark.parametrize(
    "text,number",
    [
        ("<think>3*4=12</think><answer>12</answer>", "12"),
        ("<answer>5</answer> ... <answer>7</answer>", "7"),  # the last answer counts
        ("work\n#### 1,200", "1,200"),
        ("The total is \\boxed{42}.", "42"),
        ("<answer>no idea</answer>", None),
        ("12 apples and 13 pears", None),  # strict: no answer marker
    ],
)
def test_extract_final_number(text, number):
    assert extract_final_number(text) == number


def test_syntax_accepts_both_formats_only():
    completions = [
        "<think>3*4=12</think><answer>12</answer>",
        "<think>3*4=12</think>\n<answer> $12 </answer>\n",
        "3*4 = <<3*4=12>>12\n#### 12",
        "#### 12\nand then some more text",  # the #### line must be last
        "<think>3*4=12<answer>12</answer>",  # unclosed think
        "<think>x</think><answer>twelve</answer>",
    ]
    assert math_syntax(["q"] * 6, completions) == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]


def test_logic_checks_each_step_and_the_final_answer():
    ok = "16 - 3 - 4 = <<16-3-4=9>>9 eggs.\n9 * 2 = $<<9*2=18>>18.\n#### 18"
    wrong_step = "16 - 3 - 4 = <<16-3-4=8>>8 eggs.\n8 * 2 = $<<8*2=16>>16.\n#### 16"
    wrong_final = "16 - 3 - 4 = <<16-3-4=9>>9 eggs.\n9 * 2 = $<<9*2=18>>18.\n#### 20"
    embedded = "<think>37+48=85;85-12=73</think><answer>73</answer>"
    assert math_logic(["q"] * 4, [ok, wrong_step, wrong_final, embedded]) == pytest.approx(
        [1.0, 2 / 3, 2 / 3, 1.0]
    )
    # a restated annotation is one step, not two; rounding to the digits shown is fine
    assert steps("2+1=<<2+1=3>>3") == [("2+1", "3")]
    assert math_logic(["q"], ["10/3 = 3.33 each\n#### 3.33"]) == [1.0]


def test_expression_evaluation_is_exact_and_safe():
    assert evaluate_expression("0.1 + 0.2") == evaluate_expression("0.3")
    assert evaluate_expression("50,000 * 50%") == 25000
    for bad in ["__import__('os')", "2 ** 1000", "1 / 0", "a + 1", "(1"]:
        assert evaluate_expression(bad) is None


def test_task_compares_against_the_reference_number():
    completions = ["<answer>1,000</answer>", "#### 0.50", "<answer>3</answer>", "3"]
    answers = ["It is 500*2=<<500*2=1000>>1000\n#### 1000", "1/2", 4, 3]
    assert math_task(["q"] * 4, completions, answer=answers) == [1.0, 1.0, 0.0, 0.0]


@pytest.mark.skipif(not GSM8K.is_file(), reason="GSM8K test set not available")
def test_gsm8k_reference_solutions_score_as_correct():
    rows = [json.loads(line) for line in GSM8K.read_text().splitlines()[:300]]
    sols = [r["answer"] for r in rows]
    assert math_syntax([r["question"] for r in rows], sols) == [1.0] * len(rows)
    assert math_task([r["question"] for r in rows], sols, answer=sols) == [1.0] * len(rows)
    logic = math_logic([r["question"] for r in rows], sols)
    # A few references solve by algebra ("11h = 88,000") or skip a step: no checkable chain.
    assert sum(x == 1.0 for x in logic) / len(rows) > 0.9
    # A wrong final answer never scores on the task tier.
    wrong = [s.rsplit("####", 1)[0] + "#### 123456789" for s in sols]
    assert math_task(["q"] * len(rows), wrong, answer=sols) == [0.0] * len(rows)
