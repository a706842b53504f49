"""Environments a model acts in over several turns: typed tools run in a worker process."""
