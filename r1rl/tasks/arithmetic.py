"""The embedded task: multi-step integer arithmetic with worked solutions.

A problem is a chain of operands and operators evaluated left to right, written with
parentheses wherever left-to-right order differs from the usual precedence, so the prompt
always means what the worked solution computes::

    >>> p = ArithmeticProblem(operands=(37, 48, 12), operators=("+", "-"))
    >>> p.prompt
    '37+48-12='
    >>> p.completion
    '<think>37+48=85;85-12=73</think><answer>73</answer>'

Train and test splits are disjoint by construction: a prompt belongs to the split its hash
says, whatever seed or difficulty produced it.

As a task (:class:`r1rl.records.Task`), its records are ``{"prompt", "completion", "answer"}``;
``answer_only_fraction`` of the training completions state only the answer (the terse SFT data
of the tiny default), and the held-out records are the same whatever the seed. With ``chat`` they
are chat messages (the corpus ChatML); ``tool_fraction`` of the training completions are then
calculator traces (:func:`calculator_trace`), the data that teaches a model to call the tool.

This file is the whole task: its options (``task:`` in a recipe), its records, and its reward suite
(registered as ``arithmetic_syntax``, ``arithmetic_logic``, ``arithmetic_task``):

- syntax: the completion is exactly the think/answer format with well-formed steps;
- logic: the steps restate the prompt's terms in order, each is arithmetically right, each
  starts from the previous result, and the answer is the last result;
- task: the answer equals the reference (column ``answer``); the held-out score.

A chat prompt or completion (TRL's format, the rows of a ``data.messages_column``) is read as its last
message, so the same rows score alike as text and as chat.

A completion that called tools (:mod:`r1rl.rewards.trajectory`) is judged by its calls and final
turn: syntax = every call ran and the turn is ``<answer>n</answer>`` (or worked); logic = that
answer is the last result a tool returned; task = it equals the reference.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, model_validator

from r1rl.data.sources import SOURCES, Document
from r1rl.envs.calculator import calculator, calculator_trace
from r1rl.errors import UserError
from r1rl.models.chat import render_chat
from r1rl.rewards.protocol import as_text
from r1rl.rewards.registry import register
from r1rl.rewards.trajectory import final_turn, tool_messages, tool_ok
from r1rl.strict import Strict
from r1rl.tasks.base import register_task

Split = Literal["train", "test"]
OPERATORS = ("+", "-", "*")
MAX_CONSECUTIVE_MISSES = 20_000


def apply_op(a: int, op: str, b: int) -> int:
    """Apply one binary operator. ``apply_op(6, '*', 7) == 42``."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    raise ValueError(f"unknown operator {op!r}; expected one of {OPERATORS}")


@dataclass(frozen=True)
class ArithmeticProblem:
    """One problem: ``operands[0] op[0] operands[1] op[1] ...`` evaluated left to right."""

    operands: tuple[int, ...]
    operators: tuple[str, ...]

    @property
    def steps(self) -> list[tuple[int, str, int, int]]:
        """The worked steps ``(left, op, right, result)``."""
        out, acc = [], self.operands[0]
        for op, b in zip(self.operators, self.operands[1:]):
            res = apply_op(acc, op, b)
            out.append((acc, op, b, res))
            acc = res
        return out

    @property
    def answer(self) -> int:
        return self.steps[-1][3]

    @property
    def expression(self) -> str:
        expr = str(self.operands[0])
        for i, (op, b) in enumerate(zip(self.operators, self.operands[1:])):
            if op == "*" and i > 0 and self.operators[i - 1] in "+-":
                expr = f"({expr})"
            expr += f"{op}{b}"
        return expr

    @property
    def prompt(self) -> str:
        return self.expression + "="

    @property
    def completion(self) -> str:
        think = ";".join(f"{a}{op}{b}={r}" for a, op, b, r in self.steps)
        return f"<think>{think}</think><answer>{self.answer}</answer>"

    @property
    def short_completion(self) -> str:
        """The answer without worked steps: ``<answer>73</answer>``."""
        return f"<answer>{self.answer}</answer>"

    @property
    def record(self) -> dict[str, Any]:
        """The problem as a task record: ``{"prompt", "completion", "answer"}``."""
        return {"prompt": self.prompt, "completion": self.completion, "answer": self.answer}

    @property
    def chain_text(self) -> str:
        """The worked steps as plain pretraining text, without the answer format."""
        return " ".join(f"{a}{op}{b}={r}" for a, op, b, r in self.steps)


def split_of(prompt: str, test_fraction: float) -> Split:
    """Assign a prompt to a split by its hash: stable across seeds and difficulty settings."""
    h = int.from_bytes(hashlib.sha1(prompt.encode()).digest()[:8], "big")
    return "test" if (h % 10_000) < test_fraction * 10_000 else "train"


class ArithmeticTaskConfig(Strict):
    """The embedded arithmetic task: a seeded generator of worked problems (``r1rl.tasks.arithmetic``)."""

    name: Literal["arithmetic"] = "arithmetic"
    min_operands: int = Field(2, ge=2, description="fewest terms in a problem")
    max_operands: int = Field(3, ge=2, description="most terms in a problem")
    digits: int = Field(2, ge=1, le=6, description="digits of the largest operand")
    operators: str = Field("+-", pattern=r"^[+\-*]+$", description="operators drawn from")
    test_fraction: float = Field(0.1, gt=0, lt=1, description="share of prompt space held out")
    answer_only_fraction: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of SFT completions that give only the answer, not the steps",
    )
    train_size: int = Field(20_000, ge=1, description="distinct training problems (SFT takes the first ones)")
    heldout_size: int = Field(500, ge=1, description="held-out problems (the same ones whatever the seed)")
    chat: bool = Field(
        False, description="prompts and completions as chat messages; the pretraining corpus as ChatML"
    )
    tool_fraction: float = Field(
        0.0, ge=0, le=1, description="share of SFT completions that are calculator tool traces (needs chat)"
    )

    @model_validator(mode="after")
    def _operands(self) -> ArithmeticTaskConfig:
        if self.min_operands > self.max_operands:
            raise ValueError(f"min_operands ({self.min_operands}) > max_operands ({self.max_operands})")
        if self.tool_fraction > 0 and not self.chat:
            raise ValueError("tool_fraction needs chat: true (tool calls are chat messages)")
        return self


HELDOUT_SEED = 0  # one fixed held-out set, whatever seed trained the model
REWARDS = [
    {"name": "syntax", "reward": "arithmetic_syntax"},
    {"name": "logic", "reward": "arithmetic_logic"},
    {"name": "task", "reward": "arithmetic_task"},
]


@dataclass(frozen=True)
class ArithmeticTask:
    """A seeded generator of arithmetic problems, and the embedded task built on it.

    Difficulty knobs: ``min_operands``/``max_operands`` (terms per problem), ``digits``
    (largest operand has this many digits), ``operators`` (any of ``+-*``; ``*`` takes a
    one-digit right operand so results stay short). As a task: ``train_size`` distinct training
    problems drawn with ``seed``, ``heldout_size`` held-out ones (fixed), the
    ``answer_only_fraction`` of terse training completions, ``chat`` records, and the
    ``tool_fraction`` of training completions that are calculator traces.
    """

    min_operands: int = 2
    max_operands: int = 3
    digits: int = 2
    operators: str = "+-"
    test_fraction: float = 0.1
    answer_only_fraction: float = 0.0
    train_size: int = 20_000
    heldout_size: int = 500
    chat: bool = False
    tool_fraction: float = 0.0
    seed: int = 0
    name: str = "arithmetic"
    rewards: list[dict[str, Any]] = field(default_factory=lambda: [dict(t) for t in REWARDS], compare=False)
    stop: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 2 <= self.min_operands <= self.max_operands:
            raise ValueError("need 2 <= min_operands <= max_operands")
        if self.digits < 1:
            raise ValueError("digits must be >= 1")
        bad = set(self.operators) - set(OPERATORS)
        if not self.operators or bad:
            raise ValueError(f"operators must be a non-empty string over {''.join(OPERATORS)!r}")
        if self.tool_fraction > 0 and not self.chat:
            raise ValueError("tool_fraction needs chat: true (tool calls are chat messages)")

    def records(self, split: Split) -> list[dict[str, Any]]:
        """Training records (seeded) or the fixed held-out ones, as ``{"prompt", "completion", "answer"}``."""
        return _records(self, split)

    def corpus(self, n: int, seed: int, formatted_fraction: float = 1.0) -> list[str]:
        """``n`` pretraining documents: worked chains (``37+48=85 85-12=73``) or, for
        ``formatted_fraction`` of them, prompt + worked completion (with ``chat``, as ChatML; with
        ``tool_fraction`` too, that share of them a calculator trace with the tool listed, so the
        tool-call markup's tokens are trained before any SFT)."""
        rng = random.Random(seed)
        docs = []
        for p in self.problems("train", n, seed=seed, allow_fewer=True):
            formatted = rng.random() < formatted_fraction
            if not formatted:
                docs.append(p.chain_text)
            elif self.chat and self.tool_fraction > 0 and rng.random() < self.tool_fraction:
                trace = calculator_trace(p.prompt.removesuffix("="), p.answer)  # with the tools listed
                docs.append(render_chat([_message("user", p.prompt), *trace], tools=[calculator]))
            elif self.chat:
                docs.append(render_chat([_message("user", p.prompt), _message("assistant", p.completion)]))
            else:
                docs.append(p.prompt + p.completion)
        return docs

    def sample(self, rng: random.Random) -> ArithmeticProblem:
        n = rng.randint(self.min_operands, self.max_operands)
        hi = 10**self.digits - 1
        ops = tuple(rng.choice(self.operators) for _ in range(n - 1))
        operands = [rng.randint(0, hi)]
        for op in ops:
            operands.append(rng.randint(0, 9) if op == "*" else rng.randint(0, hi))
        return ArithmeticProblem(tuple(operands), ops)

    def problems(self, split: Split, n: int, seed: int, allow_fewer: bool = False) -> list[ArithmeticProblem]:
        """``n`` distinct problems of ``split``, deterministic in ``seed``.

        When the difficulty settings admit fewer than ``n`` distinct problems this raises,
        or with ``allow_fewer`` returns all it could find.
        """
        out = list(itertools.islice(self._stream(split, seed), n))
        if len(out) < n and not allow_fewer:
            raise UserError(
                f"task admits only about {len(out)} distinct {split!r} problems, {n} were asked for; "
                "raise task.digits or task.max_operands, or ask for fewer"
            )
        return out

    def _stream(self, split: Split, seed: int) -> Iterator[ArithmeticProblem]:
        rng = random.Random(f"{split}-{seed}")
        seen: set[str] = set()
        misses = 0
        while misses < MAX_CONSECUTIVE_MISSES:  # the space is (nearly) exhausted
            p = self.sample(rng)
            if p.prompt in seen or split_of(p.prompt, self.test_fraction) != split:
                misses += 1
                continue
            misses = 0
            seen.add(p.prompt)
            yield p


@functools.lru_cache(maxsize=8)
def _cached_records(task: ArithmeticTask, split: Split) -> tuple[tuple[str, str, int, bool], ...]:
    """``(prompt, completion text, answer, whether it is a calculator trace)`` per record."""
    if split == "test":
        problems = task.problems("test", task.heldout_size, seed=HELDOUT_SEED, allow_fewer=True)
        return tuple((p.prompt, p.completion, p.answer, False) for p in problems)
    problems = task.problems("train", task.train_size, seed=task.seed + 1, allow_fewer=True)
    rng = random.Random(f"answer-only-{task.seed}")
    tools = random.Random(f"tools-{task.seed}")  # its own stream: the other records stay as without tools
    out = []
    for p in problems:
        completion = p.short_completion if rng.random() < task.answer_only_fraction else p.completion
        out.append((p.prompt, completion, p.answer, tools.random() < task.tool_fraction))
    return tuple(out)


def _records(task: ArithmeticTask, split: Split) -> list[dict[str, Any]]:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return [_record(p, c, a, tool, task.chat) for p, c, a, tool in _cached_records(task, split)]


def _record(prompt: str, completion: str, answer: int, tool: bool, chat: bool) -> dict[str, Any]:
    if not chat:
        return {"prompt": prompt, "completion": completion, "answer": answer}
    expression, turn = prompt.removesuffix("="), _message("assistant", completion)
    turns = calculator_trace(expression, answer) if tool else [turn]
    return {"prompt": [_message("user", prompt)], "completion": turns, "answer": answer}


def _message(role: str, content: str) -> dict[str, Any]:
    return {"role": role, "content": content}


@register_task("arithmetic", options=ArithmeticTaskConfig)
def arithmetic(options: ArithmeticTaskConfig, seed: int) -> ArithmeticTask:
    return ArithmeticTask(**options.model_dump(exclude={"name"}), seed=seed)


# The task's problems as a pretraining corpus source (``data.sources: [{type: arithmetic, ...}]``).


@SOURCES.register("arithmetic")
@dataclass
class ArithmeticSource:
    """The embedded arithmetic task's ``split`` problems as text, with their difficulty in ``meta``.

    A document is the plain worked chain (``37+48=85 85-12=73``) or, for ``formatted_fraction``
    of them, prompt + answer format. ``meta`` has ``operands`` (terms in the problem) and
    ``digits`` (digits of the largest operand).
    """

    num_problems: int
    name: str = "arithmetic"
    seed: int = 0
    split: Split = "train"
    formatted_fraction: float = 0.0
    min_operands: int = 2
    max_operands: int = 3
    digits: int = 2
    operators: str = "+-"
    test_fraction: float = 0.1

    def __post_init__(self) -> None:
        try:
            self.task = ArithmeticTask(
                self.min_operands, self.max_operands, self.digits, self.operators, self.test_fraction
            )
        except ValueError as e:
            raise UserError(f"data source {self.name!r}: {e}") from None

    def __iter__(self) -> Iterator[Document]:
        rng = random.Random(self.seed)
        for p in self.task.problems(self.split, self.num_problems, seed=self.seed, allow_fewer=True):
            formatted = rng.random() < self.formatted_fraction
            text = p.prompt + p.completion if formatted else p.chain_text
            meta = {"operands": len(p.operands), "digits": max(len(str(abs(x))) for x in p.operands)}
            yield Document(text, self.name, meta)

    def size_hint(self) -> int | None:
        return self.num_problems


# The reward suite. Completions look like ``<think>37+48=85;85-12=73</think><answer>73</answer>``.

_NUM = r"-?\d+"
_STEP = re.compile(rf"^({_NUM})([+\-*])(\d+)=({_NUM})$")
_FORMAT = re.compile(r"^<think>(.*?)</think><answer>(-?\d+)</answer>\s*$", re.DOTALL)
_ANSWER = re.compile(r"<answer>\s*(-?\d+)\s*</answer>")
_ANSWER_ONLY = re.compile(r"^<answer>(-?\d+)</answer>\s*$")
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


def final_answer(completion: Any) -> int | None:
    """A tool-using trajectory's answer: its final assistant turn, ``<answer>n</answer>`` or worked.

    >>> final_answer(calculator_trace("6*7", 42)), final_answer(calculator_trace("6*7", 42)[:2])
    (42, None)
    >>> [m["role"] for m in calculator_trace("6*7", 42)]
    ['assistant', 'tool', 'assistant']
    """
    text = final_turn(completion)
    if text is None:
        return None
    if m := _ANSWER_ONLY.match(text.strip()):
        return int(m.group(1))
    parsed = parse(text)
    return None if parsed is None else parsed[1]


@register("arithmetic_syntax", tier="syntax")
def arithmetic_syntax(prompts: list[str], completions: list[str], **columns) -> list[float | None]:
    """1.0 when the completion parses as ``<think>steps</think><answer>n</answer>``; for a trajectory
    that called tools, when every call ran (status ``ok``) and it has a :func:`final_answer`.

    >>> arithmetic_syntax(["1+2="], ["<think>1+2=3</think><answer>3</answer>", "3"])
    [1.0, 0.0]
    """
    return [_syntax_score(c) for c in completions]


def _syntax_score(completion: Any) -> float:
    tools = tool_messages(completion)
    if tools is None:
        return 1.0 if parse(as_text(completion)) is not None else 0.0
    return 1.0 if all(tool_ok(m) for m in tools) and final_answer(completion) is not None else 0.0


@register("arithmetic_logic", tier="logic")
def arithmetic_logic(prompts: list[str], completions: list[str], **columns) -> list[float | None]:
    """Fraction of consistency checks passed (1.0 = every step right and chained).

    One check per expected step (right terms, right result, chained from the previous
    result) and one for the answer matching the last result. A trajectory that called tools scores
    1.0 when its :func:`final_answer` is the last result a tool returned (status ``ok``), else 0.0.

    >>> arithmetic_logic(["1+2+3="] * 2, ["<think>1+2=3;3+3=6</think><answer>6</answer>",
    ...                                   "<think>1+2=3;3+3=7</think><answer>7</answer>"])
    [1.0, 0.6666666666666666]
    """
    return [_logic_score(p, c) for p, c in zip(prompts, completions)]


def _logic_score(prompt: Any, completion: Any) -> float:
    tools = tool_messages(completion)
    if tools is None:
        return _steps_score(as_text(prompt), as_text(completion))
    results = [str(m.get("content", "")).strip() for m in tools if tool_ok(m)]
    answer = final_answer(completion)
    return 1.0 if results and answer is not None and results[-1] == str(answer) else 0.0


def _steps_score(prompt: str, completion: str) -> float:
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
    """1.0 when the last ``<answer>n</answer>`` (of the last message) equals the reference ``answer`` column.

    Only the answer is judged, shown work or tool calls or not: format and reasoning are the lower tiers' job.

    >>> arithmetic_task(["1+2="] * 3, ["<think>1+2=3</think><answer>3</answer>", "<answer>3</answer>",
    ...                               "<think>1+2=3</think>3"], answer=[3, 3, 3])
    [1.0, 1.0, 0.0]
    >>> arithmetic_task([[{"role": "user", "content": "1+2="}]],
    ...                 [[{"role": "assistant", "content": "<answer>3</answer>"}]], answer=[3])
    [1.0]
    """
    out: list[float | None] = []
    for c, ref in zip(completions, answer):
        found = _ANSWER.findall(as_text(c))
        out.append(1.0 if found and int(found[-1]) == int(ref) else 0.0)
    return out
