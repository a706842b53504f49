"""Recipe: every stage of a pipeline (pretrain → SFT → PPO, each evaluated); finished stages are skipped.

python recipes/run.py recipes/configs/tiny/pipeline.yaml [key.sub=value ...]
"""

import sys

from r1rl import pipeline
from r1rl.config import PipelineConfig, load_config
from r1rl.errors import UserError

if __name__ == "__main__":
    try:
        cfg = load_config(PipelineConfig, sys.argv[1], sys.argv[2:])
        pipeline.stage_configs(cfg, source=sys.argv[1])
    except (IndexError, UserError) as e:
        sys.exit(f"usage: python recipes/run.py PIPELINE.yaml [key=value ...]\nerror: {e}")
    pipeline.run(cfg, source=sys.argv[1])
