"""The sandbox as shipped: its child modules stand alone, and a built wheel runs it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from r1rl.rewards import sandbox
from r1rl.rewards.sandbox.process import _CHILD_MODULES

REPO = Path(__file__).resolve().parents[2]
PACKAGE_DIR = Path(sandbox.__file__).parent


def test_child_modules_load_under_isolated_python_alone():
    # -I -S: no site-packages, no current directory; the package's own __init__ is not run, so
    # the child modules may only import the standard library and one another.
    imports = "; ".join(f"import box.{name}" for name in _CHILD_MODULES)
    script = (
        "import sys, types\n"
        f"box = sys.modules['box'] = types.ModuleType('box'); box.__path__ = [{str(PACKAGE_DIR)!r}]\n"
        f"{imports}\n"
        "foreign = [m for m in sys.modules if m.partition('.')[0] not in sys.stdlib_module_names | {'box'}]\n"
        "print(foreign, all(p.startswith(sys.base_prefix) for p in sys.path))\n"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script], capture_output=True, text=True, check=True
    )
    assert out.stdout == "['__main__'] True\n", out.stderr


def test_a_built_wheel_ships_and_runs_the_sandbox(tmp_path):
    # built from a copy, so that no build/ of an earlier layout can leak stale files into it
    skip = shutil.ignore_patterns(".*", "build", "*.egg-info", "__pycache__", "runs", "outputs")
    source = shutil.copytree(REPO, tmp_path / "src", ignore=skip)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            source,
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("r1rl-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"r1rl/rewards/sandbox/{m}.py" for m in (*_CHILD_MODULES, "__init__")} <= names
    assert "r1rl/rewards/sandbox.py" not in names
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    # -S: not even this environment's site-packages (so not the editable install): the wheel alone
    script = (
        f"import sys; sys.path.insert(0, {str(unpacked)!r})\n"
        "from r1rl.rewards import sandbox\n"
        "rep = sandbox.run_tests('def f(x):\\n    return x + 1\\n', 'assert f(1) == 2\\nassert f(2) == 4')\n"
        "print(sandbox.__file__.startswith(sys.path[0]), rep.passed, rep.total, rep.judged)\n"
    )
    out = subprocess.run([sys.executable, "-S", "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout == "True 1 2 True\n", out.stderr
