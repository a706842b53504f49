"""Modules that moved when the package was grouped by role still import under their old names (a
recipe copied with ``r1rl cp`` before then keeps working) as the very same module, with a warning."""

import importlib
import subprocess
import sys
import warnings

import pytest

import r1rl


@pytest.mark.parametrize("old", sorted(n for n in r1rl.MOVED if not n.endswith("__main__")))  # those run
def test_an_old_name_is_the_new_module(old):
    new = importlib.import_module(r1rl.MOVED[old])
    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    assert module is new and module.__name__ == r1rl.MOVED[old] and module.__spec__.name == module.__name__
    assert any(
        issubclass(w.category, DeprecationWarning) and r1rl.MOVED[old] in str(w.message) for w in caught
    )


def test_old_names_are_not_new_names():
    assert not set(r1rl.MOVED) & set(r1rl.MOVED.values())
    for new in r1rl.MOVED.values():
        assert importlib.util.find_spec(new) is not None, new


def test_python_m_old_and_new_names_run_the_cli():
    for module in ("r1rl", "r1rl.cli", "r1rl.run.cli"):
        out = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True)
        assert out.returncode == 0 and out.stdout.startswith("r1rl "), (module, out.stderr[-2000:])
