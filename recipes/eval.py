"""Recipe: the `eval` stage. Copy this script to customise it; all logic lives in the library.

python recipes/eval.py recipes/configs/tiny/eval.yaml [key.sub=value ...]
"""

import sys

from r1rl.config import EvalConfig, load_config
from r1rl.errors import UserError
from r1rl.stages import STAGES

if __name__ == "__main__":
    try:
        cfg = load_config(EvalConfig, sys.argv[1], sys.argv[2:])
    except (IndexError, UserError) as e:
        sys.exit(f"usage: python recipes/eval.py CONFIG.yaml [key=value ...]\nerror: {e}")
    STAGES["eval"](cfg)
