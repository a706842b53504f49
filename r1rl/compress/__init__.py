"""Smaller models from trained ones: merged and quantised export, expert pruning by routing telemetry."""
