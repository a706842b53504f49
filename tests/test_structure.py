"""The shape of the code: short functions, files of a readable length (STYLE.md, 8)."""

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
SOURCES = sorted(p for d in ("r1rl", "rewards", "eval", "recipes") for p in (ROOT / d).rglob("*.py"))
MAX_FUNCTION, MAX_FILE = 80, 500


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_long_functions_or_files(path):
    source = path.read_text()
    assert len(source.splitlines()) <= MAX_FILE, f"{path.relative_to(ROOT)} is over {MAX_FILE} lines"
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            where = f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"
            assert length <= MAX_FUNCTION, f"{where} is {length} lines"


def test_the_walk_sees_the_whole_tree():
    names = {str(p.relative_to(ROOT)) for p in SOURCES}
    assert {
        "r1rl/train/ppo/trainer.py",
        "rewards/sandbox/child.py",
        "eval/harness.py",
        "recipes/ppo.py",
    } <= names


def _layout_report():
    spec = importlib.util.spec_from_file_location("layout_report", ROOT / "scripts" / "layout_report.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


REPORT = _layout_report()
LAYOUT = REPORT.read_layout()

# The r1rl imports that stay inside functions, and why (STYLE.md 17: only where a dependency needs it).
LAZY = {
    "r1rl.run.cli": "the command answers --help and bad input in a second, before torch loads",
    "r1rl.run.stages": "the CLI builds its parser from the stage table; running a stage loads torch",
    "r1rl.rewards.hierarchy": "transformers loads only for a reward-model tier (every config reads rewards)",
    "r1rl.rewards.reward_model": "as above",
    "r1rl.rewards.sandbox.child": "the sandboxed child imports a mode's code only once its limits are set",
    "r1rl.rewards.sandbox.process": "the parent and the child share process.py; modes import it back",
    "r1rl.report.hub.upload": "`r1rl push` (and the CLI's parser) start before torch loads; merging needs it",
    "r1rl.compress.export": "the CLI's parser comes from it before torch loads; exporting loads the model",
    "r1rl.compress.cli": "`r1rl prune` checks its arguments before torch loads; pruning needs it",
}


def test_no_import_circles_between_modules_or_folders():
    assert REPORT.circles(LAYOUT.imports) == []
    assert REPORT.circles(REPORT.folder_graph(LAYOUT)) == []


def test_imports_inside_functions_only_where_a_dependency_needs_it():
    inner = sorted({f"{module} -> {target}" for module, target in LAYOUT.inner if module not in LAZY})
    assert inner == [], "move these imports to the top of their modules (or say why in LAZY):\n" + "\n".join(
        inner
    )


def test_the_lazy_imports_close_no_circle_either():
    """Module-level imports plus the lazy ones: the layout is a tree of floors even when they load."""
    assert REPORT.circles(REPORT.folder_graph(LAYOUT, inner=True)) == []


def test_the_top_of_the_package_is_a_handful_of_foundations():
    top = sorted(p.name for p in (ROOT / "r1rl").glob("*.py"))
    assert top == [
        "__init__.py",
        "__main__.py",
        "errors.py",
        "records.py",
        "registry.py",
        "rundir.py",
        "strict.py",
    ]
    for folder in (ROOT / "r1rl").iterdir():
        if folder.is_dir() and (folder / "__init__.py").exists():
            doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text()))
            assert doc, f"r1rl/{folder.name}/__init__.py: one line that says what the folder holds"


def test_configs_tasks_and_rewards_load_without_torch():
    """Every command reads a config (and through it the tasks and their rewards) before any work, and
    bad input must fail in a second: none of them may import torch or transformers."""
    light = "r1rl.config, r1rl.tasks, r1rl.rewards, r1rl.eval.registry, r1rl.data.sources, r1rl.run.cli"
    code = f"import sys, {light}; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
