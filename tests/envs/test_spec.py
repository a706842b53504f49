"""Tools and environments resolve like rewards (a registered name, module:fn, file.py:fn); what was
written for TRL runs unchanged; a wrong name is one line."""

import sys
from pathlib import Path

import pytest

from r1rl.config import EnvConfig
from r1rl.envs.episodes import EnvSpec
from r1rl.errors import UserError

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from test_episodes import PROMPTS, scripted, tokenizer  # noqa: E402,F401  (the module-scoped fixture)


def test_trl_style_tool_and_environment_run_unchanged(tokenizer):  # noqa: F811
    cfg = EnvConfig(
        tools=[f"{HERE / 'trl_style.py'}:multiply"], environment="trl_style:CounterEnv", max_turns=3
    )
    spec = EnvSpec.from_config(cfg)
    names = [s["function"]["name"] for s in spec.schemas()]
    assert names == ["multiply", "increment"]
    assert spec.schemas()[0]["function"]["parameters"]["properties"]["a"] == {
        "type": "integer", "description": "The first integer."
    }  # fmt: skip
    turns = [
        '<tool_call>{"name": "multiply", "arguments": {"a": 6, "b": 7}}</tool_call>',
        '<tool_call>{"name": "increment", "arguments": {"step": 5}}</tool_call>',
        "<answer>42</answer>",
    ]
    from r1rl.envs.episodes import run_episodes

    ep = run_episodes(scripted(tokenizer, [turns]), tokenizer, spec, PROMPTS[:1], [{"start": 1}], 40)
    tool = [m["content"] for m in ep.conversations[0] if m["role"] == "tool"]
    assert tool == ["42", "6"]
    assert ep.env_rewards == [6.0]  # get_reward() of the episode's instance, after the worker's calls


@pytest.mark.parametrize(
    ("field", "spec", "message"),
    [
        ("tools", "calculater", "env.tools: unknown tool 'calculater'"),
        ("tools", "no_such_module:fn", "tool 'no_such_module:fn': cannot import 'no_such_module'"),
        ("tools", "/nope/tools.py:fn", "tool '/nope/tools.py:fn': file not found"),
        ("tools", "trl_style:multiplyy", "has no attribute 'multiplyy' (did you mean 'multiply'?)"),
        ("environment", "pythn", "env.environment: unknown environment 'pythn'"),
    ],
)
def test_a_wrong_name_is_one_line(field, spec, message):
    cfg = EnvConfig(**{field: [spec] if field == "tools" else spec})
    with pytest.raises(UserError) as e:
        EnvSpec.from_config(cfg)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_a_tool_without_a_docstring_is_one_line(tmp_path):
    (tmp_path / "bare.py").write_text("def f(x: int) -> int:\n    return x\n")
    spec = EnvSpec.from_config(EnvConfig(tools=[f"{tmp_path / 'bare.py'}:f"]))
    with pytest.raises(UserError, match="tool 'f'.*docstring") as e:
        spec.schemas()
    assert "\n" not in str(e.value)
