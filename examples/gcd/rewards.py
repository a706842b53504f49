"""The GCD task's reward hierarchy: plain functions with TRL's reward signature.

``worked_format`` (syntax): ``<think>steps</think><answer>n</answer>`` with steps ``a=q*b+r``
joined by ``;``. ``consistent_steps`` (logic): every step is true arithmetic, with ``0 <= r < b``,
each step divides the previous divisor by the previous remainder, the chain starts from the
prompt's numbers and ends at remainder 0 with the answer its last divisor. ``correct_gcd`` (task):
the answer is the row's ``answer``. Gated in this order, as the embedded task's tiers are.
"""

from __future__ import annotations

import re

FORMAT = re.compile(r"^<think>(\d+=\d+\*\d+\+\d+(?:;\d+=\d+\*\d+\+\d+)*)</think><answer>(\d+)</answer>$")
STEP = re.compile(r"(\d+)=(\d+)\*(\d+)\+(\d+)")
PROMPT = re.compile(r"gcd\((\d+),(\d+)\)=")


def _parse(completion: str) -> tuple[list[tuple[int, ...]], int] | None:
    m = FORMAT.match(completion.strip())
    if m is None:
        return None
    steps = [tuple(map(int, STEP.fullmatch(s).groups())) for s in m.group(1).split(";")]
    return steps, int(m.group(2))


def worked_format(prompts: list[str], completions: list[str], **columns) -> list[float]:
    """1.0 when the completion has the worked layout.

    >>> worked_format(["gcd(84,36)="] * 2, ["<think>84=2*36+12;36=3*12+0</think><answer>12</answer>", "12"])
    [1.0, 0.0]
    """
    return [float(_parse(c) is not None) for c in completions]


def _consistent(prompt: str, completion: str) -> bool:
    parsed, m = _parse(completion), PROMPT.search(prompt)
    if parsed is None or m is None:
        return False
    steps, answer = parsed
    a, b = map(int, m.groups())
    for x, q, y, r in steps:
        if (x, y) != (a, b) or x != q * y + r or not 0 <= r < y:
            return False
        a, b = b, r
    return b == 0 and a == answer


def consistent_steps(prompts: list[str], completions: list[str], **columns) -> list[float]:
    """1.0 when every step is Euclid's on the prompt's numbers and the answer is the last divisor.

    >>> consistent_steps(["gcd(84,36)="] * 3, ["<think>84=2*36+12;36=3*12+0</think><answer>12</answer>",
    ...     "<think>84=2*36+12;36=2*12+12</think><answer>12</answer>", "12"])
    [1.0, 0.0, 0.0]
    """
    return [float(_consistent(p, c)) for p, c in zip(prompts, completions)]


def correct_gcd(prompts: list[str], completions: list[str], answer: list[str], **columns) -> list[float]:
    """1.0 when the answer is the row's.

    >>> correct_gcd(["gcd(84,36)="] * 2, ["<think>x</think><answer>12</answer>", "<answer>6</answer>"],
    ...     ["12"] * 2)
    [1.0, 0.0]
    """
    out = []
    for c, want in zip(completions, answer):
        m = re.search(r"<answer>(\d+)</answer>\s*$", c)
        out.append(float(m is not None and m.group(1) == str(want)))
    return out
