"""Control neuron sets the transfer neurons are compared against (method.md §5): random,
layer-matched, magnitude-matched and anti; deterministic given a seed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from transfer_neurons.errors import TransferNeuronsError
from transfer_neurons.neuron_sets import check_neurons

SEEDED_KINDS = ("random", "layer-matched")
CONTROL_KINDS = (*SEEDED_KINDS, "magnitude-matched", "anti")
_ACCEPTED = "random[:SEEDS], layer-matched[:SEEDS], magnitude-matched, anti"


@dataclass(frozen=True)
class ControlSpec:
    """A parsed control: its kind and, for seeded kinds, the seed count (None = default)."""

    kind: str
    seeds: int | None = None

    def __post_init__(self) -> None:
        """Reject kinds and seed counts that no control accepts."""
        seeds_ok = self.seeds is None or (
            self.kind in SEEDED_KINDS and isinstance(self.seeds, int) and self.seeds >= 1
        )
        if self.kind not in CONTROL_KINDS or not seeds_ok:
            raise TransferNeuronsError(
                f"control spec {self.kind!r} with seeds={self.seeds!r}: expected one of {_ACCEPTED}"
                " with SEEDS a positive integer"
            )


@dataclass(frozen=True, eq=False)
class Control:
    """One control neuron set: kind name, seed (None if deterministic), neurons [n, 2], notes."""

    name: str
    seed: int | None
    neurons: np.ndarray
    note: dict = field(default_factory=dict)


def _check_neurons(transfer: np.ndarray, d_ff: int) -> np.ndarray:
    """Validate a neuron set as an int64 [n, 2] array of (layer, neuron) with neuron < d_ff."""
    arr = check_neurons(transfer, "transfer")
    if np.any(arr < 0) or np.any(arr[:, 1] >= d_ff):
        raise TransferNeuronsError(
            f"transfer: expected layers >= 0 and neurons in [0, {d_ff}), got out-of-range entries"
        )
    return arr


def _check_d_ff(d_ff: int) -> int:
    """Validate the MLP width."""
    if isinstance(d_ff, bool) or not isinstance(d_ff, (int, np.integer)) or d_ff < 1:
        raise TransferNeuronsError(f"d_ff: expected a positive integer, got {d_ff!r}")
    return int(d_ff)


def _check_layers(candidate_layers: tuple[int, ...], num_layers: int | None = None) -> np.ndarray:
    """Validate candidate layers as a non-empty, sorted, duplicate-free tuple of valid indices."""
    layers = np.asarray(candidate_layers)
    bad = (
        layers.ndim != 1
        or layers.size == 0
        or layers.dtype.kind not in "iu"
        or np.any(np.diff(layers) <= 0)
        or layers[0] < 0
        or (num_layers is not None and layers[-1] >= num_layers)
    )
    if bad:
        bound = "" if num_layers is None else f" below {num_layers}"
        raise TransferNeuronsError(
            f"candidate_layers: expected a non-empty sorted tuple of distinct layer indices >= 0"
            f"{bound}, got {candidate_layers!r}"
        )
    return layers.astype(np.int64)


def _to_pairs(flat: np.ndarray, d_ff: int) -> np.ndarray:
    """Turn flat ids layer * d_ff + neuron into an int64 [n, 2] neuron set."""
    return np.stack([flat // d_ff, flat % d_ff], axis=1).astype(np.int64)


def random_control(
    transfer: np.ndarray, candidate_layers: tuple[int, ...], d_ff: int, seed: int
) -> np.ndarray:
    """As many neurons as the transfer set, uniformly from the candidate layers minus it, sorted."""
    d_ff = _check_d_ff(d_ff)
    layers = _check_layers(candidate_layers)
    neurons = _check_neurons(transfer, d_ff)
    pool = (layers[:, None] * d_ff + np.arange(d_ff)).ravel()
    pool = np.setdiff1d(pool, neurons[:, 0] * d_ff + neurons[:, 1], assume_unique=False)
    if len(neurons) > len(pool):
        raise TransferNeuronsError(
            f"transfer: {len(neurons)} neurons but only {len(pool)} non-transfer neurons "
            f"in candidate_layers {tuple(candidate_layers)}"
        )
    picked = np.random.default_rng(seed).choice(pool, size=len(neurons), replace=False)
    return _to_pairs(np.sort(picked), d_ff)


def layer_matched(transfer: np.ndarray, d_ff: int, seed: int) -> np.ndarray:
    """Random non-transfer neurons with the transfer set's count in every layer, sorted."""
    d_ff = _check_d_ff(d_ff)
    neurons = _check_neurons(transfer, d_ff)
    rng = np.random.default_rng(seed)
    chosen = []
    for layer in np.unique(neurons[:, 0]):
        taken = neurons[neurons[:, 0] == layer, 1]
        free = np.setdiff1d(np.arange(d_ff), taken)
        if len(taken) > len(free):
            raise TransferNeuronsError(
                f"transfer: layer {layer} holds {len(taken)} transfer neurons but only "
                f"{len(free)} others exist (d_ff={d_ff})"
            )
        chosen.append(layer * d_ff + np.sort(rng.choice(free, size=len(taken), replace=False)))
    return _to_pairs(np.concatenate(chosen) if chosen else np.empty(0, np.int64), d_ff)


def magnitude_matched(
    transfer: np.ndarray, magnitudes: np.ndarray
) -> tuple[np.ndarray, float]:
    """Per transfer neuron in rank order, the closest-magnitude unused non-transfer neuron of
    its layer (greedy, ties to the lower index); returns the set and its mean-magnitude ratio."""
    mags = np.asarray(magnitudes, dtype=np.float64)
    if mags.ndim != 2 or not np.all(np.isfinite(mags)):
        raise TransferNeuronsError(
            f"magnitudes: expected a finite [num_layers, d_ff] array, got shape {mags.shape}"
        )
    neurons = _check_neurons(transfer, mags.shape[1])
    if np.any(neurons[:, 0] >= mags.shape[0]):
        raise TransferNeuronsError(
            f"transfer: expected layers below {mags.shape[0]} (rows of magnitudes)"
        )
    available = np.ones(mags.shape, dtype=bool)
    available[neurons[:, 0], neurons[:, 1]] = False
    matched = np.empty_like(neurons)
    for row, (layer, neuron) in enumerate(neurons):
        gap = np.where(available[layer], np.abs(mags[layer] - mags[layer, neuron]), np.inf)
        best = int(np.argmin(gap))
        if not available[layer, best]:
            raise TransferNeuronsError(
                f"transfer: layer {layer} has no unused non-transfer neuron left to match"
            )
        available[layer, best] = False
        matched[row] = (layer, best)
    transfer_mean = mags[neurons[:, 0], neurons[:, 1]].mean() if len(neurons) else 0.0
    ratio = mags[matched[:, 0], matched[:, 1]].mean() / transfer_mean if transfer_mean else np.nan
    return matched, float(ratio)


def anti_neurons(scores: np.ndarray, candidate_layers: tuple[int, ...], n: int) -> np.ndarray:
    """The n lowest-scoring neurons of the candidate layers, most negative first (stable ties)."""
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim != 2:
        raise TransferNeuronsError(
            f"scores: expected a [num_layers, d_ff] array, got shape {arr.shape}"
        )
    layers = _check_layers(candidate_layers, arr.shape[0])
    size = layers.size * arr.shape[1]
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 <= n <= size:
        raise TransferNeuronsError(
            f"n: expected an integer in [0, {size}] (candidate neurons), got {n!r}"
        )
    order = np.argsort(arr[layers].ravel(), kind="stable")[:n]
    return np.stack([layers[order // arr.shape[1]], order % arr.shape[1]], axis=1)


def parse_control(spec: str) -> ControlSpec:
    """Parse "random", "random:SEEDS", "layer-matched[:SEEDS]", "magnitude-matched" or "anti"."""
    kind, sep, count = str(spec).strip().partition(":")
    if kind not in CONTROL_KINDS or (sep and kind not in SEEDED_KINDS):
        raise TransferNeuronsError(f"control spec {spec!r}: expected one of {_ACCEPTED}")
    if sep and not (count.isascii() and count.isdigit() and int(count) >= 1):
        raise TransferNeuronsError(
            f"control spec {spec!r}: SEEDS must be a positive integer (accepted: {_ACCEPTED})"
        )
    return ControlSpec(kind, int(count) if sep else None)


def parse_controls(specs: Sequence[str | ControlSpec] | str) -> list[ControlSpec]:
    """Parse several specs, or one comma-separated string of them; a kind given twice ("random:1,random:2") is
    refused, since its seeds would repeat."""
    if isinstance(specs, str):
        specs = [spec.strip() for spec in specs.split(",") if spec.strip()]
    parsed = [spec if isinstance(spec, ControlSpec) else parse_control(spec) for spec in specs]
    kinds = [p.kind for p in parsed]
    twice = sorted({kind for kind in kinds if kinds.count(kind) > 1})
    if twice:
        raise TransferNeuronsError(f"controls {', '.join(map(str, specs))}: {', '.join(map(repr, twice))} given more than "
                                   "once; give each kind once (random:SEEDS sets its seeds)")
    return parsed


def build_controls(
    spec: str | ControlSpec,
    transfer: np.ndarray,
    scores: np.ndarray,
    magnitudes: np.ndarray | None,
    candidate_layers: tuple[int, ...],
    seeds_default: int = 5,
) -> list[Control]:
    """Build the control sets a spec asks for (one per seed 0..SEEDS-1 for seeded kinds)."""
    parsed = spec if isinstance(spec, ControlSpec) else parse_control(spec)
    if np.ndim(scores) != 2:
        raise TransferNeuronsError(
            f"scores: expected a [num_layers, d_ff] array, got shape {np.shape(scores)}"
        )
    num_layers, d_ff = np.shape(scores)
    _check_layers(candidate_layers, num_layers)
    if parsed.kind in SEEDED_KINDS:
        seeds = parsed.seeds if parsed.seeds is not None else seeds_default
        if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
            raise TransferNeuronsError(f"seeds: expected a positive integer, got {seeds!r}", option="seeds")
        if parsed.kind == "random":
            return [
                Control("random", s, random_control(transfer, candidate_layers, d_ff, s))
                for s in range(seeds)
            ]
        return [Control("layer-matched", s, layer_matched(transfer, d_ff, s)) for s in range(seeds)]
    if parsed.kind == "anti":
        return [Control("anti", None, anti_neurons(scores, candidate_layers, len(transfer)))]
    if magnitudes is None or np.shape(magnitudes) != (num_layers, d_ff):
        raise TransferNeuronsError(
            f"magnitudes: the magnitude-matched control needs an array of the shape of scores "
            f"{(num_layers, d_ff)}, got {None if magnitudes is None else np.shape(magnitudes)}"
        )
    neurons, ratio = magnitude_matched(transfer, magnitudes)
    return [Control("magnitude-matched", None, neurons, {"magnitude_ratio": ratio})]
