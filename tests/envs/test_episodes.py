"""Multi-turn episodes: tool calls run and answered, the environment's tokens marked as context,
every way a turn or a tool can go wrong a typed outcome, environments with state, step and reward.

The policy here is scripted (each turn's text is given), so what an episode must do with a turn is
checked exactly; the real model runs the same loop in the PPO tests below and in tests/recipes.
"""

import copy
import sys
import time
from pathlib import Path

import pytest
import torch

from r1rl.envs.base import Environment, Step
from r1rl.envs.episodes import EnvSpec, environment_ids, run_episodes
from r1rl.models.generation import Generation, left_pad
from r1rl.models.tokenizer import train_tokenizer

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))

CALL = '<tool_call>{"name": "add", "arguments": {"a": 2, "b": 3}}</tool_call>'


def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: the first number
        b: the second number
    """
    return a + b


def explode(x: int) -> int:
    """Raise.

    Args:
        x: anything
    """
    raise RuntimeError("boom")


def hang(x: int) -> int:
    """Never return.

    Args:
        x: anything
    """
    time.sleep(60)
    return x


def flood(x: int) -> str:
    """Print far too much.

    Args:
        x: anything
    """
    return "y" * 10_000


@pytest.fixture(scope="module")
def tokenizer():
    texts = [
        f"{a}+{b}={a + b} " + CALL + " <answer>5</answer> error: tool" for a in range(30) for b in range(10)
    ]
    return train_tokenizer(texts, vocab_size=400)


PROMPTS = ["0+5=", "1+5=", "2+5=", "3+5="]


def scripted(tokenizer, turns: list[list[str]]):
    """A policy that writes ``turns[i][k]`` as episode i's k-th turn (then its end-of-turn token)."""
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    served = [0] * len(turns)
    seen: list[int] = []

    def generate(contexts: list[list[int]], max_new_tokens: int) -> Generation:
        rows = []
        for ctx in contexts:
            text = tokenizer.decode(ctx, skip_special_tokens=False)
            i = next(i for i in range(len(turns)) if f"user\n{PROMPTS[i]}" in text)
            rows.append((i, min(served[i], len(turns[i]) - 1)))
            served[i] += 1
        seen.append(len(contexts))
        ids = [tokenizer(turns[i][k], add_special_tokens=False).input_ids[:max_new_tokens] for i, k in rows]
        ids = [x + [end] if len(x) < max_new_tokens else x for x in ids]
        T = max(len(x) for x in ids)
        comp = torch.tensor([x + [0] * (T - len(x)) for x in ids])
        mask = torch.tensor([[1] * len(x) + [0] * (T - len(x)) for x in ids])
        p, pm = left_pad(contexts, 0)
        truncated = torch.tensor([x[-1] != end for x in ids])
        lp = -torch.rand(comp.shape) * mask
        return Generation(p, pm, comp, mask, [turns[i][k] for i, k in rows], truncated, lp)

    generate.calls = seen  # type: ignore[attr-defined]
    return generate


def run(tokenizer, turns, spec, max_new_tokens=40):
    rows = [{"answer": 5}] * len(turns)
    return run_episodes(
        scripted(tokenizer, turns), tokenizer, spec, PROMPTS[: len(turns)], rows, max_new_tokens
    )


def test_a_tool_call_is_run_and_its_result_is_context_not_action(tokenizer):
    spec = EnvSpec(tools=[add], max_turns=3, max_tokens=200)
    ep = run(tokenizer, [[CALL, "<answer>5</answer>"], ["<answer>7</answer>"]], spec)
    conv = ep.conversations[0]
    assert [m["role"] for m in conv] == ["assistant", "tool", "assistant"]
    assert conv[0]["tool_calls"][0]["function"] == {"name": "add", "arguments": {"a": 2, "b": 3}}
    assert conv[1]["content"] == "5" and conv[1]["status"] == "ok"
    assert [m["role"] for m in ep.conversations[1]] == ["assistant"]  # no call: the episode ends
    g = ep.generation
    ids, act, real = g.completion_ids[0], g.action_mask[0], g.completion_mask[0]
    env_ids = ids[(act == 0) & (real == 1)].tolist()
    expected = environment_ids(tokenizer, [conv[1]], spec.schemas(), "<|im_end|>")
    assert env_ids == expected  # exactly the template's rendering of the tool message, nothing else
    assert "5" in tokenizer.decode(env_ids)
    model_text = tokenizer.decode(ids[act == 1].tolist(), skip_special_tokens=False)
    assert model_text == CALL + "<|im_end|>" + "<answer>5</answer><|im_end|>"  # what the model wrote
    assert g.logprobs[0][act == 0].abs().sum() == 0  # the environment's tokens have no log-probs
    assert (g.model_mask[1] == g.completion_mask[1]).all()  # a one-turn episode: all the model's
    assert ep.metrics["env/tool_call_rate"] == 0.5 and ep.metrics["env/well_formed"] == 1.0


def test_failing_tools_are_typed_outcomes_the_model_reads(tokenizer):
    calls = [
        '<tool_call>{"name": "explode", "arguments": {"x": 1}}</tool_call>',
        '<tool_call>{"name": "hang", "arguments": {"x": 1}}</tool_call>',
        '<tool_call>{"name": "flood", "arguments": {"x": 1}}</tool_call>',
        '<tool_call>{"name": "nope", "arguments": {}}</tool_call><tool_call>{oops</tool_call>',
    ]
    spec = EnvSpec(tools=[explode, hang, flood], max_turns=2, max_tokens=400, timeout=0.5, max_chars=20)
    start = time.perf_counter()
    ep = run(tokenizer, [[c, "<answer>5</answer>"] for c in calls], spec)
    assert time.perf_counter() - start < 30
    statuses = [[m.get("status") for m in conv if m["role"] == "tool"] for conv in ep.conversations]
    assert statuses == [["error"], ["timeout"], ["flood"], ["unknown_tool", "malformed"]]
    tool = [m for conv in ep.conversations for m in conv if m["role"] == "tool"]
    assert tool[0]["content"].startswith("error: RuntimeError: boom")
    assert tool[2]["content"] == "y" * 20
    assert all(conv[-1]["content"] == "<answer>5</answer>" for conv in ep.conversations)  # each went on
    assert ep.metrics["env/well_formed"] == pytest.approx(3 / 5)
    assert ep.metrics["env/tool/timeout"] == pytest.approx(1 / 4)


def test_turn_and_token_budgets_end_episodes(tokenizer):
    spec = EnvSpec(tools=[add], max_turns=2, max_tokens=400)
    ep = run(tokenizer, [[CALL, CALL, CALL]], spec)  # calls on the last turn are not run
    assert [m["role"] for m in ep.conversations[0]] == ["assistant", "tool", "assistant"]
    assert ep.metrics["env/out_of_turns"] == 1.0
    short = EnvSpec(tools=[add], max_turns=4, max_tokens=30)
    ep = run(tokenizer, [[CALL, CALL, CALL, CALL]], short)
    assert ep.generation.completion_mask.sum() <= 30 and bool(ep.generation.truncated[0])


class Counter(Environment):
    """Counts its calls; rewards the episode with the count; answers a turn without a call once."""

    def reset(self, **row):
        self.target, self.calls, self.nudged = row["answer"], 0, False
        return " (use the tool)"

    def bump(self, by: int) -> int:
        """Add to the count.

        Args:
            by: how much
        """
        self.calls += by
        return self.calls

    def step(self, message):
        if not self.nudged:
            self.nudged = True
            return Step([{"role": "user", "content": "sure?"}], done=False, reward=0.5)
        return Step(done=True)

    def get_reward(self):
        return float(self.calls)


def test_an_environment_keeps_state_across_calls_steps_and_rewards(tokenizer):
    bump = '<tool_call>{"name": "bump", "arguments": {"by": 2}}</tool_call>'
    spec = EnvSpec(factory=Counter, max_turns=5, max_tokens=400)
    ep = run(tokenizer, [[bump, bump, "<answer>4</answer>", "<answer>4</answer>"]], spec)
    conv = ep.conversations[0]
    assert [m["content"] for m in conv if m["role"] == "tool"] == ["2", "4"]  # state survived the worker
    assert [m["role"] for m in conv] == [
        "assistant",
        "tool",
        "assistant",
        "tool",
        "assistant",
        "user",
        "assistant",
    ]
    assert ep.env_rewards == [4.0 + 0.5]  # get_reward() plus the step's reward
    assert ep.environments[0].calls == 4
    prompt = tokenizer.decode(ep.generation.prompt_ids[0])
    assert "(use the tool)" in prompt  # reset's text joins the user message
    assert "bump" in str(spec.schemas())


def test_synced_generation_steps_every_turn(tokenizer):
    spec = EnvSpec(tools=[add], max_turns=3, max_tokens=200)
    gen = scripted(tokenizer, [["<answer>5</answer>"] * 3])
    run_episodes(gen, tokenizer, spec, PROMPTS[:1], [{}], 40, synced=True)
    assert gen.calls == [1, 1, 1]  # a sharded model: every rank generates every turn


def test_a_qwen3_style_template_runs_episodes(tokenizer):
    """Qwen3's markup: each call on its own lines, results as a user turn of <tool_response> blocks."""
    from test_chat import QWEN3_STYLE

    qwen = copy.deepcopy(tokenizer)
    qwen.chat_template = QWEN3_STYLE
    call = '<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>'
    spec = EnvSpec(tools=[add], max_turns=3, max_tokens=300)
    ep = run(qwen, [[call, "<answer>5</answer>"]], spec)
    assert [m["role"] for m in ep.conversations[0]] == ["assistant", "tool", "assistant"]
    g = ep.generation
    env = g.completion_ids[0][(g.action_mask[0] == 0) & (g.completion_mask[0] == 1)].tolist()
    text = qwen.decode(env, skip_special_tokens=False)
    assert (
        text == "\n<|im_start|>user\n<tool_response>\n5\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
    )
    assert '"name": "add"' in qwen.decode(g.prompt_ids[0], skip_special_tokens=False)  # the schema's JSON
