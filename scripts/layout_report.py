"""Figures of the package's layout: what a newcomer sees, and what tests/test_structure.py holds to.

    python scripts/layout_report.py          # the figures
    python scripts/layout_report.py -v       # and every import inside a function, every folder edge

Reads the source with ``ast`` (nothing is imported): modules on the top of ``r1rl/``, import circles
between modules and between folders (module-level imports; ``if TYPE_CHECKING`` blocks left out),
r1rl imports inside functions, the longest parameter lists, ``Any`` in annotations, and the ``.py``
files whose code (not docstrings or comments) names a built-in task outside that task's own file.
"""

from __future__ import annotations

import ast
import io
import re
import sys
import tokenize
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"r1rl": "r1rl", "rewards": "r1rl.rewards", "eval": "r1rl.eval"}  # folder -> import name
TASK_FILES = ("arithmetic", "gsm8k", "mbpp", "cuad")


@dataclass
class Layout:
    modules: dict[str, Path] = field(default_factory=dict)  # import name -> file
    imports: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # module level
    inner: list[tuple[str, str]] = field(default_factory=list)  # (module, target) inside functions
    params: list[tuple[int, str]] = field(default_factory=list)


def module_files() -> dict[str, Path]:
    out = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            name = ".".join((package, *parts)).removesuffix(".__init__")
            out[name] = path
    return out


def _target(name: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _enclosing(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}


def _inside(node: ast.AST, parents: dict[ast.AST, ast.AST], kinds: tuple[type, ...], test: str = "") -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, kinds) and (not test or test in ast.unparse(getattr(node, "test", node))):
            return True
    return False


def read_layout() -> Layout:
    layout = Layout(modules=module_files())
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    for name, path in layout.modules.items():
        tree = ast.parse(path.read_text())
        parents = _enclosing(tree)
        for node in ast.walk(tree):
            if isinstance(node, functions):
                a = node.args
                n = len(a.posonlyargs + a.args + a.kwonlyargs)
                n -= bool(a.args) and a.args[0].arg in ("self", "cls")
                layout.params.append((n, f"{name}.{node.name}"))
            targets = []
            if isinstance(node, ast.ImportFrom):
                module = _target(name, path, node)
                targets = [module, *(f"{module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            targets = [t for t in targets if t in layout.modules and t != name]
            if not targets:
                continue
            if _inside(node, parents, functions):
                layout.inner.append((name, targets[0]))
            elif not _inside(node, parents, (ast.If,), "TYPE_CHECKING"):
                layout.imports[name].update(targets)
    return layout


def folder_of(module: str, modules: dict[str, Path]) -> str:
    """``r1rl.train.ppo.trainer`` -> ``r1rl.train``; a top-level module is its own folder."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 or modules[module].name == "__init__.py" else module


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            if component:
                out.append(sorted([v, *component]))

    sys.setrecursionlimit(10_000)
    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def folder_graph(layout: Layout, inner: bool = False) -> dict[str, set[str]]:
    """Folder -> folders it imports from; with ``inner``, imports inside functions count too."""
    graph: dict[str, set[str]] = defaultdict(set)
    edges = [(a, b) for a, targets in layout.imports.items() for b in targets]
    for a, b in edges + (layout.inner if inner else []):
        fa, fb = folder_of(a, layout.modules), folder_of(b, layout.modules)
        if fa != fb and fb != "r1rl":
            graph[fa].add(fb)
    return graph


def code_tokens(path: Path) -> Iterator[str]:
    """Names and string literals of a file's code: no comments, no docstrings."""
    tree = ast.parse(path.read_text())
    docstrings = {
        node.body[0].value.lineno
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
        and isinstance(node.body[0].value.value, str)
    }
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        if tok.type in (tokenize.NAME, tokenize.STRING) and tok.start[0] not in docstrings:
            yield tok.string


def files_naming(task: str, layout: Layout) -> list[str]:
    own = ROOT / "r1rl" / "tasks" / f"{task}.py"
    word = re.compile(rf"\b{task}\b", re.I)
    return sorted(
        str(path.relative_to(ROOT))
        for path in layout.modules.values()
        if path != own and any(word.search(t) for t in code_tokens(path))
    )


def main(argv: list[str]) -> None:
    layout = read_layout()
    top = sorted(p.name for p in (ROOT / "r1rl").glob("*.py") if p.name != "__init__.py")
    any_count = sum(len(re.findall(r"\bAny\b", p.read_text())) for p in layout.modules.values())
    print(f"modules on the top of r1rl/: {len(top)} ({', '.join(top)})")
    print(f"module import circles: {circles(layout.imports)}")
    print(f"folder import circles: {circles(folder_graph(layout))}")
    print(f"folder import circles, imports inside functions included: {circles(folder_graph(layout, True))}")
    print(f"r1rl imports inside functions: {len(layout.inner)}")
    print(f"longest parameter lists: {sorted(layout.params, reverse=True)[:5]}")
    train = [p for p in layout.params if p[1].startswith("r1rl.train.")]
    print(f"longest in r1rl.train: {sorted(train, reverse=True)[:3]}")
    print(f"Any (words in r1rl/, rewards/, eval/): {any_count}")
    for task in TASK_FILES:
        named = files_naming(task, layout)
        print(f".py files whose code names {task} outside its file: {len(named)} {named}")
    if "-v" in argv:
        for module, target in sorted(layout.inner):
            print(f"  inner import: {module} -> {target}")
        for a, bs in sorted(folder_graph(layout).items()):
            print(f"  folder: {a} -> {sorted(bs)}")


if __name__ == "__main__":
    main(sys.argv[1:])
