#!/usr/bin/env bash
# Set up, then run the whole tiny pipeline (pretrain → SFT → PPO → eval) offline on CPU.
# Extra arguments are config overrides, e.g.  bash scripts/demo.sh seed=1 output_dir=runs/tiny-seed1
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/r1rl run recipes/configs/tiny/pipeline.yaml "$@"
