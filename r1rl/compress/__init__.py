"""Smaller models from trained ones: expert pruning ranked by routing telemetry (``r1rl prune``)."""
