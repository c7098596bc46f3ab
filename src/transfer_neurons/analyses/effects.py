"""Deactivation effects with honest statistics, shared by every analysis.

Given a per-item metric under each condition ([item, layer] arrays keyed by condition
label), report per condition and layer: the mean with a bootstrap 95 % interval, the
effect (none − condition, a drop when positive) with its interval and a paired test
against no deactivation, the paired difference transfer − control of the effects,
and for seeded controls the mean and spread of the effect over seeds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..conditions import Condition
from ..stats import bootstrap_ci, paired_difference, paired_test, seed_spread


def _by_name(conditions: Sequence[Condition]) -> dict[str, list[Condition]]:
    """Group conditions by name, keeping order (seeded controls have several members)."""
    groups: dict[str, list[Condition]] = {}
    for condition in conditions:
        groups.setdefault(condition.name, []).append(condition)
    return groups


def pooled(values: Mapping[str, np.ndarray], members: Sequence[Condition]) -> np.ndarray:
    """Per-item metric of a condition, averaged over its seeds: [item, layer]."""
    return np.mean([np.asarray(values[m.label], dtype=np.float64) for m in members], axis=0)


def summarise(
    values: Mapping[str, np.ndarray],
    conditions: Sequence[Condition],
    metric: str,
    layer_names: Sequence[str] | None = None,
    seed: int = 0,
) -> list[dict]:
    """One row per (condition, layer) with mean, effect vs none, and transfer − control, each with intervals.

    values: condition label -> [item, layer]; must contain "none" and "transfer".
    """
    groups = _by_name(conditions)
    base = pooled(values, groups["none"])  # [item, layer]
    transfer_effect = base - pooled(values, groups["transfer"])
    names = layer_names or [str(l) for l in range(base.shape[1])]
    rows = []
    for name, members in groups.items():
        current = pooled(values, members)
        level = bootstrap_ci(current, seed=seed)
        effect = base - current  # [item, layer], positive = the metric dropped
        drop = bootstrap_ci(effect, seed=seed)
        p_none = paired_test(base, current) if name != "none" else np.ones(base.shape[1])
        vs_transfer = paired_difference(transfer_effect, effect, seed=seed) if name not in ("none", "transfer") else None
        spread = None
        if len(members) > 1:
            per_seed = np.stack([(base - values[m.label]).mean(axis=0) for m in members])  # [seed, layer]
            spread = seed_spread(per_seed)
        for j, layer in enumerate(names):
            row = {
                "metric": metric, "condition": name, "layer": layer, "items": base.shape[0],
                "mean": level.mean[j], "mean_low": level.low[j], "mean_high": level.high[j],
                "drop": drop.mean[j], "drop_low": drop.low[j], "drop_high": drop.high[j],
                "p_vs_none": float(np.atleast_1d(p_none)[j]),
                "transfer_minus_control": None, "tmc_low": None, "tmc_high": None,
                "seeds": len(members) if members[0].seed is not None else None,
                "seed_drop_mean": None, "seed_drop_std": None,
                "note": "; ".join(f"{k}={v:.3g}" for k, v in members[0].note.items()),
            }
            if vs_transfer is not None:
                row.update(transfer_minus_control=vs_transfer.mean[j], tmc_low=vs_transfer.low[j],
                           tmc_high=vs_transfer.high[j])
            if spread is not None:
                row.update(seed_drop_mean=spread[0][j], seed_drop_std=spread[1][j])
            rows.append({k: (float(v) if isinstance(v, np.floating) else v) for k, v in row.items()})
    return rows


def summarise_layer_range(
    values: Mapping[str, np.ndarray],
    conditions: Sequence[Condition],
    metric: str,
    layers: Sequence[int],
    seed: int = 0,
) -> list[dict]:
    """The same table for the per-item mean over a range of layers (e.g. the middle layers)."""
    layers = list(layers)
    reduced = {label: np.asarray(v, dtype=np.float64)[:, layers].mean(axis=1, keepdims=True) for label, v in values.items()}
    return summarise(reduced, conditions, metric, [f"{layers[0]}-{layers[-1]}"], seed)
