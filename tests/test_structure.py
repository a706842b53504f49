"""The shape of the code: short functions, files of a readable length (STYLE.md, 8)."""

import ast
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
