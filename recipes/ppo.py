"""Recipe: the `ppo` stage. Copy this script to customise it; all logic lives in the library.

python recipes/ppo.py recipes/configs/tiny/ppo.yaml [key.sub=value ...]
"""

import sys

from r1rl.config import PPOConfig, load_config
from r1rl.errors import UserError
from r1rl.stages import STAGES

if __name__ == "__main__":
    try:
        cfg = load_config(PPOConfig, sys.argv[1], sys.argv[2:])
    except (IndexError, UserError) as e:
        sys.exit(f"usage: python recipes/ppo.py CONFIG.yaml [key=value ...]\nerror: {e}")
    STAGES["ppo"](cfg)
