"""Name -> factory registries (the timm ``create_model`` pattern) with helpful unknown-name errors."""
from __future__ import annotations

import fnmatch
from typing import Callable, Generic, Iterable, TypeVar

from trainables.errors import ConfigError, suggest

F = TypeVar("F", bound=Callable)


class Registry(Generic[F]):
    """A named table of factories.

    Example:
        >>> datasets = Registry("data.name")
        >>> @datasets.register("digits")
        ... def load_digits(cfg): ...
        >>> datasets.get("digits") is load_digits
        True
    """

    def __init__(self, key: str):
        self.key = key  # the config key the names come from, used in error messages
        self._items: dict[str, F] = {}

    def register(self, name: str) -> Callable[[F], F]:
        def deco(fn: F) -> F:
            self._items[name] = fn
            return fn
        return deco

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def names(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in self._items if fnmatch.fnmatch(n, pattern))

    def get(self, name: str, extra_choices: Iterable[str] = ()) -> F:
        if name not in self._items:
            choices = list(self._items) + list(extra_choices)
            raise ConfigError(f"{self.key}: unknown name {name!r}{suggest(name, choices)}")
        return self._items[name]
