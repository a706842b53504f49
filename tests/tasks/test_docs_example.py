"""The task in docs/tasks.md, run as written: it registers, is a valid ``task:``, builds, and its
reward suite gives its own completions full marks."""

import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).parents[2] / "docs" / "tasks.md"

CHECK = """
from r1rl.config import SFTConfig
from r1rl.tasks import build_task
from r1rl.rewards.hierarchy import RewardHierarchy
from r1rl.config import RewardsConfig, TierConfig

cfg = SFTConfig(model_path="m", output_dir="o", task={"name": "reverse", "length": 7, "size": 20})
task = build_task(cfg.task, cfg.data, seed=1)
train, test = task.records("train"), task.records("test")
assert len(train) == 20 and len(test) == 100 and len(train[0]["answer"]) == 7, train[0]
hierarchy = RewardHierarchy.from_config(RewardsConfig(tiers=[TierConfig(**t) for t in task.rewards]))
rows = test[:8]
prompts, answers = [r["prompt"] for r in rows], [r["answer"] for r in rows]
assert hierarchy(prompts, [r["completion"] for r in rows], answer=answers).rewards == [1.0] * 8
assert hierarchy(prompts, ["<answer>x</answer>"] * 8, answer=answers).rewards == [0.5] * 8  # syntax only
assert hierarchy(prompts, ["x"] * 8, answer=answers).rewards == [0.0] * 8
print("ok")
"""


def test_the_docs_task_example_runs(tmp_path):
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    script = tmp_path / "check.py"
    script.write_text(code + "\n" + CHECK)  # the task is registered before the configs build their union
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]


def test_an_unknown_task_lists_the_registered_ones():
    from r1rl.config import SFTConfig, validate
    from r1rl.errors import UserError

    try:
        validate(SFTConfig, {"model_path": "m", "output_dir": "o", "task": "gsm8kk"})
    except UserError as e:
        assert "gsm8k" in str(e) and "gsm8kk" in str(e), str(e)
    else:
        raise AssertionError("an unknown task name validated")
