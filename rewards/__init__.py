"""Reward functions, the tier hierarchy and the plug-in registry (imported as ``r1rl.rewards``).

Generic tiered suites (each tier a plain TRL-style reward function, registered by name):
``math_*`` (numeric answers, GSM8K style), ``code_*`` (MBPP/HumanEval, run in the sandbox) and
``extraction_*`` (JSON field extraction, CUAD style), each with ``_syntax``, ``_logic`` and
``_task`` tiers. A task's own suite lives in its file under ``r1rl/tasks/`` (``arithmetic_*``);
the ``r1rl.rewards`` entry-point group finds it by name, as it finds a third-party plug-in's.
"""

# Importing the suites registers their tiers.
from r1rl.rewards import code, extraction  # noqa: F401
from r1rl.rewards import math as math_rewards  # noqa: F401  (not `math`: that name is the stdlib's)
from r1rl.rewards.hierarchy import HierarchyResult, RewardHierarchy, Tier
from r1rl.rewards.protocol import (
    OUTCOMES,
    Failure,
    Outcome,
    RewardContractError,
    RewardError,
    RewardTimeout,
    call_reward,
    reward_error,
    reward_timeout,
)
from r1rl.rewards.registry import register, registered, resolve

__all__ = [
    "OUTCOMES",
    "Failure",
    "HierarchyResult",
    "Outcome",
    "RewardContractError",
    "RewardError",
    "RewardHierarchy",
    "RewardTimeout",
    "Tier",
    "call_reward",
    "register",
    "registered",
    "resolve",
    "reward_error",
    "reward_timeout",
]
