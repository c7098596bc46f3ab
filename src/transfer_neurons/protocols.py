"""The protocols an analysis can follow: our defaults, or the paper's where it differs (README, "The paper's protocol")."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from .errors import TransferNeuronsError

NAMES = ("default", "paper")
P = TypeVar("P")


def choose(table: Mapping[str, P], name: str | P, what: str) -> P:
    """The protocol object `name` stands for in an analysis' table (an object is returned as it is)."""
    if not isinstance(name, str):
        return name
    if name not in table:
        raise TransferNeuronsError(f"{what} protocol must be one of {', '.join(table)}, got {name!r}")
    return table[name]
