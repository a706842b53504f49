"""``python -m r1rl.report.hub RUN_DIR --repo-id ID``: ``r1rl push`` on its own."""

import sys

from r1rl.report.hub.cli import main_push

sys.exit(main_push())
