"""One small name → item registry behind every swappable piece of r1rl.

Tasks, reward functions, eval scorers, metrics and benchmark tasks, advantage estimators, model
presets, data sources, filters and difficulty scores: each is a :class:`Registry` that a recipe
names by string. Registration is by decorator (``@REG.register("name")``) or by a direct call
(``REG.add("name", item)``); a duplicate name raises, unless it is the same definition imported
twice (as pytest's importlib mode does); an unknown name raises a :class:`~r1rl.errors.UserError`
that suggests the nearest valid one.

>>> ops = Registry[int]("operator")
>>> ops.add("plus", 1)
1
>>> ops["plus"], "plus" in ops, ops.names()
(1, True, ['plus'])
>>> ops.get("pluss", "algorithm.op")
Traceback (most recent call last):
...
r1rl.errors.UserError: algorithm.op: unknown operator 'pluss' (did you mean 'plus'?)
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, Generic, TypeVar

from r1rl.errors import UserError, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    """Items of type ``T`` by name. ``kind`` ("task", "reward", "source type" …) appears in errors."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def add(self, name: str, item: T) -> T:
        """Register ``item`` as ``name``; a different item under a taken name raises ``ValueError``."""
        old = self._items.get(name)
        if old is not None and old is not item and _qualname(old) != _qualname(item):
            raise ValueError(f"{self.kind} {name!r} is already registered (by {_qualname(old)})")
        self._items[name] = item
        return item

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""
        return lambda item: self.add(name, item)

    def names(self) -> list[str]:
        return sorted(self._items)

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(sorted(self._items.items()))

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def get(self, name: str, key: str | None = None) -> T:
        """The item called ``name``; ``key`` names the config key in the error message."""
        if name not in self._items:
            where = f"{key}: " if key else ""
            raise UserError(f"{where}unknown {self.kind} {name!r}{did_you_mean(name, self._items)}")
        return self._items[name]

    def build(self, spec: Mapping[str, Any], key: str) -> Any:
        """Call the factory ``spec["type"]`` with the other keys; a missing type or bad argument: one line."""
        if "type" not in spec:
            raise UserError(f"{key}: missing 'type' (one of {', '.join(self.names())})")
        kwargs = {k: v for k, v in spec.items() if k != "type"}
        factory: Any = self.get(str(spec["type"]), f"{key}.type")
        try:  # check the arguments before calling, so a TypeError inside the factory is not masked
            inspect.signature(factory).bind(**kwargs)
        except TypeError as e:
            raise UserError(f"{key}: bad arguments for {self.kind} {spec['type']!r}: {e}") from None
        return factory(**kwargs)


def _qualname(obj: Any) -> str:
    """Where ``obj`` was defined: equal for one definition imported twice, unequal for two definitions."""
    target = getattr(obj, "fn", obj)  # a record that wraps a function (a reward, a scorer): the function
    code = getattr(target, "__code__", None)
    if code is None:
        return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', repr(target))}"
    return f"{code.co_filename}:{target.__qualname__}"


def load_plugin(spec: str, kind: str) -> Any:
    """The object a ``module:attr`` or ``path/to/file.py:attr`` spec names; a ``kind`` (reward, tool …)
    that cannot be found is a one-line :class:`~r1rl.errors.UserError` naming the spec."""
    target, _, attr = spec.rpartition(":")
    module = _load_file(target, spec, kind) if target.endswith(".py") else _import(target, spec, kind)
    obj = getattr(module, attr, None)
    if obj is None:
        close = difflib.get_close_matches(attr, [a for a in dir(module) if not a.startswith("_")], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(f"{kind} {spec!r}: {target} has no attribute {attr!r}{hint}")
    return obj


def _import(module: str, spec: str, kind: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except Exception as e:  # an import error in a user's plug-in is bad input, not a crash
        raise UserError(f"{kind} {spec!r}: cannot import {module!r} ({type(e).__name__}: {e})") from None


def _load_file(path: str, spec: str, kind: str) -> ModuleType:
    """A ``.py`` file as a module, kept in ``sys.modules`` so what it defines pickles (worker processes)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{kind} {spec!r}: file not found: {p}")
    name = f"r1rl_user_{kind.replace(' ', '_')}_{p.stem}"
    mod_spec = importlib.util.spec_from_file_location(name, p)
    if mod_spec is None or mod_spec.loader is None:  # only for a name without a loader's suffix: not .py
        raise UserError(f"{kind} {spec!r}: {p} is not a Python file")
    module = importlib.util.module_from_spec(mod_spec)
    try:
        mod_spec.loader.exec_module(module)
    except Exception as e:
        raise UserError(f"{kind} {spec!r}: {p} failed to load ({type(e).__name__}: {e})") from None
    sys.modules[name] = module
    return module
