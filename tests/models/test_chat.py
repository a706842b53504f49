"""The chat template with tools: the tools turn, tool calls as json.dumps writes them, tool results,
the SFT mask, prefixes, rendering without a tokenizer, a vocabulary the template leaves alone, and a
Qwen3-style tool template through the same SFT encoding."""

import hashlib
import json

import pytest

from r1rl.models.chat import CHAT_TEMPLATE, TOOL_CALL_CLOSE, TOOL_CALL_OPEN, render_chat
from r1rl.models.encoding import IGNORE, assistant_tokens, encode_sft
from r1rl.models.tokenizer import END_OF_TURN, train_tokenizer
from r1rl.tasks.arithmetic import ArithmeticTask


def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: the first term
        b: the second term
    """
    return a + b


WEATHER = {  # transformers' schema, with an optional parameter
    "type": "function",
    "function": {
        "name": "weather",
        "description": "The weather\nin a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": ["string", "null"]}},
            "required": ["city"],
        },
    },
}
NOW = {"name": "now", "description": "The time."}  # a bare function dict, no parameters
TOOLS = [add, WEATHER, NOW]
CALLS = [
    {"type": "function", "function": {"name": "add", "arguments": {"a": 12, "b": 30}}},
    {"type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}},  # a JSON string
]
CONV = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "12+30=? And Oslo?"},
    {"role": "assistant", "content": None, "tool_calls": CALLS},
    {"role": "tool", "content": "42"},
    {"role": "tool", "content": "rain"},
    {"role": "assistant", "content": "<answer>42</answer> rain"},
]


@pytest.fixture(scope="module")
def tok():
    texts = ArithmeticTask(train_size=200).corpus(200, seed=0) + [render_chat(CONV, TOOLS)] * 20
    return train_tokenizer(texts, vocab_size=320)


def _trained(tok, ids, labels):
    return tok.decode([i for i, lab in zip(ids, labels) if lab != IGNORE])


def test_tools_are_one_line_each_in_the_first_system_turn_after_its_content(tok):
    text = tok.apply_chat_template(CONV, tools=TOOLS, tokenize=False)
    assert text.startswith(
        "<|im_start|>system\nBe brief.\n<tools>\n"
        "add(a: integer, b: integer): Add two integers.\n"
        "weather(city: string, unit: string|null): The weather in a city.\n"
        "now(): The time.\n"
        "</tools><|im_end|>\n<|im_start|>user\n12+30=? And Oslo?<|im_end|>\n"
    )
    assert text.count("<|im_start|>system") == 1 and text.count("Be brief.") == 1
    alone = tok.apply_chat_template(CONV[1:2], tools=[NOW], tokenize=False)
    assert alone.startswith(
        "<|im_start|>system\n<tools>\nnow(): The time.\n</tools><|im_end|>\n<|im_start|>user"
    )
    # without tools the template is plain ChatML, a system message included
    assert tok.apply_chat_template(CONV[:2], tokenize=False) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n12+30=? And Oslo?<|im_end|>\n"
    )


def test_tool_calls_are_written_as_json_dumps_writes_them(tok):
    text = tok.apply_chat_template(CONV, tools=TOOLS, tokenize=False)
    first = TOOL_CALL_OPEN + json.dumps({"name": "add", "arguments": {"a": 12, "b": 30}}) + TOOL_CALL_CLOSE
    second = TOOL_CALL_OPEN + '{"name": "weather", "arguments": {"city": "Oslo"}}' + TOOL_CALL_CLOSE
    assert f"<|im_start|>assistant\n{first}{second}{END_OF_TURN}\n" in text
    assert "<|im_start|>tool\n42<|im_end|>\n<|im_start|>tool\nrain<|im_end|>\n" in text
    # content before the calls; non-ASCII arguments kept as text (transformers' tojson: ensure_ascii=False)
    args = {"city": "Zürich", "days": [1, 2], "deep": {"x": None, "y": 1.5}}
    msg = {
        "role": "assistant",
        "content": "Let me see.",
        "tool_calls": [{"name": "weather", "arguments": args}],
    }
    call = json.dumps({"name": "weather", "arguments": args}, ensure_ascii=False)
    assert (
        render_chat([msg])
        == f"<|im_start|>assistant\nLet me see.{TOOL_CALL_OPEN}{call}{TOOL_CALL_CLOSE}<|im_end|>\n"
    )


def test_sft_trains_on_replies_tool_calls_and_their_end_not_on_tool_results(tok):
    ids, labels = assistant_tokens(tok, CONV, tools=TOOLS)
    calls = tok.apply_chat_template(CONV, tools=TOOLS, tokenize=False).split("assistant\n")[1].split("\n")[0]
    assert calls.startswith(TOOL_CALL_OPEN) and calls.endswith(END_OF_TURN)
    assert _trained(tok, ids, labels) == calls + f"<answer>42</answer> rain{END_OF_TURN}"
    assert "rain<|im_end|>\n<|im_start|>" in tok.decode(ids)  # the tool result is there, as context
    # an SFT record whose prompt is the conversation (no tools listed) trains the same tokens
    assert _trained(tok, *encode_sft(tok, {"prompt": CONV})) == _trained(tok, ids, labels)


def test_a_prefix_of_a_conversation_renders_as_a_prefix_of_the_whole(tok):
    for tools in (None, TOOLS):
        whole = tok.apply_chat_template(CONV, tools=tools, tokenize=False)
        for k in range(1, len(CONV)):
            prefix = tok.apply_chat_template(CONV[:k], tools=tools, tokenize=False)
            assert whole.startswith(prefix), (tools is not None, k)
            if CONV[k]["role"] == "assistant":
                opened = tok.apply_chat_template(
                    CONV[:k], tools=tools, tokenize=False, add_generation_prompt=True
                )
                assert whole.startswith(opened) and opened.endswith("<|im_start|>assistant\n")


def test_rendering_without_a_tokenizer_is_what_the_tokenizer_renders(tok):
    assert render_chat(CONV, TOOLS) == tok.apply_chat_template(CONV, tools=TOOLS, tokenize=False)
    assert render_chat(CONV[:2], add_generation_prompt=True) == tok.apply_chat_template(
        CONV[:2], tokenize=False, add_generation_prompt=True
    )
    # rows read by `datasets` carry every key of every message, None where a message lacks it
    padded = [{"role": m["role"], "content": m["content"], "tool_calls": m.get("tool_calls")} for m in CONV]
    assert render_chat(padded, TOOLS) == render_chat(CONV, TOOLS)
    assert tok.chat_template == CHAT_TEMPLATE


def test_the_markup_is_plain_text_and_the_vocabulary_is_what_it_was():
    texts = ArithmeticTask().corpus(300, seed=0, formatted_fraction=0.5)
    tok = train_tokenizer(texts, vocab_size=320)
    state = json.loads(tok.backend_tokenizer.to_str())
    merges = [m if isinstance(m, list) else m.split(" ") for m in state["model"]["merges"]]
    blob = json.dumps(
        [sorted(state["model"]["vocab"].items()), merges, [t["content"] for t in state["added_tokens"]]]
    )
    # taken before the template knew tools: the same texts give the same vocabulary and merges
    assert hashlib.sha256(blob.encode()).hexdigest()[:16] == "78af5e2ee332bef6" and len(tok) == 280
    for markup in (TOOL_CALL_OPEN, TOOL_CALL_CLOSE, "<tools>", "</tools>"):
        assert len(tok(markup).input_ids) > 1 and markup not in tok.get_vocab()


def test_chat_rendered_texts_train_no_merges_inside_special_tokens():
    chats = [
        render_chat(
            [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["completion"]}]
        )
        for r in ArithmeticTask(train_size=300).records("train")
    ]
    tok = train_tokenizer(chats, vocab_size=400)
    pieces = {t for t in tok.get_vocab() if not t.startswith("<|")}
    assert not {p for p in pieces if (len(p) > 1 and "|" in p) or p in ("im", "_start", "start", "end")}
    ids = tok(chats[0], add_special_tokens=False).input_ids
    assert ids.count(tok.convert_tokens_to_ids("<|im_start|>")) == 2
    assert ids.count(tok.convert_tokens_to_ids(END_OF_TURN)) == 2


# A compact Qwen3-style tool template (Qwen3's own, less its reasoning parts and instructions): the tools
# as JSON in the system turn, each call on its own lines, tool results as a user turn of <tool_response>
# blocks; no {% generation %} markers, so SFT finds the assistant tokens by rendering prefixes.
QWEN3_STYLE = r"""
{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content + '\n\n' }}
    {%- endif %}
    {{- "# Tools\n\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools><|im_end|>\n" }}
{%- elif messages[0].role == 'system' %}
    {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if message.role == "user" %}
        {{- '<|im_start|>user\n' + message.content + '<|im_end|>\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>assistant\n' + (message.content or '') }}
        {%- for tool_call in message.tool_calls or [] %}
            {%- if (loop.first and message.content) or (not loop.first) %}
                {{- '\n' }}
            {%- endif %}
            {%- if tool_call.function %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '<tool_call>\n{"name": "' + tool_call.name + '", "arguments": ' }}
            {%- if tool_call.arguments is string %}
                {{- tool_call.arguments }}
            {%- else %}
                {{- tool_call.arguments | tojson }}
            {%- endif %}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' + message.content + '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""


@pytest.mark.parametrize("template", ["r1rl", "qwen3-style"])
def test_tool_conversations_go_through_sft_encoding_with_either_template(tok, template):
    if template == "qwen3-style":
        tok = train_tokenizer(ArithmeticTask(train_size=200).corpus(200, seed=0), vocab_size=320)
        tok.chat_template = QWEN3_STYLE
    qwen = template == "qwen3-style"
    text = tok.apply_chat_template(CONV, tools=TOOLS, tokenize=False)
    assert text.count('"name": "add"') == (2 if qwen else 1)  # Qwen3 lists each tool's JSON schema
    ids, labels = assistant_tokens(tok, CONV, tools=TOOLS)
    assert ids == tok.apply_chat_template(CONV, tools=TOOLS, tokenize=True, return_dict=False)
    trained = _trained(tok, ids, labels)
    assert '{"name": "add", "arguments": {"a": 12, "b": 30}}' in trained and trained.count(END_OF_TURN) == 2
    assert "<answer>42</answer> rain" in trained
    for context in ("Oslo?", "Be brief", "<tools>", "<tool_response>", "<|im_start|>", "\nrain"):
        assert context not in trained, context
    result = "<tool_response>\nrain\n</tool_response>" if qwen else "<|im_start|>tool\nrain<|im_end|>"
    assert result in tok.decode([i for i, lab in zip(ids, labels) if lab == IGNORE])
    # a prompt + completion record (the last reply as the completion) trains on that reply only
    reply = _trained(tok, *encode_sft(tok, {"prompt": CONV[:-1], "completion": CONV[-1:]}))
    assert reply.startswith(f"<answer>42</answer> rain{END_OF_TURN}") and TOOL_CALL_OPEN not in reply
