"""Named registries (methods, identifier schemes, item features, dataset readers), each also open to entry points.

A registry lives in the lowest package that uses it and is filled from above: built-in entries are registered
where they are defined, and entries whose code sits in a higher layer (MMGRec's Graph RQ-VAE scheme, the CF
features that train a method) or in another distribution are declared as entry points in that distribution's
``pyproject.toml``, e.g.::

    [project.entry-points."genir.schemes"]
    graph_rqvae = "genir.methods.mmgrec.graph_rqvae:GraphRQVAE"

An entry point is loaded only when its name is asked for (or when every name is listed), so importing a low
layer never imports a higher one, and a lookup by name works without importing the package that defines it.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object table backed by the entry-point ``group``; ``what`` names the kind in error messages."""

    def __init__(self, what: str, group: str, error: type[Exception] = KeyError):
        self.what = what
        self.group = group
        self.error = error
        self._entries: dict[str, T] = {}

    def register(self, name: str, obj: T, *, replace: bool = False) -> T:
        """Add ``obj`` under ``name``; a name taken by another object needs ``replace=True``. Returns ``obj``."""
        if name in self._entries and self._entries[name] is not obj and not replace:
            raise ValueError(f"{self.what} {name!r} is already registered ({self._entries[name]!r}); "
                             "pass replace=True")
        self._entries[name] = obj
        return obj

    def _entry_point(self, name: str):
        for ep in entry_points(group=self.group):
            if ep.name == name:
                return ep
        return None

    def get(self, name: str) -> T:
        """The object registered as ``name``, loading its entry point on first use."""
        if name not in self._entries:
            ep = self._entry_point(name)
            if ep is None:
                raise self.error(f"unknown {self.what} {name!r}; available: {self.names()}")
            self._entries[name] = ep.load()
        return self._entries[name]

    __getitem__ = get

    def names(self) -> list[str]:
        """Registered names and entry-point names, sorted (entry points are not loaded)."""
        return sorted(set(self._entries) | {ep.name for ep in entry_points(group=self.group)})

    def load_all(self) -> dict[str, T]:
        """Every entry, entry points loaded: ``{name: object}``."""
        return {name: self.get(name) for name in self.names()}

    def __contains__(self, name: object) -> bool:
        return name in self._entries or (isinstance(name, str) and self._entry_point(name) is not None)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def pop(self, name: str, default=None):
        return self._entries.pop(name, default)

    def __repr__(self) -> str:
        return f"Registry({self.what!r}, group={self.group!r}, names={self.names()})"
