"""Tiered rewards for word problems with a numeric answer (GSM8K style).

Two answer formats are accepted: the embedded one, ``<think>work</think><answer>n</answer>``,
and GSM8K's, worked lines ending in ``#### n``. The reference (column ``answer``) is a number or
a text whose final number is the answer, e.g. a GSM8K solution ending in ``#### 18``.

- syntax: the completion is one of the two formats, with a number as its answer;
- logic: every written step (``a op b = c``, or a GSM8K calculator annotation ``<<a*b=c>>``) is
  arithmetically right, and the final answer is the last step's result;
- task: the final answer equals the reference as a number (``1,000 == 1000``,
  ``2.50 == 2.5``, ``1/2 == 0.5``, ``$`` and ``%`` stripped).

The task tier's helpers (:func:`extract_final_number`, :func:`numeric_equal`) are the scorer
the eval harness uses, so the reward and the benchmark cannot disagree.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from fractions import Fraction
from typing import Any

from r1rl.rewards.protocol import as_text
from r1rl.rewards.registry import register

_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+"
_NUMBER = re.compile(rf"[-+\u2212]?\$?\s?(?:{_NUM})(?:\s*/\s*(?:{_NUM}))?%?")
_THINK_ANSWER = re.compile(r"^\s*<think>(.*?)</think>\s*<answer>(.*?)</answer>\s*$", re.DOTALL)
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_HASHES = re.compile(r"####\s*([^\n]*)")
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_ANNOTATION = re.compile(r"<<([^<>=]+)=([^<>]+)>>")
_OPERAND = rf"(?:\(\s*)*[-\u2212]?\$?(?:{_NUM})%?(?:\s*\))*"
_OPERATOR = r"(?:\s*[-+*/×÷\u2212]\s*|\s+[xX]\s+)"  # GSM8K also writes "16 x 25"
_EQUATION = re.compile(rf"({_OPERAND}(?:{_OPERATOR}{_OPERAND})+)\s*=\s*\$?\s*([-\u2212]?(?:{_NUM})%?)")
# Text before an equation that means the match is only the tail of one: an operator, a number
# ("3 1/2 - 2", a mixed number) or a letter stuck to the first operand.
_PARTIAL = re.compile(r"(?:[-+*/×÷\u2212=^\d.]\s*|\s[xX]\s*|\w)$")
_OPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}


def parse_number(text: Any) -> Fraction | None:
    """A number written as text, exactly; ``None`` if ``text`` holds no number.

    Thousands commas, ``$``, ``%``, a Unicode minus, a trailing period and words around the
    first number are ignored; ``a/b`` is a fraction.

    >>> [str(parse_number(s)) for s in ["1,000", "$2.50", "-3", "1/2", "50%", "about 7 apples", "none"]]
    ['1000', '5/2', '-3', '1/2', '50', '7', 'None']
    """
    if isinstance(text, bool):
        return None
    if isinstance(text, (int, Fraction)):
        return Fraction(text)
    if isinstance(text, float):
        return Fraction(text).limit_denominator(10**9) if math.isfinite(text) else None
    m = _NUMBER.search(str(text))
    if not m:
        return None
    s = m.group(0).replace("\u2212", "-").replace("$", "").replace("%", "").replace(",", "")
    s = "".join(s.split())
    num, _, den = s.partition("/")
    try:
        value = Fraction(num) / Fraction(den) if den else Fraction(num)
    except (ValueError, ZeroDivisionError):
        return None
    return value


def numeric_equal(a: Any, b: Any, rel_tol: float = 1e-6) -> bool:
    """True when ``a`` and ``b`` are the same number (texts are read with :func:`parse_number`).

    >>> numeric_equal("1,000", 1000), numeric_equal("2.50", "2.5"), numeric_equal("1/2", 0.5)
    (True, True, True)
    >>> numeric_equal("$18", "18%"), numeric_equal("-3", "3"), numeric_equal(None, "3")
    (True, False, False)
    """
    x, y = parse_number(a), parse_number(b)
    if x is None or y is None:
        return False
    return x == y or math.isclose(float(x), float(y), rel_tol=rel_tol, abs_tol=0.0)


def extract_final_number(text: str, flexible: bool = False) -> str | None:
    """The final answer's number as written, or ``None``.

    Looks, in order, in the last ``<answer>…</answer>``, the last ``#### …`` line and the last
    ``\\boxed{…}``; with ``flexible``, falls back to the last number anywhere (lm-eval's
    "flexible-extract"), which a reward should not do: a list of guesses would score.

    >>> extract_final_number("<think>2*3=6</think><answer>$6.</answer>")
    '$6'
    >>> extract_final_number("She pays 3*4 = <<3*4=12>>12 dollars.\\n#### 1,200")
    '1,200'
    >>> extract_final_number("so 42 apples"), extract_final_number("so 42 apples", flexible=True)
    (None, '42')
    """
    text = as_text(text)
    for pattern in (_ANSWER_TAG, _HASHES, _BOXED):
        found = pattern.findall(text)
        if found:
            m = _NUMBER.search(found[-1])
            return m.group(0).strip() if m else None
    if flexible:
        found = _NUMBER.findall(text)
        return found[-1].strip() if found else None
    return None


def reference_number(reference: Any) -> Fraction | None:
    """The number a reference stands for: a number, or the final number of a worked solution.

    >>> reference_number("2+1=<<2+1=3>>3 bolts\\n#### 3"), reference_number(2.5)
    (Fraction(3, 1), Fraction(5, 2))
    """
    if not isinstance(reference, str):
        return parse_number(reference)
    final = extract_final_number(reference)
    return parse_number(final if final is not None else reference)


def steps(text: str) -> list[tuple[str, str]]:
    """Written steps ``(expression, result)``: calculator annotations, then ``a op b = c`` equations.

    An equation that restates an annotation (GSM8K writes ``2+1=<<2+1=3>>3``) is counted once.

    >>> steps("It takes 2/2=<<2/2=1>>1 bolt, so 2+1=<<2+1=3>>3 in all.")
    [('2/2', '1'), ('2+1', '3')]
    >>> steps("<think>37+48=85;85-12=73</think>")
    [('37+48', '85'), ('85-12', '73')]
    """
    text = as_text(text)
    found = [(m.start(), m.group(1).strip(), m.group(2).strip()) for m in _ANNOTATION.finditer(text)]
    seen = {_step_key(e, r) for _, e, r in found}
    # GSM8K writes "2+1=<<2+1=3>>3": blank the annotations (keeping offsets) and read the prose.
    plain = _ANNOTATION.sub(lambda m: " " * len(m.group(0)), text)
    for m in _EQUATION.finditer(plain):
        key = _step_key(m.group(1), m.group(2))
        # "60g * 4/5 = 48": a unit in an operand cuts the match short; skip such tails.
        if key not in seen and not _PARTIAL.search(plain[max(0, m.start() - 8) : m.start()]):
            seen.add(key)
            found.append((m.start(), m.group(1).strip(), m.group(2).strip()))
    return [(e, r) for _, e, r in sorted(found)]


def _step_key(expr: str, result: str) -> tuple[str, Fraction | None]:
    return _squash(expr), parse_number(result)


def evaluate_expression(expr: str) -> Fraction | None:
    """The exact value of an arithmetic expression (``+ - * / // % **``, parentheses), or ``None``.

    >>> evaluate_expression("(80,000 + 50,000) * 1.5"), evaluate_expression("2 ** 100000")
    (Fraction(195000, 1), None)
    """
    src = _squash(expr).replace("÷", "/").replace("\u2212", "-")
    src = re.sub(r"(\d*\.?\d+)%", r"(\1/100)", src)
    try:
        return _eval(ast.parse(src, mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError, TypeError, OverflowError, RecursionError):
        return None


def _eval(node: ast.AST) -> Fraction:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return Fraction(str(node.value))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _eval(node.operand)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        a, b = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and (b.denominator != 1 or abs(b) > 64):
            raise ValueError("exponent too large or not an integer")
        return Fraction(_OPS[type(node.op)](a, b))
    raise ValueError(f"not arithmetic: {ast.dump(node)[:40]}")


def _squash(expr: str) -> str:
    """``expr`` without spaces, ``$`` or thousands commas, with one multiplication sign."""
    return re.sub(r"[\s$,]", "", re.sub(r"\s[xX]\s|×", "*", expr))


def step_is_right(expr: str, result: str) -> bool:
    """``expr`` evaluates to ``result``, up to the rounding of the decimals ``result`` shows.

    >>> step_is_right("10/3", "3.33"), step_is_right("10/3", "3.4"), step_is_right("16-3-4", "9")
    (True, False, True)
    """
    value, shown = evaluate_expression(expr), parse_number(result)
    if value is None or shown is None:
        return False
    decimals = len(result.strip().partition(".")[2].rstrip("%")) if "." in result else 0
    tol = Fraction(1, 2 * 10**decimals)
    # "12/20 x 100% = 60%": a percent result may also be read as a fraction.
    candidates = [shown, shown / 100] if result.strip().endswith("%") else [shown]
    return any(abs(value - c) <= tol * (1 if c is shown else Fraction(1, 100)) for c in candidates)


def is_formatted(completion: str) -> bool:
    """The completion is ``<think>…</think><answer>n</answer>`` or ends in a ``#### n`` line."""
    text = as_text(completion)
    m = _THINK_ANSWER.match(text)
    if m:
        return _NUMBER.fullmatch(m.group(2).strip().rstrip(".")) is not None
    lines = text.rstrip().splitlines()
    if lines and lines[-1].lstrip().startswith("####"):
        return _NUMBER.fullmatch(lines[-1].strip()[4:].strip().rstrip(".")) is not None
    return False


@register("math_syntax", tier="syntax")
def math_syntax(prompts: list[str], completions: list[str], **columns: Any) -> list[float | None]:
    """1.0 when the completion is in either answer format with a number as the answer.

    >>> math_syntax(["q"] * 4, ["<think>2+2=4</think><answer>4</answer>", "2+2=4\\n#### 4",
    ...                         "<answer>4</answer>", "the answer is 4"])
    [1.0, 1.0, 0.0, 0.0]
    """
    return [1.0 if is_formatted(c) else 0.0 for c in completions]


@register("math_logic", tier="logic")
def math_logic(prompts: list[str], completions: list[str], **columns: Any) -> list[float | None]:
    """Fraction of checks passed: one per written step, one for the answer matching the last result.

    A completion without written steps scores 0: this tier rewards checkable work.

    >>> math_logic(["q"] * 3, ["3*4=<<3*4=12>>12, 12+1=<<12+1=13>>13\\n#### 13",
    ...                        "3*4=12, 12+1=14\\n#### 14", "#### 13"])
    [1.0, 0.6666666666666666, 0.0]
    """
    return [_logic_score(as_text(c)) for c in completions]


def _logic_score(text: str) -> float:
    written = steps(text)
    final = extract_final_number(text)
    if not written or final is None:
        return 0.0
    ok = sum(step_is_right(e, r) for e, r in written)
    ok += numeric_equal(final, written[-1][1])
    return ok / (len(written) + 1)


@register("math_task", tier="task")
def math_task(
    prompts: list[str], completions: list[str], answer: list[Any], **columns: Any
) -> list[float | None]:
    """1.0 when the final answer equals the reference ``answer`` as a number.

    >>> math_task(["q"] * 3, ["<answer>1,000</answer>", "... #### 2.50", "<answer>3</answer>"],
    ...           answer=["#### 1000", 2.5, "4"])
    [1.0, 1.0, 0.0]
    """
    out: list[float | None] = []
    for c, ref in zip(completions, answer):
        gold = reference_number(ref)
        out.append(1.0 if gold is not None and numeric_equal(extract_final_number(c), gold) else 0.0)
    return out
