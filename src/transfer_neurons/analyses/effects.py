"""Deactivation effects with honest statistics, shared by every analysis.

Given a per-item metric under each condition ([item, layer] arrays keyed by condition
label), report per condition and layer: the mean with a bootstrap 95 % interval, the
effect (none − condition, a drop when positive) with its interval and a paired test
against no deactivation (raw p, and Benjamini–Hochberg adjusted over the layers of that
condition and metric: `p_vs_none_bh`), the paired difference transfer − control of the effects,
and for seeded controls the mean and spread of the effect over seeds. Set-level
statistics (CKA, centroid distances) get the same table from a paired bootstrap
(summarise_boot).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..conditions import Condition, condition_groups
from ..stats import bh_adjust, bootstrap_ci, paired_difference, paired_test, seed_spread


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
    groups = condition_groups(conditions)
    base = pooled(values, groups["none"])  # [item, layer]
    transfer_effect = base - pooled(values, groups["transfer"])
    names = layer_names or [str(l) for l in range(base.shape[1])]
    rows = []
    for name, members in groups.items():
        current = pooled(values, members)
        level = bootstrap_ci(current, seed=seed)
        effect = base - current  # [item, layer], positive = the metric dropped
        drop = bootstrap_ci(effect, seed=seed)
        p_none = np.atleast_1d(paired_test(base, current)) if name != "none" else np.ones(base.shape[1])  # [layer]
        p_bh = bh_adjust(p_none)  # over this condition's layers
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
                "p_vs_none": float(p_none[j]), "p_vs_none_bh": float(p_bh[j]),
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


def _percentiles(boot: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over axis 0 of [boot, layer], ignoring NaN resamples."""
    alpha = 1.0 - level
    low, high = np.nanquantile(boot, [alpha / 2, 1 - alpha / 2], axis=0)
    return low, high


def _boot_p(effect_boot: np.ndarray) -> np.ndarray:
    """Two-sided bootstrap p-value that an effect [boot, layer] is zero, (count + 1) / (resamples + 1) convention."""
    below = np.sum(effect_boot <= 0, axis=0)
    above = np.sum(effect_boot >= 0, axis=0)
    return np.minimum(1.0, 2 * (np.minimum(below, above) + 1) / (effect_boot.shape[0] + 1))


def summarise_boot(
    point: Mapping[str, np.ndarray],
    boot: Mapping[str, np.ndarray],
    conditions: Sequence[Condition],
    metric: str,
    items: int,
    layer_names: Sequence[str] | None = None,
) -> list[dict]:
    """summarise's table for a set-level statistic (e.g. CKA): point label -> [layer], boot label -> [boot, layer].

    All labels must share one set of resamples. Intervals are bootstrap percentiles; p_vs_none is
    the two-sided bootstrap p of the drop; seeded controls average their seeds (the point and each
    resample) and report the drop's mean and spread over seeds.
    """
    groups = condition_groups(conditions)
    mean_of = {name: (np.mean([point[m.label] for m in members], axis=0),
                      np.mean([boot[m.label] for m in members], axis=0)) for name, members in groups.items()}
    base, base_boot = mean_of["none"]
    names = layer_names or [str(l) for l in range(len(base))]
    transfer = mean_of.get("transfer")
    rows = []
    for name, members in groups.items():
        value, value_boot = mean_of[name]
        low, high = _percentiles(value_boot)
        drop, drop_boot = base - value, base_boot - value_boot
        drop_low, drop_high = _percentiles(drop_boot)
        p = _boot_p(drop_boot) if name != "none" else np.ones(len(base))
        p_bh = bh_adjust(p)  # over this condition's layers
        tmc = None
        if transfer is not None and name not in ("none", "transfer"):
            tmc_boot = (base_boot - transfer[1]) - drop_boot
            tmc = ((base - transfer[0]) - drop, *_percentiles(tmc_boot))
        seeded = len(members) > 1
        per_seed = np.stack([base - point[m.label] for m in members]) if seeded else None  # [seed, layer]
        seed_mean, seed_std = (per_seed.mean(axis=0), per_seed.std(axis=0, ddof=1)) if seeded else (None, None)
        for j, layer in enumerate(names):
            row = {
                "metric": metric, "condition": name, "layer": layer, "items": items,
                "mean": value[j], "mean_low": low[j], "mean_high": high[j],
                "drop": drop[j], "drop_low": drop_low[j], "drop_high": drop_high[j], "p_vs_none": p[j],
                "p_vs_none_bh": p_bh[j],
                "transfer_minus_control": None if tmc is None else tmc[0][j],
                "tmc_low": None if tmc is None else tmc[1][j], "tmc_high": None if tmc is None else tmc[2][j],
                "seeds": len(members) if members[0].seed is not None else None,
                "seed_drop_mean": seed_mean[j] if seeded else None,
                "seed_drop_std": seed_std[j] if seeded else None,
                "note": "; ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in members[0].note.items()),
            }
            rows.append({k: (float(v) if isinstance(v, (np.floating, np.integer)) else v) for k, v in row.items()})
    return rows


def layer_range(values: Mapping[str, np.ndarray], layers: Sequence[int]) -> dict[str, np.ndarray]:
    """Mean over the given layers (last axis) of each label's array, keeping that axis of length 1."""
    return {label: np.asarray(v)[..., list(layers)].mean(axis=-1, keepdims=True) for label, v in values.items()}
