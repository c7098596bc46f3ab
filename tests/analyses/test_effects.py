"""The effects table: drops vs none, transfer − control, seed spread, on constructed values."""

import numpy as np
import pytest

from transfer_neurons.analyses.effects import summarise, summarise_boot, summarise_layer_range
from transfer_neurons.conditions import Condition

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
