"""One name -> object registry, keyed by the torch.nn.functional name."""
from __future__ import annotations

from typing import Generic, ItemsView, Iterator, TypeVar

T = TypeVar("T")


class UnknownNameError(ValueError):
    """An activation or loss name that is not registered; the message lists the valid ones."""


class Registry(Generic[T]):
    """A read-only mapping whose lookups fail with the list of valid names."""

    def __init__(self, kind: str, items: dict[str, T]):
        self.kind = kind
        self._items = dict(items)

    def __getitem__(self, name: str) -> T:
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; valid: {', '.join(self._items)}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> ItemsView[str, T]:
        return self._items.items()

    def register(self, name: str, item: T) -> None:
        """Add ``item`` under a new ``name`` (a user's activation, verify.core.custom)."""
        self._items[name] = item

    def unregister(self, name: str) -> None:
        """Remove ``name`` (added by register), if present."""
        self._items.pop(name, None)
