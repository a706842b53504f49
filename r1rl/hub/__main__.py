"""``python -m r1rl.hub RUN_DIR --repo-id ID``: ``r1rl push`` on its own."""

import sys

from r1rl.hub.cli import main_push

sys.exit(main_push())
