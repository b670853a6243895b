"""One registry per swappable family (fusion heads, backbones).

Recipes name parts by `class_path`; the registry adds short names, discovery
(`python -m kit registry`), helpful errors that list what exists, and a list of parts
that the contract tests iterate over, so registering a part enrols it in the tests.

A notebook registers its own part with the same decorator; re-running the cell replaces
the old entry with a warning instead of failing.
"""

from __future__ import annotations

import warnings
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A name that no registry entry carries; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


class Registry(Generic[T]):
    """Short name -> class, for the subclasses of one base.

    Args:
        family: human-readable family name used in messages ("fusion head").
        base: every registered class must subclass it.
    """

    def __init__(self, family: str, base: type[T]) -> None:
        self.family = family
        self.base = base
        self._entries: dict[str, type[T]] = {}

    def register(self, name: str):
        """Class decorator: `@FUSION_HEADS.register("lap")`."""

        def decorate(cls: type[T]) -> type[T]:
            if not (isinstance(cls, type) and issubclass(cls, self.base)):
                raise TypeError(f"{cls!r} is not a subclass of {self.base.__name__}; cannot register it as a {self.family}")
            if name in self._entries and self._entries[name] is not cls:
                warnings.warn(f"{self.family} {name!r} is registered again; the new class replaces {self._entries[name].__qualname__}", stacklevel=2)
            self._entries[name] = cls
            cls.registry_name = name
            return cls

        return decorate

    def unregister(self, name: str) -> None:
        """Remove an entry (a notebook discarding its experiment); unknown names raise `UnknownNameError`."""
        self.get(name)
        del self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def items(self) -> list[tuple[str, type[T]]]:
        return sorted(self._entries.items())

    def describe(self) -> str:
        """'lap (kit.fusion.lap.LAPHead), last_layer (...)': used in error messages."""
        return ", ".join(f"{n} ({c.__module__}.{c.__qualname__})" for n, c in self.items()) or "none"

    def get(self, name: str) -> type[T]:
        """The class registered as `name`, by short name or by class name or import path."""
        if name in self._entries:
            return self._entries[name]
        for cls in self._entries.values():
            if name in (cls.__name__, f"{cls.__module__}.{cls.__qualname__}"):
                return cls
        raise UnknownNameError(f"unknown {self.family} {name!r}; known {self.family}s: {self.describe()}")

    def build(self, name: str, *args: Any, **kwargs: Any) -> T:
        """Instantiate the class registered as `name`."""
        return self.get(name)(*args, **kwargs)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)
