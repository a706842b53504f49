import random

import pytest

from r1rl.envs.calculator import calculator
from r1rl.errors import UserError
from r1rl.models.chat import render_chat
from r1rl.models.tokenizer import train_tokenizer
from r1rl.tasks.arithmetic import (
    ArithmeticProblem,
    ArithmeticTask,
    ArithmeticTaskConfig,
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


# Chat records, calculator traces, and the rewards on trajectories.


def _trace(expression, tool_content, final, status="ok"):
    call = {"type": "function", "function": {"name": "calculator", "arguments": {"expression": expression}}}
    return [
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "name": "calculator", "content": tool_content, "status": status},
        {"role": "assistant", "content": final},
    ]


def test_chat_records_are_the_same_problems_as_messages():
    text, chat = ArithmeticTask(seed=2), ArithmeticTask(seed=2, chat=True)
    for split in ("train", "test"):
        for t, c in zip(text.records(split)[:50], chat.records(split)[:50]):
            assert c["prompt"] == [{"role": "user", "content": t["prompt"]}]
            assert c["completion"] == [{"role": "assistant", "content": t["completion"]}]
            assert c["answer"] == t["answer"]


def test_tool_fraction_of_training_completions_are_calculator_traces():
    task = ArithmeticTask(digits=4, operators="+-*", chat=True, tool_fraction=0.3, seed=1)
    train = task.records("train")
    traced = [r for r in train if len(r["completion"]) > 1]
    assert 0.27 < len(traced) / len(train) < 0.33
    r = traced[0]
    expression = r["prompt"][0]["content"].removesuffix("=")
    assert r["completion"] == _trace(expression, str(r["answer"]), f"<answer>{r['answer']}</answer>")
    # the other records are exactly those of a run without tools; the held-out ones never use them
    plain = ArithmeticTask(digits=4, operators="+-*", chat=True, seed=1).records("train")
    assert [a for a, b in zip(train, plain) if len(a["completion"]) == 1] == [
        b for a, b in zip(train, plain) if len(a["completion"]) == 1
    ]
    assert all(len(r["completion"]) == 1 for r in task.records("test"))
    # deterministic per seed
    assert (
        ArithmeticTask(digits=4, operators="+-*", chat=True, tool_fraction=0.3, seed=1).records("train")
        == train
    )
    other = ArithmeticTask(digits=4, operators="+-*", chat=True, tool_fraction=0.3, seed=2).records("train")
    assert [len(r["completion"]) for r in other] != [len(r["completion"]) for r in train]


def test_every_calculator_trace_is_right_by_the_calculator():
    task = ArithmeticTask(digits=4, operators="+-*", max_operands=4, chat=True, tool_fraction=1.0)
    for r in task.records("train")[:300]:
        call = r["completion"][0]["tool_calls"][0]["function"]
        assert calculator(**call["arguments"]) == r["completion"][1]["content"] == str(r["answer"])


def test_tool_fraction_needs_chat():
    with pytest.raises(ValueError, match="tool_fraction needs chat"):
        ArithmeticTask(tool_fraction=0.3)
    with pytest.raises(ValueError, match="tool_fraction needs chat"):
        ArithmeticTaskConfig(tool_fraction=0.3)
    assert ArithmeticTaskConfig(chat=True, tool_fraction=0.3).tool_fraction == 0.3


def test_chat_corpus_is_what_the_chat_template_renders():
    chat, text = ArithmeticTask(chat=True).corpus(300, seed=0), ArithmeticTask().corpus(300, seed=0)
    for c, t in zip(chat, text):  # the same problems; prompt + completion become a user and an assistant turn
        prompt, completion = t[: t.index("=") + 1], t[t.index("=") + 1 :]
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]
        assert c == render_chat(messages)
    tokenizer = train_tokenizer(chat, vocab_size=300)
    assert chat[0] == tokenizer.apply_chat_template(_conversation(chat[0]), tokenize=False)
    r = ArithmeticTask(chat=True).records("train")[0]
    assert render_chat(r["prompt"] + r["completion"]) == tokenizer.apply_chat_template(
        r["prompt"] + r["completion"], tokenize=False
    )
    # documents not in the prompt format stay plain worked chains
    mixed = ArithmeticTask(chat=True).corpus(300, seed=0, formatted_fraction=0.5)
    plain = ArithmeticTask().corpus(300, seed=0, formatted_fraction=0.5)
    assert [d for d in mixed if not d.startswith("<|im_start|>")] == [d for d in plain if "<think>" not in d]


def _conversation(chatml):
    turns = [t.split("\n", 1) for t in chatml.split("<|im_end|>\n") if t]
    return [{"role": role.removeprefix("<|im_start|>"), "content": content} for role, content in turns]


def test_rewards_take_one_message_lists_and_chat_prompts_as_they_take_text():
    task = ArithmeticTask(min_operands=2, max_operands=4, operators="+-*")
    probs = task.problems("train", 200, seed=4)
    prompts = [p.prompt for p in probs]
    texts = [p.completion for p in probs[:100]] + [p.short_completion for p in probs[100:150]]
    texts += ["<think>1+2=4</think><answer>4</answer>"] * 50
    answers = [p.answer for p in probs]
    chat_prompts = [[{"role": "user", "content": p}] for p in prompts]
    messages = [[{"role": "assistant", "content": c}] for c in texts]
    for fn in (arithmetic_syntax, arithmetic_logic):
        assert fn(chat_prompts, messages) == fn(prompts, texts)
    assert arithmetic_task(chat_prompts, messages, answer=answers) == arithmetic_task(
        prompts, texts, answer=answers
    )


def _scores(completion, answer=187501, prompt="4821*37+9124="):
    chat = [{"role": "user", "content": prompt}]
    return tuple(
        fn([chat], [completion], answer=[answer])[0]
        for fn in (arithmetic_syntax, arithmetic_logic, arithmetic_task)
    )


EXPR, RIGHT = "4821*37+9124", "<answer>187501</answer>"
CALL, FINAL = _trace(EXPR, "", "")[0], {"role": "assistant", "content": RIGHT}


def _tool(content, status=None):
    return {"role": "tool", "content": content} | ({"status": status} if status else {})


@pytest.mark.parametrize(
    "completion, scores",
    [
        # the call, its result, the answer it gave: every tier passes
        (_trace(EXPR, "187501", RIGHT), (1.0, 1.0, 1.0)),
        # a worked final turn is the answer format too (logic: 187501 is not what the tool returned)
        (_trace("4821*37", "178377", "<think>178377+9124=187501</think>" + RIGHT), (1.0, 0.0, 1.0)),
        # the answer is not what the tool returned: syntax only (and right by chance, task)
        (_trace(EXPR, "187501", "<answer>187500</answer>"), (1.0, 0.0, 0.0)),
        (_trace("4821*37+9125", "187502", RIGHT), (1.0, 0.0, 1.0)),
        # consistent with a tool that was asked the wrong question: logic passes, the task does not
        (_trace("4821*37-9124", "169253", "<answer>169253</answer>"), (1.0, 1.0, 0.0)),
        # a call that failed, or did not parse, fails syntax; logic needs an ok result
        ([CALL, _tool("error: ValueError: not an arithmetic expression", "error"), FINAL], (0.0, 0.0, 1.0)),
        ([CALL, _tool("error: no tool named 'calc'", "unknown_tool"), FINAL], (0.0, 0.0, 1.0)),
        ([{"role": "assistant", "content": ""}, _tool("error: bad JSON", "malformed"), FINAL], (0, 0, 1.0)),
        # a final turn out of format, or none: the episode ran out of turns
        (_trace(EXPR, "187501", "187501"), (0.0, 0.0, 0.0)),
        ([CALL, _tool("187501", "ok")], (0.0, 0.0, 0.0)),
        ([CALL], (0.0, 0.0, 0.0)),
        # the last ok result counts, after a failed call or an earlier one
        ([CALL, _tool("error: ValueError: x", "error"), CALL, _tool("187501", "ok"), FINAL], (0.0, 1.0, 1.0)),
        (_trace("4821*37", "178377", "")[:2] + _trace("178377+9124", "187501", RIGHT), (1.0, 1.0, 1.0)),
        ([CALL, _tool("187501", "ok"), CALL, _tool("178377", "ok"), FINAL], (1.0, 0.0, 1.0)),
        # a tool message without a status (TRL's) is ok unless it reads as an error
        ([CALL, _tool("187501"), FINAL], (1.0, 1.0, 1.0)),
        ([CALL, _tool("error: x"), FINAL], (0.0, 0.0, 1.0)),
    ],
)  # fmt: skip
def test_rewards_on_trajectories(completion, scores):
    assert _scores(completion) == scores


def test_a_conversation_without_tool_calls_scores_as_its_last_turn():
    worked = "<think>4821*3=14463;14463+9124=23587</think><answer>23587</answer>"
    assert _scores([{"role": "assistant", "content": worked}], 23587, "4821*3+9124=") == (1.0, 1.0, 1.0)
    assert _scores([{"role": "assistant", "content": "<answer>23587</answer>"}], 23587, "4821*3+9124=") == (
        0.0,
        0.0,
        1.0,
    )
