"""Registries by name (strategies, studies, analysis verbs): one entry per name, and a second
registration under a name already taken is refused rather than silently replacing the first."""
from __future__ import annotations

from typing import TypeVar

Item = TypeVar("Item")


def add(registry: dict[str, Item], kind: str, name: str, item: Item) -> Item:
    if name in registry:
        raise ValueError(f"a {kind} named '{name}' is already registered")
    registry[name] = item
    return item
