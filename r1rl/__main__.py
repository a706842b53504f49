"""``python -m r1rl`` is the ``r1rl`` command (what ``accelerate launch -m r1rl`` runs on every process)."""

import sys

from r1rl.run.cli import main

sys.exit(main())
