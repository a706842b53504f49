"""Environments a model acts in over several turns: typed tools run in a worker process."""

from r1rl.envs import calculator, python  # noqa: F401  (importing a tool or an environment registers it)
