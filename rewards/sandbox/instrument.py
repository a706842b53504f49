"""Rewriting the test code's asserts so that the judge decides each one (in the parent).

Every ``assert`` in the test code, wherever it is (also inside ``def check(candidate)``), becomes
a call that records it, so a failing or crashing assert does not hide the others::

    assert t        ->  __r1rl_check__(i, lambda: t')

where ``t'`` is ``t`` with each comparison ``a <op> b`` rewritten to ``__r1rl_cmp__("<Op>", a,
b)`` (:func:`.judge.compare`). The top-level statements are compiled one by one, here, and only
the judge receives the code objects. A pass counts only when the top-level statement it ran in
completed (:class:`.verdicts.Recorder`); for a statement under way when the judge was killed, the
parent fails the asserts it could have run: those written in it outside a function, and every
assert in a function (``Instrumented.held``, ``Instrumented.in_functions``).

The tests' builtins are the judge's own (a program's ``abs`` must not answer ``abs(f(x) - y)``),
with one exception: an assert that compares a builtin's name called on literals with a literal,
``assert sum(10, 15) == 6``, tests a function of the program's that happens to have that name
(MBPP 126), so there the name is looked up with ``__r1rl_own__("sum")``: the program's function
if it defines one. That is safe: the program sees only the literal arguments, as in any call of
its functions, and the judge compares its answer with the literal. The names that may be the
entry point itself are read here too (``free``, ``candidates``, ``subjects``); the judge decides
(:func:`.judge._entry_builtins`).

The names the test code binds itself are read here, from its text, never from the program: the
names its module-level imports bind (``import math``, MBPP's ``test_imports``), which the judge
never asks the program for, and the standard-library modules whose attributes it reads
(``math.isclose``), which the judge imports itself.
"""

from __future__ import annotations

import ast
import builtins
import functools
import marshal
import sys
from dataclasses import dataclass

CHECK_NAME = "__r1rl_check__"
COMPARE_NAME = "__r1rl_cmp__"
OWN_NAME = "__r1rl_own__"
_BUILTINS = frozenset(dir(builtins))
_STDLIB = frozenset(sys.stdlib_module_names)
_EXCEPTION_NAMES = frozenset(
    n for n, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, BaseException)
)
_GUARDED_OPS = {
    ast.Eq: "Eq",
    ast.NotEq: "NotEq",
    ast.Lt: "Lt",
    ast.LtE: "LtE",
    ast.Gt: "Gt",
    ast.GtE: "GtE",
    ast.In: "In",
    ast.NotIn: "NotIn",
}


@dataclass(frozen=True)
class Instrumented:
    """The marshalled code objects of the test statements, the assert count, the names used, the
    names the module-level imports bind, and the standard-library modules whose attributes are read."""

    codes: bytes
    total: int
    names: tuple[str, ...]
    imports: tuple[str, ...] = ()
    modules: tuple[str, ...] = ()
    free: tuple[str, ...] = ()  # names read, bound nowhere in the tests, not builtins nor modules
    candidates: tuple[str, ...] = ()  # builtin functions called, bound nowhere: maybe the entry point
    subjects: tuple[str, ...] = ()  # builtin names handed to the tests' own function: ``check(round)``
    held: tuple[tuple[int, ...], ...] = ()  # per top-level statement, its asserts outside functions
    in_functions: tuple[int, ...] = ()  # the asserts in a function body: any statement may run them


def drop_constant_asserts(test_code: str) -> str:
    """``test_code`` with asserts of a true constant (``assert True, "msg"``) replaced by ``pass``.

    Such an assert checks nothing, so it would give every program, however wrong, a free pass
    (36 of HumanEval's 164 test programs have one). Code without one is returned unchanged.

    >>> drop_constant_asserts("def check(c):\\n    assert True, 'debug'\\n    assert c(1) == 1\\n")
    'def check(c):\\n    pass\\n    assert c(1) == 1'
    """
    try:
        tree = ast.parse(test_code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return test_code  # the reward reports unparsable tests itself
    return ast.unparse(tree) if _drop_constant_asserts(tree) else test_code


def _drop_constant_asserts(tree: ast.AST) -> bool:
    found = False
    for node in ast.walk(tree):
        for body in ("body", "orelse", "finalbody"):
            stmts = getattr(node, body, None)
            if not isinstance(stmts, list):
                continue
            for i, stmt in enumerate(stmts):
                if isinstance(stmt, ast.Assert) and _true_constant(stmt.test):
                    stmts[i] = ast.copy_location(ast.Pass(), stmt)
                    found = True
    return found


def _true_constant(expr: ast.expr) -> bool:
    try:
        return bool(ast.literal_eval(expr))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False


class _GuardCompares(ast.NodeTransformer):
    """``a == b`` -> ``__r1rl_cmp__("Eq", a, b)``; chained comparisons are left to Python."""

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        op = _GUARDED_OPS.get(type(node.ops[0])) if len(node.ops) == 1 else None
        if op is None:
            return node
        fn = ast.Name(COMPARE_NAME, ast.Load())
        return ast.copy_location(ast.Call(fn, [ast.Constant(op), node.left, node.comparators[0]], []), node)


class _RecordAsserts(ast.NodeTransformer):
    """``assert t`` -> ``__r1rl_check__(i, lambda: t')``; notes which asserts are in a function body
    (``in_functions``) and which the statement being visited holds outside one (``held``)."""

    def __init__(self) -> None:
        self.count, self.depth = 0, 0
        self.held: list[int] = []
        self.in_functions: list[int] = []

    def visit_FunctionDef(self, node: ast.AST) -> ast.AST:
        self.depth += 1
        try:
            return self.generic_visit(node)
        finally:
            self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Assert(self, node: ast.Assert) -> ast.AST:
        idx, self.count = self.count, self.count + 1
        (self.in_functions if self.depth else self.held).append(idx)
        _own_call(node.test)
        test = _GuardCompares().visit(node.test)
        args = ast.arguments(posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[], defaults=[])
        call = ast.Call(ast.Name(CHECK_NAME, ast.Load()), [ast.Constant(idx), ast.Lambda(args, test)], [])
        return ast.copy_location(ast.Expr(call), node)


def _own_call(test: ast.expr) -> None:
    """``builtin(<literals>) <op> <literal>`` (either way round): look the name up as the program's."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1):
        return
    for call, other in ((test.left, test.comparators[0]), (test.comparators[0], test.left)):
        if (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Name)
            and call.func.id in _BUILTINS
            and _literal(other)
            and all(_literal(a) for a in call.args)
            and all(k.arg is not None and _literal(k.value) for k in call.keywords)
        ):
            own = ast.Call(ast.Name(OWN_NAME, ast.Load()), [ast.Constant(call.func.id)], [])
            call.func = ast.copy_location(own, call.func)
            return


def _literal(expr: ast.expr) -> bool:
    if isinstance(expr, ast.Starred):
        return False
    try:
        ast.literal_eval(expr)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


@functools.lru_cache(maxsize=512)
def instrument(test_code: str) -> Instrumented:
    """The test code, rewritten and compiled statement by statement (cached: in RL the same tests
    score many completions). Raises ``ValueError`` naming the line when it cannot be used."""
    try:
        tree = ast.parse(test_code, "<tests>")
    except SyntaxError as e:
        raise ValueError(f"run_tests: test_code is not valid Python (line {e.lineno}: {e.msg})") from None
    _drop_constant_asserts(tree)
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    imports = _module_level_imports(tree)
    modules = {
        n.value.id
        for n in ast.walk(tree)
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in _STDLIB
    }
    bound = _bound_names(tree)
    read = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    free = read - _BUILTINS - bound - modules
    called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    subjects = _subjects(tree) & _BUILTINS - bound
    candidates = {n for n in called & _BUILTINS - bound if n not in _EXCEPTION_NAMES} | subjects
    recorder, held = _RecordAsserts(), []
    for i, stmt in enumerate(tree.body):
        recorder.held = []
        tree.body[i] = recorder.visit(stmt)
        held.append(tuple(recorder.held))
    tree = ast.fix_missing_locations(tree)
    if recorder.count == 0:
        raise ValueError("run_tests: test_code has no assert statements to score")
    try:
        codes = [compile(ast.Module([stmt], []), "<tests>", "exec", dont_inherit=True) for stmt in tree.body]
    except SyntaxError as e:
        raise ValueError(
            f"run_tests: cannot instrument the asserts of test_code (line {e.lineno}: {e.msg})"
        ) from None
    return Instrumented(
        marshal.dumps(codes),
        recorder.count,
        tuple(sorted(names)),
        tuple(sorted(imports)),
        tuple(sorted(modules)),
        tuple(sorted(free)),
        tuple(sorted(candidates)),
        tuple(sorted(subjects)),
        tuple(held),
        tuple(recorder.in_functions),
    )


def _bound_names(tree: ast.AST) -> set[str]:
    """Every name the test code binds anywhere: assignments, parameters, defs, imports, handlers."""
    bound = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load):
            bound.add(n.id)
        elif isinstance(n, ast.arg):
            bound.add(n.arg)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(n.name)
        elif isinstance(n, ast.alias):
            bound.add((n.asname or n.name).partition(".")[0])
        elif isinstance(n, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and n.name:
            bound.add(n.name)
        elif isinstance(n, ast.MatchMapping) and n.rest:
            bound.add(n.rest)
    return bound


def _subjects(tree: ast.Module) -> set[str]:
    """Names a module-level call hands, bare, to a function the tests define (HumanEval's
    ``check(candidate)`` harness line): the function under test."""
    defs = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    found: set[str] = set()
    for stmt in tree.body:
        call = stmt.value if isinstance(stmt, ast.Expr) else None
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in defs:
            found.update(
                a.id for a in [*call.args, *(k.value for k in call.keywords)] if isinstance(a, ast.Name)
            )
    return found


def _module_level_imports(tree: ast.Module) -> set[str]:
    """The names the imports of ``tree`` bind in its module's namespace (not those in functions)."""
    bound: set[str] = set()
    todo: list[ast.AST] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import):
            bound.update(a.asname or a.name.partition(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            bound.update(a.asname or a.name for a in node.names if a.name != "*")
        elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            todo.extend(ast.iter_child_nodes(node))  # if/try/with/for blocks run at module level
    return bound


@functools.lru_cache(maxsize=512)
def compile_helpers(judge_code: str) -> bytes | None:
    """``judge_code`` compiled for the judge (``None`` when empty)."""
    if not judge_code.strip():
        return None
    try:
        return marshal.dumps(compile(judge_code, "<judge_code>", "exec", dont_inherit=True))
    except SyntaxError as e:
        raise ValueError(f"run_tests: judge_code is not valid Python (line {e.lineno}: {e.msg})") from None
