"""Tiered rewards for Python programming problems (MBPP, HumanEval and APPS style).

The candidate program is the code in the completion (the first ```python fence, or the whole
text), preceded by the prompt when the prompt is itself a code stub (a HumanEval signature and
docstring that the completion continues). Columns, per sample:

- ``test_list`` (list of ``assert`` lines), optional ``test_imports`` and ``test_setup_code``
  (MBPP); or ``test`` (code defining ``check(candidate)``) with ``entry_point`` (HumanEval);
- or ``input_output`` (APPS, CodeContests): ``{"inputs": [...], "outputs": [...]}`` or its JSON
  text, one stdin text and one expected stdout per case;
- ``entry_point`` (the function to define) and ``signature`` (e.g. ``"f(a, b=1)"``), both optional.

Tiers:

- syntax: the program parses and compiles (``ast.parse`` + ``compile``; nothing runs);
- logic: static checks with pyflakes — no undefined names or other definite errors — and the
  entry point (``entry_point``, else every name the tests use but do not define) is defined at
  the top level and callable the way the tests call it (or as ``signature`` / the prompt's stub
  says);
- task: the fraction of the tests' asserts that pass, decided by the sandbox's judge
  (:mod:`r1rl.rewards.sandbox`), or of the ``input_output`` cases whose output matches (compared
  outside the sandbox). A program that crashes or times out scores the asserts it passed in the
  test statements done before that (its fault: an assert in a loop the crash cut short fails,
  HumanEval's whole ``check`` included); a sandbox that cannot run is a reward error
  (:func:`~r1rl.rewards.protocol.reward_error`); no tests means not applicable. The helper
  functions of a stub prompt (HumanEval 32's ``poly``) run in the judge, so a completion that
  redefines them changes nothing the tests see.
"""

from __future__ import annotations

import ast
import functools
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from r1rl.rewards.protocol import as_text, one_line, reward_error
from r1rl.rewards.protocol import columns as columns_needed
from r1rl.rewards.registry import register
from r1rl.rewards.sandbox import Limits, parse_input_output, run_io_tests, run_tests
from r1rl.rewards.sandbox.stdio import check_match

# Limits for one candidate program: MBPP/HumanEval solutions run in well under a second.
LIMITS = Limits(timeout_s=5.0, cpu_s=5.0, memory_mb=512)
# pyflakes messages that mean the program fails when run (style warnings are not counted).
_ERRORS = """UndefinedName UndefinedLocal UndefinedExport DuplicateArgument ReturnOutsideFunction
YieldOutsideFunction ContinueOutsideLoop BreakOutsideLoop DefaultExceptNotLast TwoStarredExpressions
TooManyExpressionsInStarredAssignment FutureFeatureNotDefined LateFutureImport ForwardAnnotationSyntaxError
PercentFormatMissingArgument PercentFormatPositionalCountMismatch StringDotFormatMissingArgument""".split()
_FENCE = re.compile(r"```[ \t]*([\w+.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)


def extract_code(text: str) -> str:
    """The code of a completion: its first ```python (or bare ```) block, else the whole text.

    A ``<think>…</think>`` block is dropped; an unclosed fence (a truncated completion) runs to
    the end; leading indentation is kept (a HumanEval completion is an indented body).

    >>> extract_code("Here:\\n```python\\ndef f(x):\\n    return x\\n```\\nDone.")
    'def f(x):\\n    return x\\n'
    >>> extract_code("    return x + 1")
    '    return x + 1'
    """
    text = _THINK.sub("", as_text(text))
    blocks = _FENCE.findall(text)
    if blocks:
        python = [code for lang, code in blocks if lang.lower() in ("python", "py", "python3", "")]
        return (python or [code for _, code in blocks])[0]
    return text if text.strip() else ""


@functools.lru_cache(maxsize=1024)
def _is_stub(prompt: str) -> bool:
    """A prompt that is code defining a function or class: the completion continues it."""
    try:
        tree = ast.parse(prompt)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) for n in tree.body)


def program_source(prompt: Any, completion: Any) -> str:
    """The candidate program: the completion's code, after the prompt if the prompt is a code stub.

    >>> program_source("def inc(x):\\n    '''Add one.'''\\n", "    return x + 1\\n")
    "def inc(x):\\n    '''Add one.'''\\n    return x + 1\\n"
    >>> program_source("Write inc(x).", "```python\\ndef inc(x): return x + 1\\n```")
    'def inc(x): return x + 1\\n'
    """
    code, prompt = extract_code(completion), as_text(prompt)
    if not code.strip() or not _is_stub(prompt):
        return code
    return prompt + ("" if prompt.endswith("\n") else "\n") + code


def parse_program(source: str) -> ast.Module | None:
    """The program's syntax tree if it parses and compiles (nothing is run), else ``None``."""
    if not source.strip():
        return None
    try:
        tree = ast.parse(source, "<completion>")
        compile(tree, "<completion>", "exec", dont_inherit=True)  # symbol-table errors, e.g. nonlocal
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return None
    return tree


def static_errors(source: str, tree: ast.Module | None = None) -> list[str]:
    """pyflakes' definite errors in ``source`` (undefined names, ``return`` outside a function...).

    >>> static_errors("def f(x):\\n    return x + y\\n")
    ["undefined name 'y'"]
    """
    tree = tree if tree is not None else ast.parse(source)
    return [m.message % m.message_args for m in _pyflakes(tree) if type(m).__name__ in _ERRORS]


def _pyflakes(tree: ast.Module) -> list[Any]:
    # Imported here so that r1rl.rewards loads without pyflakes; only the code tiers need it.
    from pyflakes.checker import Checker

    return Checker(tree, filename="<completion>").messages


def unit_tests(columns: dict[str, Any]) -> str | None:
    """One sample's test program from its columns (``test_list`` or ``test``), or ``None``.

    >>> unit_tests({"test_list": ["assert f(1) == 2"], "test_imports": ["import math"]})
    'import math\\nassert f(1) == 2\\n'
    >>> unit_tests({"test": "def check(candidate):\\n    assert candidate(1) == 2\\n", "entry_point": "f"})
    'def check(candidate):\\n    assert candidate(1) == 2\\n\\ncheck(f)\\n'
    """
    if columns.get("test_list"):
        parts = [
            *(columns.get("test_imports") or []),
            columns.get("test_setup_code") or "",
            *columns["test_list"],
        ]
        return "\n".join(p for p in parts if p) + "\n"
    test = columns.get("test")
    if not test:
        return None
    entry = columns.get("entry_point")
    if entry and _defines(test, "check"):  # HumanEval: the harness calls check(entry_point)
        return f"{test.rstrip()}\n\ncheck({entry})\n"
    return test


@functools.lru_cache(maxsize=1024)
def _defines(source: str, name: str) -> bool:
    try:
        return any(isinstance(n, ast.FunctionDef) and n.name == name for n in ast.parse(source).body)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False


def prompt_helpers(prompt: Any, entry_point: str | None = None) -> str:
    """The helpers a stub prompt defines in full, for the judge; ``""`` if it defines none.

    These are its imports and its functions and classes with a body, other than the entry point
    and the stubs the completion fills in (HumanEval 32, 38 and 50 test with such helpers).

    >>> print(prompt_helpers("import math\\ndef poly(x):\\n    return x\\ndef zero(x):\\n    'Find it.'\\n"))
    import math
    <BLANKLINE>
    def poly(x):
        return x
    """
    return _prompt_helpers(as_text(prompt), entry_point)


@functools.lru_cache(maxsize=1024)  # a prompt is scored once per completion of its group
def _prompt_helpers(prompt: str, entry_point: str | None) -> str:
    tree = _try_parse(prompt)
    if tree is None:
        return ""
    defs = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    helpers = [n for n in tree.body if isinstance(n, defs) and n.name != entry_point and not _is_stub_body(n)]
    if not helpers:
        return ""
    imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    return ast.unparse(ast.Module([*imports, *helpers], []))


@functools.lru_cache(maxsize=1024)
def _judge_code(prompt: str, entry_point: str | None, tests: str) -> str:
    """The trusted code the judge runs before ``tests``: the stub prompt's helpers with its imports,
    or else its imports of names the tests use (HumanEval's ``import math``), so that the program
    cannot rebind them; ``""`` if there are none."""
    helpers = _prompt_helpers(prompt, entry_point)
    tree = _try_parse(prompt)
    if helpers or tree is None:
        return helpers
    used = {n.id for n in ast.walk(ast.parse(tests)) if isinstance(n, ast.Name)}
    imports: list[ast.stmt] = [
        n
        for n in tree.body
        if isinstance(n, (ast.Import, ast.ImportFrom))
        and any((a.asname or a.name.partition(".")[0]) in used for a in n.names)
    ]
    return ast.unparse(ast.Module(imports, [])) if imports else ""


def _is_stub_body(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> bool:
    """A body of only a docstring, ``pass`` or ``...``: what the completion is to write."""
    return all(
        isinstance(stmt, ast.Pass) or (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant))
        for stmt in node.body
    )


def _sample_columns(columns: dict[str, Any], i: int) -> dict[str, Any]:
    keys = (
        "test_list",
        "test_imports",
        "test_setup_code",
        "test",
        "entry_point",
        "signature",
        "input_output",
    )
    return {k: columns[k][i] for k in keys if isinstance(columns.get(k), (list, tuple))}


@register("code_syntax", tier="syntax")
def code_syntax(prompts: list[str], completions: list[str], **columns: Any) -> list[float | None]:
    """1.0 when the candidate program parses and compiles.

    >>> code_syntax(["Write f."] * 3, ["```python\\ndef f(): return 1\\n```", "def f(:", ""])
    [1.0, 0.0, 0.0]
    """
    return [
        1.0 if parse_program(program_source(p, c)) is not None else 0.0 for p, c in zip(prompts, completions)
    ]


@register("code_logic", tier="logic")
def code_logic(prompts: list[str], completions: list[str], **columns: Any) -> list[float | None]:
    """Fraction of static checks passed: no pyflakes errors; each entry point defined, right arity.

    >>> tests = [["assert add(1, 2) == 3"]] * 3
    >>> code_logic(["Write add."] * 3, ["def add(a, b): return a + b", "def add(a): return a + c",
    ...                                 "def plus(a, b): return a + b"], test_list=tests)
    [1.0, 0.0, 0.5]
    """
    out: list[float | None] = []
    for i, (p, c) in enumerate(zip(prompts, completions)):
        out.append(_logic_score(p, c, _sample_columns(columns, i)))
    return out


def _logic_score(prompt: Any, completion: Any, cols: dict[str, Any]) -> float:
    source = program_source(prompt, completion)
    tree = parse_program(source)
    if tree is None:
        return 0.0
    checks = [not static_errors(source, tree)]
    tests = unit_tests(cols)
    entry = cols.get("entry_point")
    names = [entry] if entry else _names_tests_need(tests)
    for name in names:
        checks.append(_entry_ok(tree, name, _expected_calls(name, tests, cols.get("signature"), prompt)))
    return sum(checks) / len(checks)


def _names_tests_need(tests: str | None) -> list[str]:
    """Names the tests use but do not define: what the solution must provide (pyflakes' view)."""
    if not tests:
        return []
    try:
        tree = ast.parse(tests)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    found = _pyflakes(tree)
    return list(dict.fromkeys(m.message_args[0] for m in found if type(m).__name__ == "UndefinedName"))


def _expected_calls(name: str, tests: str | None, signature: str | None, prompt: Any) -> list[_Call]:
    """How ``name`` must be callable: the declared signature, the prompt's stub, or the tests' calls."""
    if signature:
        sig = _parse_signature(signature)
        return [_Call.of_def(sig)] if sig is not None else []
    stub = _top_level_def(_try_parse(as_text(prompt)), name)
    if isinstance(stub, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return [_Call.of_def(stub.args)]
    tree = _try_parse(tests or "")
    if tree is None:
        return []
    return [
        _Call.of_call(n)
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == name
    ]


class _Call:
    """A call shape: positional count and keyword names (``None`` = has ``*args``/``**kw``)."""

    def __init__(self, n_pos: int | None, keywords: tuple[str, ...] | None) -> None:
        self.n_pos, self.keywords = n_pos, keywords

    @classmethod
    def of_call(cls, call: ast.Call) -> _Call:
        starred = any(isinstance(a, ast.Starred) for a in call.args) or any(
            k.arg is None for k in call.keywords
        )
        return cls(None if starred else len(call.args), tuple(k.arg for k in call.keywords if k.arg))

    @classmethod
    def of_def(cls, args: ast.arguments) -> _Call:
        """The call a declared signature promises to accept: its required positional parameters."""
        pos = [*args.posonlyargs, *args.args]
        return cls(len(pos) - len(args.defaults), ())


def _accepts(args: ast.arguments, call: _Call) -> bool:
    """Could a function with parameters ``args`` be called as ``call`` (statically)?"""
    if call.n_pos is None:
        return True
    pos = [a.arg for a in (*args.posonlyargs, *args.args)]
    if call.n_pos > len(pos) and args.vararg is None:
        return False
    kw = set(call.keywords or ())
    by_keyword = args.args[max(0, call.n_pos - len(args.posonlyargs)) :]  # not filled positionally
    named = {a.arg for a in by_keyword} | {a.arg for a in args.kwonlyargs}
    if not kw <= named and args.kwarg is None:
        return False
    required = pos[: len(pos) - len(args.defaults)]
    missing = [p for p in required[call.n_pos :] if p not in kw]
    kw_required = [a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is None and a.arg not in kw]
    return not missing and not kw_required


def _entry_ok(tree: ast.Module, name: str, calls: list[_Call]) -> bool:
    node = _top_level_def(tree, name)
    if node is None:
        return False
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        args = node.args
    elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Lambda):
        args = node.value.args
    else:  # a class or another assigned callable: its call shape is not visible statically
        return True
    return all(_accepts(args, c) for c in calls)


def _top_level_def(tree: ast.Module | None, name: str) -> ast.AST | None:
    """The last top-level ``def``/``class``/assignment binding ``name`` (the one tests would see)."""
    if tree is None:
        return None
    found: ast.AST | None = None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            found = node
        elif isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            found = node
        elif isinstance(node, (ast.Import, ast.ImportFrom)) and any(
            (a.asname or a.name.split(".")[0]) == name for a in node.names
        ):
            found = node  # e.g. tests that use ``sys`` the solution imports
    return found


def _parse_signature(signature: str) -> ast.arguments | None:
    s = signature.strip().rstrip(":")
    if s.startswith("("):
        s = "_" + s
    if not s.startswith(("def ", "async def ")):
        s = "def " + s
    tree = _try_parse(s + ":\n    pass\n")
    node = tree.body[0] if tree is not None and tree.body else None
    return node.args if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else None


def _try_parse(source: str) -> ast.Module | None:
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def code_task_reward(
    limits: Limits = LIMITS,
    max_workers: int | None = None,
    isolation: str = "auto",
    match: str = "whitespace",
    tol: float = 1e-6,
) -> Callable[..., list[float | None]]:
    """A ``code_task`` reward with its own sandbox limits and parallelism (default: CPU count);
    ``match`` and ``tol`` say how ``input_output`` outputs compare
    (:func:`r1rl.rewards.sandbox.compare_output`)."""
    check_match("code_task_reward", match, tol)

    def code_task(prompts: list[str], completions: list[str], **columns: Any) -> list[float | None]:
        """Fraction of the tests' asserts (or ``input_output`` cases) passed, run in the sandbox.

        >>> code_task(["Write sq."] * 2, ["def sq(x): return x * x", "def sq(x): return x + x"],
        ...           test_list=[["assert sq(3) == 9", "assert sq(2) == 4"]] * 2)
        [1.0, 0.5]
        >>> io = {"inputs": ["3\\n", "4\\n"], "outputs": ["9\\n", "16\\n"]}
        >>> code_task(["Read n, print its square."], ["print(int(input()) ** 2)"], input_output=[io])
        [1.0]
        """
        out: list[Any] = [None] * len(completions)
        jobs = []
        for i, (p, c) in enumerate(zip(prompts, completions)):
            job = _job(p, _sample_columns(columns, i))
            if not isinstance(job, tuple):
                out[i] = job  # not applicable, or a reward error
                continue
            source = program_source(p, c)
            if parse_program(source) is None:
                out[i] = 0.0  # no need to run what cannot even compile
                continue
            jobs.append((i, source, job))
        log_metric = columns.get("log_metric")
        if callable(log_metric):  # TRL's hook; the hierarchy logs it as reward/tier/<tier>/programs_run
            log_metric("programs_run", float(len(jobs)))
        if jobs:
            workers = min(len(jobs), max_workers or os.cpu_count() or 1)
            with ThreadPoolExecutor(workers, thread_name_prefix="code-task") as pool:
                for i, score in zip([j[0] for j in jobs], pool.map(lambda j: _score(j[1], j[2]), jobs)):
                    out[i] = score
        return out

    def _score(source: str, job: tuple) -> float:
        try:
            if job[0] == "io":
                rep = run_io_tests(
                    source, job[1], job[2], match=match, tol=tol, limits=limits, isolation=isolation
                )
                return rep.fraction
            return run_tests(source, job[1], limits=limits, isolation=isolation, judge_code=job[2]).fraction
        except Exception as e:  # the sandbox could not run it: not the program's fault
            return reward_error(one_line(f"sandbox: {type(e).__name__}: {e}"))

    return columns_needed("test_list | test | input_output")(code_task)


def _job(prompt: Any, cols: dict[str, Any]) -> tuple | float | None:
    """What a sample's program runs against: ``("tests", code, helpers)`` or ``("io", inputs,
    outputs)``; else ``None`` (no tests: not applicable) or a reward error."""
    tests = unit_tests(cols)
    n_asserts = _count_asserts(tests)
    if n_asserts < 0:
        return reward_error("the test code does not parse")
    if n_asserts > 0:
        text = as_text(prompt)
        helpers = _judge_code(text, cols.get("entry_point"), tests) if _is_stub(text) else ""
        return ("tests", tests, helpers)
    if tests is None and cols.get("input_output") is not None:
        try:
            inputs, outputs = parse_input_output(cols["input_output"])
        except ValueError as e:
            return reward_error(one_line(str(e)))
        return ("io", inputs, outputs) if inputs else None
    return None


def _count_asserts(tests: str | None) -> int:
    """Asserts in the test code; -1 if it does not parse."""
    if tests is None:
        return 0
    tree = _try_parse(tests)
    return -1 if tree is None else sum(isinstance(n, ast.Assert) for n in ast.walk(tree))


code_task = register("code_task", tier="task")(code_task_reward())
