#!/usr/bin/env bash
# Set up, then lint, type-check and run the whole test suite (slow tests included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# mypy reads r1rl in its installed shape ([tool.setuptools] maps rewards/ and eval/ to r1rl.rewards and
# r1rl.eval), which it cannot see through the editable install's import hook: a tree of links gives it.
tree=build/typecheck/r1rl
rm -rf "$tree" && mkdir -p "$tree"
ln -s "$PWD"/r1rl/*.py "$PWD"/r1rl/*/ "$tree"/
ln -s "$PWD/rewards" "$tree/rewards" && ln -s "$PWD/eval" "$tree/eval"
.venv/bin/mypy -p r1rl
# two workers, a test file each at a time (its module fixtures built once): the tests run one torch thread
.venv/bin/python -m pytest -n 2 --dist loadfile "$@"
