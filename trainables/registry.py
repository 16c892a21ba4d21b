"""Name -> factory registries (the timm ``create_model`` pattern) with helpful unknown-name errors.

An entry is a factory registered where it is written (``@REG.register("name", description=...)``), or a lazy one
(``REG.add("name", "package.module:attr", "...")``) whose module is imported only when the factory is asked for:
validation and ``tlsweep list`` read the names and descriptions without importing torch.
"""
from __future__ import annotations

import fnmatch
import importlib
from typing import Callable, Generic, Iterable, Iterator, Optional, TypeVar

from trainables.errors import ConfigError, suggest

F = TypeVar("F", bound=Callable)
LISTED = 20  # an unknown name with no close match lists the names when there are at most this many


class _Lazy:
    __slots__ = ("target",)

    def __init__(self, target: str):
        self.target = target

    def load(self):
        module, _, attr = self.target.partition(":")
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj


class Registry(Generic[F]):
    """A named table of factories, each with a one-line description.

    Example:
        >>> datasets = Registry("data.name")
        >>> @datasets.register("digits", description="8x8 digits")
        ... def load_digits(cfg): ...
        >>> datasets.get("digits") is load_digits, datasets.describe("digits")
        (True, '8x8 digits')
        >>> datasets.add("later", "os.path:join", "imported on first get")
        >>> datasets.names(), datasets.get("later").__name__
        (['digits', 'later'], 'join')
        >>> datasets.check("digit")
        Traceback (most recent call last):
        ...
        trainables.errors.ConfigError: data.name: unknown name 'digit' (did you mean: digits?)
    """

    def __init__(self, key: str, task: Optional[str] = None):
        self.key = key    # the config key the names come from, used in error messages
        self.task = task  # the task whose trials read it (None: every task)
        self._items: dict[str, object] = {}
        self._about: dict[str, str] = {}

    def register(self, name: str, description: str = "") -> Callable[[F], F]:
        """Decorator: ``fn`` is the factory of ``name`` (description: the argument, else its docstring's first line)."""
        def deco(fn: F) -> F:
            self._items[name] = fn
            self._about[name] = description or (getattr(fn, "__doc__", None) or "").strip().split("\n")[0]
            return fn
        return deco

    def add(self, name: str, target: str, description: str = "") -> None:
        """A lazy entry: ``target`` (``"package.module:attr"``) is imported by the first :meth:`get`."""
        self._items[name] = _Lazy(target)
        self._about[name] = description

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)

    def names(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in self._items if fnmatch.fnmatch(n, pattern))

    def describe(self, name: str) -> str:
        return self._about.get(name, "")

    def entries(self, pattern: str = "*") -> list[tuple[str, str]]:
        """``(name, description)`` of the names matching ``pattern``, sorted."""
        return [(n, self._about.get(n, "")) for n in self.names(pattern)]

    def unknown(self, name: object, extra_choices: Iterable[str] = ()) -> ConfigError:
        """The error for a name not in the registry: the close matches, else (few names) all of them."""
        choices = self.names() + list(extra_choices)
        hint = suggest(str(name), choices)
        if not hint and len(choices) <= LISTED:
            hint = f" (known: {', '.join(choices)})"
        return ConfigError(f"{self.key}: unknown name {name!r}{hint}")

    def check(self, name: object, extra_choices: Iterable[str] = ()) -> None:
        """Raise ConfigError unless ``name`` is registered; imports nothing."""
        if name not in self:
            raise self.unknown(name, extra_choices)

    def get(self, name: str, extra_choices: Iterable[str] = ()) -> F:
        self.check(name, extra_choices)
        item = self._items[name]
        if isinstance(item, _Lazy):
            item = self._items[name] = item.load()
        return item  # type: ignore[return-value]

    __getitem__ = get
