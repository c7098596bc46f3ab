"""The data sets shipped inside the package (data/bundled/*.jsonl): names, kinds, text."""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

from transfer_neurons.data.files import decode
from transfer_neurons.errors import DataError

BUNDLED_KINDS = {"parallel": "parallel", "qa": "qa", "mc": "mc"}
"""Bundled set name -> kind (the loader that reads it)."""


def bundled_resource(name: str) -> Traversable:
    """The package resource holding a bundled set, or a DataError listing the bundled names."""
    if name not in BUNDLED_KINDS:
        raise DataError(f"unknown bundled data set {name!r}; bundled sets: {', '.join(BUNDLED_KINDS)}")
    return files("transfer_neurons.data") / "bundled" / f"{name}.jsonl"


def bundled_text(name: str) -> str:
    """The decoded text of a bundled set; a missing file means a broken installation."""
    resource = bundled_resource(name)
    if not resource.is_file():
        raise DataError(f"bundled data set {name!r} is missing from this installation (expected {resource})")
    return decode(resource.read_bytes(), f"bundled:{name}")


def bundled_of_kind(spec: str, kind: str) -> bool:
    """Whether spec names a bundled set, failing if that set is of another kind than the loader reads."""
    if spec not in BUNDLED_KINDS:
        return False
    if BUNDLED_KINDS[spec] != kind:
        names = [name for name, k in BUNDLED_KINDS.items() if k == kind]
        raise DataError(f"bundled set {spec!r} is {BUNDLED_KINDS[spec]} data, not {kind}; use: {', '.join(names)}")
    return True

