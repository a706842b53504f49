"""Recipe: the `sft` stage. Copy this script to customise it; all logic lives in the library.

python recipes/sft.py recipes/configs/tiny/sft.yaml [key.sub=value ...]
"""

import sys

from r1rl.config import SFTConfig, load_config
from r1rl.errors import UserError
from r1rl.stages import STAGES

if __name__ == "__main__":
    try:
        cfg = load_config(SFTConfig, sys.argv[1], sys.argv[2:])
    except (IndexError, UserError) as e:
        sys.exit(f"usage: python recipes/sft.py CONFIG.yaml [key=value ...]\nerror: {e}")
    STAGES["sft"](cfg)
