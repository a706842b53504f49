"""Reward functions, the tier hierarchy and the plug-in registry (imported as ``r1rl.rewards``)."""

from r1rl.rewards import arithmetic  # noqa: F401  (registers the built-in arithmetic tiers)
from r1rl.rewards.hierarchy import HierarchyResult, RewardHierarchy, Tier
from r1rl.rewards.registry import register, registered, resolve

__all__ = ["HierarchyResult", "RewardHierarchy", "Tier", "register", "registered", "resolve"]
