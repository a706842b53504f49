"""r1rl: staged RL post-training (pretrain → SFT → PPO → eval) for Mixture-of-Experts language models.

Folders by role: ``algorithms`` (pure RL math), ``models``, ``data``, ``tasks`` (one file per task),
``train`` (the loops), ``parallel``, ``run`` (CLI, stages, pipeline), ``report``; ``rewards`` and
``eval`` are installed as ``r1rl.rewards`` and ``r1rl.eval``. The README's code map says where to
start reading.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import sys
import types
import warnings

__version__ = "0.1.0"

# torchao (the quantize extra, which transformers imports when it is installed) logs a warning for each
# GPU kernel library it cannot load on a CPU machine, and torch one for each enum torchao registers:
# lines on every command that no r1rl user can act on.
for _logger in ("torchao", "torch.utils._pytree"):
    logging.getLogger(_logger).setLevel(logging.ERROR)

# Modules that moved when the package was grouped by role, old name -> new name. A recipe copied
# with ``r1rl cp`` before then still imports; each old name warns once and is the new module.
MOVED = {
    "r1rl.config.base": "r1rl.strict",
    "r1rl.rewards.arithmetic": "r1rl.tasks.arithmetic",
    "r1rl.tasks.dataset": "r1rl.tasks.data",
    "r1rl.tasks.encoding": "r1rl.models.encoding",
    "r1rl.tasks.prepare": "r1rl.train.prepare",
    "r1rl.architectures": "r1rl.models.architectures",
    "r1rl.cli": "r1rl.run.cli",
    "r1rl.dashboard": "r1rl.report.dashboard",
    "r1rl.distill": "r1rl.train.distill",
    "r1rl.distill.losses": "r1rl.algorithms.distill",
    "r1rl.distill.sampling": "r1rl.train.distill.sampling",
    "r1rl.distributed": "r1rl.parallel.distributed",
    "r1rl.generation": "r1rl.models.generation",
    "r1rl.hub": "r1rl.report.hub",
    "r1rl.hub.__main__": "r1rl.report.hub.__main__",
    "r1rl.hub.card": "r1rl.report.hub.card",
    "r1rl.hub.cli": "r1rl.report.hub.cli",
    "r1rl.hub.run": "r1rl.report.hub.run",
    "r1rl.hub.upload": "r1rl.report.hub.upload",
    "r1rl.loop": "r1rl.train.loop",
    "r1rl.memory": "r1rl.report.memory",
    "r1rl.model": "r1rl.models.factory",
    "r1rl.moe": "r1rl.models.moe",
    "r1rl.pipeline": "r1rl.run.pipeline",
    "r1rl.plots": "r1rl.report.plots",
    "r1rl.ppo": "r1rl.train.ppo",
    "r1rl.ppo.core": "r1rl.algorithms.ppo",
    "r1rl.ppo.engines": "r1rl.train.ppo.engines",
    "r1rl.ppo.objectives": "r1rl.train.ppo.objectives",
    "r1rl.ppo.roles": "r1rl.train.ppo.roles",
    "r1rl.ppo.rollout": "r1rl.train.ppo.rollout",
    "r1rl.ppo.selection": "r1rl.train.ppo.selection",
    "r1rl.ppo.trainer": "r1rl.train.ppo.trainer",
    "r1rl.ppo.update": "r1rl.train.ppo.update",
    "r1rl.presets": "r1rl.models.presets",
    "r1rl.pretraining": "r1rl.train.pretrain",
    "r1rl.rerun": "r1rl.run.rerun",
    "r1rl.sharding": "r1rl.parallel.sharding",
    "r1rl.stages": "r1rl.run.stages",
    "r1rl.supervised": "r1rl.train.supervised",
    "r1rl.tokenizer": "r1rl.models.tokenizer",
    "r1rl.trackers": "r1rl.report.trackers",
    "r1rl.training": "r1rl.train.common",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Import an old module name as its new module (the same object), with a DeprecationWarning."""

    def __init__(self) -> None:
        self._specs: dict[str, importlib.machinery.ModuleSpec | None] = {}

    def find_spec(
        self, name: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name not in MOVED:
            return None
        target = importlib.util.find_spec(MOVED[name])  # imports only the new module's packages
        return importlib.util.spec_from_loader(name, self, origin=target.origin if target else None)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        warnings.warn(f"{spec.name} moved to {MOVED[spec.name]}", DeprecationWarning, stacklevel=3)
        module = importlib.import_module(MOVED[spec.name])
        self._specs[spec.name] = module.__spec__
        return module

    def get_code(self, name: str) -> types.CodeType | None:
        """``python -m <old name>`` runs the new module (runpy asks the loader for the code)."""
        spec = importlib.util.find_spec(MOVED[name])
        return (
            spec.loader.get_code(spec.name)
            if spec and isinstance(spec.loader, importlib.abc.InspectLoader)
            else None
        )

    def exec_module(self, module: types.ModuleType) -> None:
        for old, spec in self._specs.items():  # the import gave the module the old name's spec
            if module.__spec__ is not None and module.__spec__.name == old:
                module.__spec__ = spec


if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
    # first: the path finder would take an emptied old folder for a namespace package
    sys.meta_path.insert(0, _MovedModules())
