"""Deactivation conditions every analysis compares: none, transfer neurons, and controls.

A condition is a named neuron set (or none). Controls come from controls.py and are
built from the detection's own scores and contribution norms, so no second pass is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .controls import build_controls, parse_controls
from .detection import Detection

DEFAULT_CONTROLS = ("random", "layer-matched", "magnitude-matched", "anti")


@dataclass(frozen=True, eq=False)
class Condition:
    """One deactivation setting: `none`, `transfer`, or a control (with its seed, if seeded)."""

    name: str
    neurons: np.ndarray | None  # [n, 2] (layer, neuron), or None for no deactivation
    seed: int | None = None
    note: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        """Name plus seed, unique within one comparison (e.g. `random#3`)."""
        return self.name if self.seed is None else f"{self.name}#{self.seed}"


def build_conditions(
    det: Detection,
    controls: Sequence[str] | str = DEFAULT_CONTROLS,
    seeds: int = 5,
    include_none: bool = True,
) -> list[Condition]:
    """`none`, `transfer` (the detection's ranked neurons) and each control spec, in that order."""
    out = [Condition("none", None)] if include_none else []
    out.append(Condition("transfer", det.neurons))
    for spec in parse_controls(controls):
        for control in build_controls(spec, det.neurons, det.scores, det.magnitudes, det.layers, seeds_default=seeds):
            out.append(Condition(control.name, control.neurons, control.seed, dict(control.note)))
    return out


def condition_groups(conditions: Sequence[Condition]) -> dict[str, list[Condition]]:
    """Conditions grouped by name in order (a seeded control has one member per seed)."""
    groups: dict[str, list[Condition]] = {}
    for condition in conditions:
        groups.setdefault(condition.name, []).append(condition)
    return groups


def language_conditions(dets: dict[str, Detection], controls: Sequence[str] | str, seeds: int) -> tuple[list[Condition], dict]:
    """Conditions common to all languages and, per condition label, each language's own neuron set."""
    if not dets:
        return [Condition("none", None)], {}
    per_lang = {lang: build_conditions(det, controls, seeds=seeds) for lang, det in dets.items()}
    first = next(iter(per_lang.values()))
    neurons = {c.label: {lang: {x.label: x for x in conds}[c.label].neurons for lang, conds in per_lang.items()}
               for c in first}
    generic = [Condition(c.name, c.neurons, c.seed, {f"{lang}:{k}": v for lang, conds in per_lang.items()
                                                       for x in conds if x.label == c.label for k, v in x.note.items()})
               for c in first]
    return generic, neurons
