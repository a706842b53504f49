"""The from-scratch tokenizer's chat template (ChatML with tools), and rendering it without a tokenizer.

Turns are ChatML: ``<|im_start|>ROLE\\n`` + content + ``<|im_end|>\\n``. With ``tools`` (transformers'
JSON schemas, or bare ``{"name", "description", "parameters"}`` dicts) a first system turn lists them,
one line per tool, after the system message's own content when the conversation opens with one::

    <|im_start|>system
    You are terse.
    <tools>
    add(a: integer, b: integer): Add two integers.
    </tools><|im_end|>

Tiny models have a context of 256 tokens, so the list is a signature per line, not the JSON schema.
An assistant turn's tool calls follow its content (which may be empty), each as
``<tool_call>{"name": NAME, "arguments": ARGS}</tool_call>`` — exactly ``json.dumps`` of that dict
with its default separators (non-ASCII text is kept as is, transformers' ``tojson``), so a parser reads
back what the model writes; arguments given as a JSON string are written verbatim. A ``tool`` message
is an ordinary turn (``<|im_start|>tool\\n...``). The ``{% generation %}`` markers cover an assistant
turn's content, its tool calls and its ``<|im_end|>``: SFT trains on those, never on a tool's result.
The markup (``<tools>``, ``<tool_call>``) is plain text, not added tokens, so a tokenizer trained on
text without it is the same as before the template knew tools.

This module imports nothing heavy (the tasks, which read configs, use it); :func:`render_chat` loads
transformers when it is called.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
END_OF_TURN = "<|im_end|>"

# One line per tool: name(param: type, ...): description. A parameter whose type is a list of types
# (an optional one: ["integer", "null"]) shows them joined by "|".
_TOOLS = (
    "{% if tools %}"
    "{{ '<|im_start|>system\n' }}"
    "{% if messages and messages[0]['role'] == 'system' %}{{ messages[0]['content'] + '\n' }}{% endif %}"
    "{{ '<tools>' }}"
    "{% for tool in tools %}"
    "{% set fn = tool['function'] if tool['function'] is defined else tool %}"
    "{{ '\n' + fn['name'] + '(' }}"
    "{% for param, spec in ((fn['parameters'] or {})['properties'] or {}).items() %}"
    "{{ (', ' if not loop.first else '') + param }}"
    "{% if spec['type'] %}"
    "{{ ': ' + (spec['type'] if spec['type'] is string else spec['type'] | join('|')) }}"
    "{% endif %}"
    "{% endfor %}"
    "{{ ')' }}"
    "{% if fn['description'] %}{{ ': ' + fn['description'] | replace('\n', ' ') }}{% endif %}"
    "{% endfor %}"
    "{{ '\n</tools><|im_end|>\n' }}"
    "{% endif %}"
)
# A call given as {"type": "function", "function": {...}} or as the function dict itself.
_TOOL_CALLS = (
    "{% for call in message['tool_calls'] or [] %}"
    "{% set fn = call['function'] if call['function'] is defined else call %}"
    "{% set arguments = fn['arguments'] if fn['arguments'] is defined else {} %}"
    "{{ '" + TOOL_CALL_OPEN + "{\"name\": ' + fn['name'] | tojson + ', \"arguments\": ' }}"
    "{% if arguments is string %}{{ arguments }}{% else %}{{ arguments | tojson }}{% endif %}"
    "{{ '}" + TOOL_CALL_CLOSE + "' }}"
    "{% endfor %}"
)
# `add_generation_prompt` opens the assistant turn. The {% generation %} markers tell transformers which
# tokens an assistant wrote (its reply, its tool calls and the <|im_end|> that ends it), so SFT on
# conversations trains on those alone.
CHAT_TEMPLATE = (
    _TOOLS + "{% for message in messages %}"
    "{% if loop.first and tools and message['role'] == 'system' %}"  # merged into the tools turn above
    "{% elif message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}"
    "{% generation %}"
    "{{ message['content'] or '' }}" + _TOOL_CALLS + "{{ '" + END_OF_TURN + "' }}"
    "{% endgeneration %}"
    "{{ '\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + (message['content'] or '') + '" + END_OF_TURN + "\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def render_chat(
    messages: Sequence[dict[str, Any]],
    tools: Sequence[dict[str, Any] | Callable[..., Any]] | None = None,
    add_generation_prompt: bool = False,
    template: str = CHAT_TEMPLATE,
) -> str:
    """``messages`` rendered through ``template`` as text, the string a tokenizer with that template
    renders (``apply_chat_template(..., tokenize=False)``), for when there is no tokenizer yet.

    Keys whose value is ``None`` are dropped first, as ``apply_chat_template`` drops them (rows read
    by ``datasets`` have every key of every message, ``None`` where a message lacks it).
    """
    # transformers' renderer (its sandboxed Jinja, `tojson`, the generation tag) loads only when used:
    # the tasks import this module while a config is read, before torch or transformers may load.
    from transformers.utils.chat_template_utils import render_jinja_template

    plain = [{k: v for k, v in m.items() if v is not None} for m in messages]
    rendered, _ = render_jinja_template(
        [plain], tools=list(tools) if tools is not None else None, chat_template=template,
        add_generation_prompt=add_generation_prompt,
    )  # fmt: skip
    return str(rendered[0])
