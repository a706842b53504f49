"""Tiered rewards for the embedded arithmetic task.

Completions look like ``<think>37+48=85;85-12=73</think><answer>73</answer>``.

- syntax: the completion is exactly the think/answer format with well-formed steps;
- logic: the steps restate the prompt's terms in order, each is arithmetically right, each
  starts from the previous result, and the answer is the last result;
- task: the answer equals the reference (column ``answer``).
"""

from __future__ import annotations

import re

from r1rl.rewards.registry import register

from r1rl.tasks.arithmetic import apply_op

_NUM = r"-?\d+"
_STEP = re.compile(rf"^({_NUM})([+\-*])(\d+)=({_NUM})$")
_FORMAT = re.compile(r"^<think>(.*?)</think><answer>(-?\d+)</answer>\s*$", re.DOTALL)
_ANSWER = re.compile(r"<answer>\s*(-?\d+)\s*</answer>")
_TERMS = re.compile(r"(?<![\d)])-?\d+|[+\-*]")


def parse(completion: str) -> tuple[list[tuple[int, str, int, int]], int] | None:
    """Steps ``(left, op, right, result)`` and the answer, or ``None`` if malformed.

    >>> parse("<think>3+4=7;7*2=14</think><answer>14</answer>")
    ([(3, '+', 4, 7), (7, '*', 2, 14)], 14)
    >>> parse("<answer>14</answer>") is None
    True
    """
    m = _FORMAT.match(completion.strip())
    if not m:
        return None
    steps = []
    for part in m.group(1).split(";"):
        s = _STEP.match(part.strip())
        if not s:
            return None
        steps.append((int(s.group(1)), s.group(2), int(s.group(3)), int(s.group(4))))
    return steps, int(m.group(2))


def prompt_terms(prompt: str) -> tuple[list[int], list[str]]:
    """Operands and operators of a prompt such as ``(3+4)*2=``."""
    toks = _TERMS.findall(prompt.replace("(", "").replace(")", "").rstrip("="))
    return [int(t) for t in toks[0::2]], toks[1::2]


@register("arithmetic_syntax", tier="syntax")
def arithmetic_syntax(prompts: list[str], completions: list[str], **columns) -> list[float | None]:
    """1.0 when the completion parses as ``<think>steps</think><answer>n</answer>``.

    >>> arithmetic_syntax(["1+2="], ["<think>1+2=3</think><answer>3</answer>", "3"])
    [1.0, 0.0]
    """
    return [1.0 if parse(c) is not None else 0.0 for c in completions]


@register("arithmetic_logic", tier="logic")
def arithmetic_logic(prompts: list[str], completions: list[str], **columns) -> list[float | None]:
    """Fraction of consistency checks passed (1.0 = every step right and chained).

    One check per expected step (right terms, right result, chained from the previous
    result) and one for the answer matching the last result.

    >>> arithmetic_logic(["1+2+3="] * 2, ["<think>1+2=3;3+3=6</think><answer>6</answer>",
    ...                                   "<think>1+2=3;3+3=7</think><answer>7</answer>"])
    [1.0, 0.6666666666666666]
    """
    return [_logic_score(p, c) for p, c in zip(prompts, completions)]


def _logic_score(prompt: str, completion: str) -> float:
    parsed = parse(completion)
    if parsed is None:
        return 0.0
    steps, answer = parsed
    operands, operators = prompt_terms(prompt)
    expected = list(zip(operators, operands[1:]))
    ok, acc = 0, operands[0] if operands else None
    for i, (op, b) in enumerate(expected):
        if i < len(steps):
            left, sop, right, res = steps[i]
            if left == acc and sop == op and right == b and res == apply_op(left, sop, right):
                ok += 1
            acc = res
    ok += int(len(steps) == len(expected) and steps[-1][3] == answer)
    return ok / (len(expected) + 1)


@register("arithmetic_task", tier="task")
def arithmetic_task(
    prompts: list[str], completions: list[str], answer: list, **columns
) -> list[float | None]:
    """1.0 when the last ``<answer>n</answer>`` equals the reference ``answer`` column.

    Only the answer is judged, shown work or not: format and reasoning are the lower tiers' job.

    >>> arithmetic_task(["1+2="] * 3, ["<think>1+2=3</think><answer>3</answer>", "<answer>3</answer>",
    ...                               "<think>1+2=3</think>3"], answer=[3, 3, 3])
    [1.0, 1.0, 0.0]
    """
    out: list[float | None] = []
    for c, ref in zip(completions, answer):
        found = _ANSWER.findall(c)
        out.append(1.0 if found and int(found[-1]) == int(ref) else 0.0)
    return out
