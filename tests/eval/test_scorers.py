"""Scorers are the task-tier rewards: known-good answers score 1, and the values equal the rewards' own."""

import json

import pytest
from r1rl.eval.harness import score_samples
from r1rl.eval.registry import get_task
from r1rl.eval.scorers import SCORERS, drop_constant_asserts, get_scorer, register_scorer
from r1rl.rewards.code import code_task
from r1rl.rewards.extraction import extraction_task
from r1rl.rewards.math import math_task

from r1rl.errors import UserError


@pytest.fixture(scope="module")
def data_root():
    from r1rl.eval.data import default_data_dir

    return default_data_dir()


def _docs(name, n, data_root):
    task = get_task(name)
    folder = data_root / task.spec.local.dir
    if not folder.is_dir():
        pytest.skip(f"{folder} not found (set R1RL_DATA_DIR to the shared data folder)")
    return task, task.load(task.eval_split, data_root)[:n]


def test_gsm8k_reference_answer_scores_one(data_root):
    task, docs = _docs("gsm8k", 5, data_root)
    gold = [" " + d["answer"] for d in docs]  # the reference solution, ending in "#### n"
    scores = score_samples(task, docs, gold)
    assert scores == {"exact_match_strict": [1.0] * 5, "exact_match_flexible": [1.0] * 5}
    wrong = [" The answer is 7.\n#### 7" if "#### 7" not in d["answer"] else " #### 8" for d in docs]
    assert score_samples(task, docs, wrong)["exact_match_strict"] == [0.0] * 5
    # the same numbers as the reward itself
    prompts = [task.doc_to_text(d) for d in docs]
    assert scores["exact_match_strict"] == math_task(prompts, gold, answer=[d["answer"] for d in docs])


def test_gsm8k_flexible_falls_back_to_the_last_number(data_root):
    task, docs = _docs("gsm8k", 1, data_root)  # Janet's ducks: 18
    s = score_samples(task, docs * 3, [" She makes 9 * 2 = 18 dollars.", " #### 18", " 18 eggs, so 17"])
    assert s["exact_match_strict"] == [0.0, 1.0, 0.0]
    assert s["exact_match_flexible"] == [1.0, 1.0, 0.0]


# HumanEval/64 and /66 have `assert True, "..."` lines (see drop_constant_asserts).
@pytest.mark.parametrize("name,n", [("humaneval", 8), ("mbpp", 8)])
def test_canonical_solutions_pass_in_the_sandbox(name, n, data_root):
    task, docs = _docs(name, 200, data_root)
    if name == "humaneval":
        docs = docs[:4] + [d for d in docs if d["task_id"] in ("HumanEval/64", "HumanEval/66")] + docs[-2:]
        good = [d["canonical_solution"] for d in docs]  # a body that continues the prompt's stub
    else:
        docs = docs[:n]
        good = [f"```python\n{d['code']}\n```" for d in docs]
    scores = score_samples(task, docs, good)
    assert scores["pass"] == [1.0] * n and scores["tests"] == [1.0] * n
    bad = ["    return None\n" if name == "humaneval" else "def nothing():\n    pass\n"] * n
    assert score_samples(task, docs, bad)["pass"] == [0.0] * n
    # The values are code_task's, whose HumanEval program is prompt + completion + check(entry_point).
    cols = {k: [task.scorer_columns(d)[k] for d in docs] for k in task.scorer_columns(docs[0])}
    if name == "mbpp":
        assert scores["tests"] == code_task([task.doc_to_text(d) for d in docs], good, **cols)


@pytest.mark.slow
@pytest.mark.parametrize("name,key", [("humaneval", "canonical_solution"), ("mbpp", "code")])
def test_every_canonical_solution(name, key, data_root):
    """All 164 HumanEval solutions pass, and all 257 of MBPP's but maybe task 123, whose program
    alone takes 3-6 s (with load) of code_task's 5 s; and a wrong solution to each does not."""
    task, docs = _docs(name, 1000, data_root)
    scores = score_samples(task, docs, [d[key] for d in docs])
    failed = {d["task_id"] for d, p in zip(docs, scores["pass"]) if p != 1.0}
    assert failed <= {123}, failed
    # the reference, its own functions then made to answer None: every name the tests need exists
    spoil = "\nfor _n, _f in list(globals().items()):\n    if getattr(_f, '__module__', '') == '__main__':\n"
    spoil += "        globals()[_n] = lambda *a, **k: None\n"
    wrong = ["    return None\n" if name == "humaneval" else d[key] + spoil for d in docs]
    assert score_samples(task, docs, wrong)["pass"] == [0.0] * len(docs)


def test_code_scorer_takes_input_output_columns():
    io = json.dumps({"inputs": ["2 3\n", "5 5\n"], "outputs": ["5\n", "10\n"]})
    code = get_scorer("code")
    assert ("test_list", "test", "input_output") in code.columns
    out = code.fn(
        ["Add two numbers."] * 2, ["print(sum(map(int, input().split())))", "print(5)"], input_output=[io] * 2
    )
    assert out == {"pass": [1.0, 0.0], "tests": [1.0, 0.5]}


def test_drop_constant_asserts():
    code = "def check(c):\n    assert True, 'x'\n    if c:\n        assert 1\n    assert c(1) == 1, 'y'\n"
    out = drop_constant_asserts(code)
    assert "assert True" not in out and "assert 1\n" not in out and "assert c(1) == 1" in out
    assert drop_constant_asserts("assert f(1) == 2\n") == "assert f(1) == 2\n"  # untouched, byte for byte
    assert drop_constant_asserts("assert False\n") == "assert False\n"  # a failing constant stays
    assert drop_constant_asserts("def (:") == "def (:"


def test_reference_summary_scores_rouge_one(data_root):
    task, docs = _docs("scitldr", 4, data_root)
    scores = score_samples(task, docs, [d["target"][-1] for d in docs])  # any of the references
    assert all(scores[k] == pytest.approx([1.0] * 4) for k in ("rouge1", "rouge2", "rougeL"))
    other = score_samples(task, docs, [docs[(i + 1) % 4]["target"][0] for i in range(4)])
    assert all(0 <= v < 0.9 for v in other["rougeL"])


def test_rouge_takes_the_best_reference():
    rouge = get_scorer("rouge").fn
    refs = [["the cat sat on the mat", "a dog ran in the park"]]
    best = rouge(["p"], ["a dog ran in the park"], references=refs)
    assert best == {"rouge1": [1.0], "rouge2": [1.0], "rougeL": [1.0]}
    # "the cat sat": against ref 1, P = 3/3, R = 3/6, F1 = 2/3; unigrams only with ref 2 ("the")
    part = rouge(["p"], ["the cat sat"], references=refs)
    assert part["rouge1"] == pytest.approx([2 / 3]) and part["rouge2"] == pytest.approx([2 * 1 * 0.4 / 1.4])


def test_reference_json_scores_f1_one(data_root):
    task, docs = _docs("cuad", 6, data_root)
    gold = [" " + task.target_text(d) for d in docs]  # e.g. {"Agreement Date": "10/1/2019"}
    assert json.loads(gold[0]) == {docs[0]["field"]: docs[0]["answers"][0]}
    scores = score_samples(task, docs, gold)
    assert scores == {"field_f1": [1.0] * 6, "exact_match": [1.0] * 6}
    cols = {"answer": [d["answers"] for d in docs], "schema": [d["field"] for d in docs]}
    assert scores["field_f1"] == extraction_task([task.doc_to_text(d) for d in docs], gold, **cols)
    # a right value plus an extra field: F1 = 2·1/(2+1), not an exact match
    extra = [json.dumps({d["field"]: d["answers"][0], "Parties": "Acme"}) for d in docs[:1]]
    s = score_samples(task, docs[:1], extra)
    assert s["field_f1"] == pytest.approx([2 / 3]) and s["exact_match"] == [0.0]
    assert score_samples(task, docs[:1], ["no json here"]) == {"field_f1": [0.0], "exact_match": [0.0]}


def test_unscorable_sample_is_an_error(data_root):
    task, docs = _docs("scitldr", 1, data_root)
    docs = [{**docs[0], "target": []}]  # no reference: the scorer says not applicable
    with pytest.raises(UserError, match=r"scorer 'rouge' could not score document 0 .*not applicable"):
        score_samples(task, docs, ["a summary"])


def test_scorer_registry():
    assert {"math", "code", "rouge", "extraction"} <= set(SCORERS)
    with pytest.raises(UserError, match=r"unknown scorer 'rogue' \(did you mean 'rouge'\?\)"):
        get_scorer("rogue")
    with pytest.raises(ValueError, match="already registered"):
        register_scorer("math", outputs=["x"])(lambda prompts, completions, **c: {})
