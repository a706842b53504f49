"""A small name → factory registry: tasks, data sources, filters, difficulty scores.

Registration is by decorator; a duplicate name raises (unless it is the same definition
imported twice, as pytest's importlib mode does); an unknown name raises a
:class:`~r1rl.errors.UserError` that suggests the nearest valid one.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from r1rl.errors import UserError, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    """Factories of ``T`` by name. ``kind`` ("source type", "filter" …) appears in error messages."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            old = self._items.get(name)
            if old is not None and _qualname(old) != _qualname(factory):
                raise ValueError(f"{self.kind} {name!r} is already registered (by {_qualname(old)})")
            self._items[name] = factory
            return factory

        return deco

    def names(self) -> list[str]:
        return sorted(self._items)

    def get(self, name: str, key: str) -> Callable[..., T]:
        """The factory called ``name``; ``key`` names the config key for the error message."""
        if name not in self._items:
            raise UserError(f"{key}: unknown {self.kind} {name!r}{did_you_mean(name, self._items)}")
        return self._items[name]

    def build(self, spec: Mapping[str, Any], key: str) -> T:
        """Build from ``{"type": name, **kwargs}``; a missing type or a bad argument is one-line UserError."""
        if "type" not in spec:
            raise UserError(f"{key}: missing 'type' (one of {', '.join(self.names())})")
        kwargs = {k: v for k, v in spec.items() if k != "type"}
        factory = self.get(str(spec["type"]), f"{key}.type")
        try:  # check the arguments before calling, so a TypeError inside the factory is not masked
            inspect.signature(factory).bind(**kwargs)
        except TypeError as e:
            raise UserError(f"{key}: bad arguments for {self.kind} {spec['type']!r}: {e}") from None
        return factory(**kwargs)


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
