"""Environments a model acts in over several turns: typed tools run in a worker process."""

from r1rl.envs import python  # noqa: F401  (importing an environment registers it)
