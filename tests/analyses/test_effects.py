"""The effects table: drops vs none, Benjamini–Hochberg over layers, transfer − control, seed spread."""

import numpy as np
import pytest
from scipy import stats

from transfer_neurons.analyses.effects import summarise, summarise_boot, summarise_layer_range
from transfer_neurons.conditions import Condition
from transfer_neurons.errors import TransferNeuronsError
from transfer_neurons.stats import bh_adjust

CONDITIONS = [
    Condition("none", None), Condition("transfer", np.zeros((1, 2), int)),
    Condition("random", np.zeros((1, 2), int), seed=0), Condition("random", np.zeros((1, 2), int), seed=1),
]


def values(n=50, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.normal(0.5, 0.1, size=(n, 2))
    return {
        "none": base,
        "transfer": base - np.array([0.2, 0.0]),  # drops 0.2 in layer 0 only
        "random#0": base - 0.01,
        "random#1": base - 0.03,
    }


def test_drops_and_differences_are_exact_for_constant_shifts():
    rows = {(r["condition"], r["layer"]): r for r in summarise(values(), CONDITIONS, "cos")}
    t0, r0 = rows[("transfer", "0")], rows[("random", "0")]
    assert t0["drop"] == pytest.approx(0.2) and t0["drop_low"] == pytest.approx(0.2)
    assert rows[("transfer", "1")]["drop"] == pytest.approx(0.0)
    assert r0["drop"] == pytest.approx(0.02)
    assert r0["transfer_minus_control"] == pytest.approx(0.18)
    assert r0["seeds"] == 2 and r0["seed_drop_mean"] == pytest.approx(0.02)
    assert r0["seed_drop_std"] == pytest.approx(np.std([0.01, 0.03], ddof=1))
    assert t0["p_vs_none"] < 1e-6 and rows[("none", "0")]["drop"] == 0.0


def test_layer_range_averages_items_over_layers():
    rows = summarise_layer_range(values(), CONDITIONS, "cos", layers=[0, 1])
    transfer = next(r for r in rows if r["condition"] == "transfer")
    assert transfer["layer"] == "0-1" and transfer["drop"] == pytest.approx(0.1)


def test_summarise_boot_drops_and_transfer_minus_control():
    point = {"none": np.array([0.9, 0.8]), "transfer": np.array([0.5, 0.8]),
             "random#0": np.array([0.85, 0.8]), "random#1": np.array([0.75, 0.8])}
    boot = {label: np.tile(v, (50, 1)) + np.linspace(-0.01, 0.01, 50)[:, None] for label, v in point.items()}
    rows = {(r["condition"], r["layer"]): r for r in summarise_boot(point, boot, CONDITIONS, "cka", 30)}
    t0, r0 = rows[("transfer", "0")], rows[("random", "0")]
    assert t0["drop"] == pytest.approx(0.4) and t0["drop_low"] == pytest.approx(0.4) and t0["p_vs_none"] == pytest.approx(2 / 51)
    assert rows[("transfer", "1")]["drop"] == pytest.approx(0.0) and rows[("transfer", "1")]["p_vs_none"] == 1.0
    assert r0["drop"] == pytest.approx(0.1) and r0["transfer_minus_control"] == pytest.approx(0.3)
    assert r0["seed_drop_mean"] == pytest.approx(0.1) and r0["seed_drop_std"] == pytest.approx(np.std([0.05, 0.15], ddof=1))
    assert t0["mean_low"] == pytest.approx(0.49, abs=1e-3) and t0["items"] == 30


def _bh_by_hand(p):
    """Benjamini–Hochberg from its definition: min over k >= rank of p_(k) * m / k, capped at 1."""
    p = np.asarray(p, dtype=float)
    order = np.argsort(p)
    m = len(p)
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    out = np.empty(m)
    out[order] = adjusted
    return out


def test_bh_column_matches_scipy_over_the_layers_of_each_condition():
    rng = np.random.default_rng(3)
    n, layers = 40, 6
    base = rng.normal(0.5, 0.1, size=(n, layers))
    shift = np.array([0.05, 0.02, 0.01, 0.0, 0.005, 0.03])  # some layers clearly, some barely, one not at all
    vals = {"none": base, "transfer": base - shift - rng.normal(0, 0.05, size=(n, layers)),
            "random#0": base - rng.normal(0, 0.05, size=(n, layers)), "random#1": base - rng.normal(0, 0.05, size=(n, layers))}
    rows = summarise(vals, CONDITIONS, "cos")
    for name in ("transfer", "random"):
        mine = [r for r in rows if r["condition"] == name]
        raw = np.array([r["p_vs_none"] for r in mine])
        bh = np.array([r["p_vs_none_bh"] for r in mine])
        assert len(raw) == layers and np.any(bh > raw)  # the correction did something
        # same float64 operations on the same numbers: agreement to rounding
        np.testing.assert_allclose(bh, stats.false_discovery_control(raw, method="bh"), rtol=1e-12)
        np.testing.assert_allclose(bh, _bh_by_hand(raw), rtol=1e-12)
    assert all(r["p_vs_none_bh"] == 1.0 for r in rows if r["condition"] == "none")


def test_bh_column_of_bootstrap_table_matches_scipy():
    point = {"none": np.array([0.9, 0.8, 0.7]), "transfer": np.array([0.5, 0.8, 0.69]),
             "random#0": np.array([0.85, 0.8, 0.7]), "random#1": np.array([0.75, 0.8, 0.7])}
    noise = np.random.default_rng(0).normal(0, 0.02, size=(200, 3))
    boot = {label: v + noise * (1 + i) for i, (label, v) in enumerate(point.items())}
    rows = [r for r in summarise_boot(point, boot, CONDITIONS, "cka", 30) if r["condition"] == "transfer"]
    raw = np.array([r["p_vs_none"] for r in rows])
    np.testing.assert_allclose([r["p_vs_none_bh"] for r in rows], stats.false_discovery_control(raw), rtol=1e-12)


def test_bh_adjust_known_case_and_bad_input():
    # p = (0.01, 0.04, 0.03, 0.005): sorted ranks give 0.02, 0.02, 0.04, 0.04 (by hand)
    np.testing.assert_allclose(bh_adjust([0.01, 0.04, 0.03, 0.005]), [0.02, 0.04, 0.04, 0.02], rtol=1e-12)
    assert bh_adjust([0.3]) == pytest.approx([0.3])  # one test: nothing to correct
    with pytest.raises(TransferNeuronsError, match="p_values"):
        bh_adjust([0.1, 1.5])
