"""Tests for transfer_neurons.stats: bootstrap intervals, paired tests, overlap/share tests."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats

from transfer_neurons.errors import TransferNeuronsError
from transfer_neurons.stats import (
    Interval,
    bootstrap_ci,
    check_seed,
    expected_overlap,
    hypergeom_overlap_p,
    paired_difference,
    paired_test,
    seed_spread,
    share_vs_base_rate,
    two_proportion_test,
)


def test_bootstrap_constant_values_give_zero_width_interval():
    ci = bootstrap_ci(np.full(50, 0.3))
    assert isinstance(ci, Interval)
    assert ci.mean == pytest.approx(0.3)
    assert ci.low == pytest.approx(0.3) and ci.high == pytest.approx(0.3)


def test_bootstrap_large_normal_sample_matches_normal_theory():
    sd, n = 2.0, 10_000
    values = np.random.default_rng(1).normal(3.0, sd, size=n)
    ci = bootstrap_ci(values, seed=0)
    assert ci.low < 3.0 < ci.high
    assert ci.low < ci.mean < ci.high
    assert ci.high - ci.low == pytest.approx(2 * 1.96 * sd / np.sqrt(n), rel=0.1)


def test_bootstrap_level_widens_interval_and_seed_is_deterministic():
    values = np.random.default_rng(2).normal(size=200)
    narrow, wide = bootstrap_ci(values, level=0.5), bootstrap_ci(values, level=0.99)
    assert wide.high - wide.low > narrow.high - narrow.low
    assert bootstrap_ci(values, seed=7) == bootstrap_ci(values, seed=7)
    assert bootstrap_ci(values, seed=7) != bootstrap_ci(values, seed=8)


@settings(max_examples=30, deadline=None)
@given(
    arrays(
        np.float64,
        st.tuples(st.integers(1, 30), st.integers(1, 5)),
        elements=st.floats(-1e3, 1e3),
    ),
    st.integers(0, 2**32 - 1),
)
def test_bootstrap_2d_equals_per_column_1d(values, seed):
    ci = bootstrap_ci(values, seed=seed, n_boot=200)
    assert ci.mean.shape == (values.shape[1],)
    for j in range(values.shape[1]):
        col = bootstrap_ci(values[:, j], seed=seed, n_boot=200)
        np.testing.assert_allclose(
            [ci.mean[j], ci.low[j], ci.high[j]], [col.mean, col.low, col.high], atol=1e-9
        )


def test_paired_difference_is_mean_difference_and_per_layer():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(400, 3))
    b = a - np.array([0.0, 1.0, -2.0])
    diff = paired_difference(a, b)
    np.testing.assert_allclose(diff.mean, [0.0, 1.0, -2.0], atol=1e-12)
    np.testing.assert_allclose(diff.low, diff.high, atol=1e-12)
    noisy = paired_difference(a[:, 0], rng.normal(size=400) + 0.5)
    assert noisy.low < noisy.mean < noisy.high


def test_paired_test_shifted_small_identical_one():
    rng = np.random.default_rng(4)
    a = rng.normal(size=100)
    assert paired_test(a + 0.5 + rng.normal(scale=0.2, size=100), a) < 1e-6
    assert paired_test(a, a) == 1.0
    two_d = np.stack([a, a + np.linspace(0.1, 1.0, 100)], axis=1)
    p = paired_test(two_d, np.stack([a, a], axis=1))
    assert p[0] == 1.0 and p[1] < 1e-6
    assert p[1] == pytest.approx(paired_test(two_d[:, 1], a))


def test_paired_shape_mismatch_is_an_error():
    with pytest.raises(TransferNeuronsError, match="same shape"):
        paired_test(np.zeros(3), np.zeros(4))
    with pytest.raises(TransferNeuronsError, match="values"):
        bootstrap_ci(np.array([1.0, np.nan]))
    with pytest.raises(TransferNeuronsError, match="level"):
        bootstrap_ci(np.ones(3), level=1.5)


def test_seed_spread():
    assert seed_spread(np.array([1.0, 2.0, 3.0])) == pytest.approx((2.0, 1.0))
    assert seed_spread(np.array([4.0])) == (4.0, 0.0)
    mean, std = seed_spread(np.array([[1.0, 0.0], [3.0, 0.0]]))
    np.testing.assert_allclose(mean, [2.0, 0.0])
    np.testing.assert_allclose(std, [np.sqrt(2.0), 0.0])


def test_hypergeom_overlap_hand_computed():
    # Population 5, two sets of 2: P(X=0) = C(3,2)/C(5,2) = 3/10, P(X=2) = 1/10.
    assert hypergeom_overlap_p(0, 2, 2, 5) == pytest.approx(1.0)
    assert hypergeom_overlap_p(1, 2, 2, 5) == pytest.approx(0.7)
    assert hypergeom_overlap_p(2, 2, 2, 5) == pytest.approx(0.1)
    assert expected_overlap(2, 2, 5) == pytest.approx(0.8)
    with pytest.raises(TransferNeuronsError, match="overlap"):
        hypergeom_overlap_p(3, 2, 2, 5)
    with pytest.raises(TransferNeuronsError, match="set_a"):
        hypergeom_overlap_p(0, 6, 2, 5)


def test_share_vs_base_rate_and_two_proportions_hand_computed():
    # 2 of 2 sampled pass, 2 of 5 pass overall: 1/C(5,2) = 0.1.
    assert share_vs_base_rate(2, 2, 2, 5) == pytest.approx(0.1)
    assert share_vs_base_rate(0, 2, 2, 5) == pytest.approx(1.0)
    # [[3, 0], [0, 3]]: each extreme table has probability 1/C(6,3) = 1/20.
    assert two_proportion_test(3, 3, 0, 3) == pytest.approx(0.1)
    assert two_proportion_test(3, 3, 0, 3, alternative="greater") == pytest.approx(0.05)
    assert two_proportion_test(5, 10, 5, 10) == pytest.approx(1.0)
    with pytest.raises(TransferNeuronsError, match="k1"):
        two_proportion_test(4, 3, 0, 3)
    with pytest.raises(TransferNeuronsError, match="alternative"):
        two_proportion_test(1, 3, 0, 3, alternative="bigger")


def test_bootstrap_matches_scipy_percentile_bootstrap_on_a_skewed_sample():
    # known case: 40 exponential values; both sides use the percentile method at 95 %
    values = np.random.default_rng(5).exponential(size=40)
    ours = bootstrap_ci(values, seed=1, n_boot=20_000)
    ref = stats.bootstrap((values,), np.mean, n_resamples=20_000, method="percentile",
                          confidence_level=0.95, rng=np.random.default_rng(2)).confidence_interval
    # independent resamples: each bound is a 2.5 % / 97.5 % quantile of 20,000 resample means
    # (sd ≈ 0.16 here), whose Monte Carlo error is about 0.003; 0.015 is five of those
    assert ours.low == pytest.approx(ref.low, abs=0.015)
    assert ours.high == pytest.approx(ref.high, abs=0.015)
    assert ours.mean == pytest.approx(values.mean(), rel=1e-12)


def test_bootstrap_draws_scipys_resamples_for_the_same_seed():
    # same generator seed: the resample index matrix is scipy's, so the bounds agree to float
    # rounding (we sum the resample means in another order); per layer for 2-D input
    values = np.random.default_rng(6).normal(size=(30, 3)) ** 2
    ours = bootstrap_ci(values, seed=4, n_boot=999)
    for j in range(3):
        ref = stats.bootstrap((values[:, j],), np.mean, n_resamples=999, method="percentile",
                              rng=np.random.default_rng(4)).confidence_interval
        assert ours.low[j] == pytest.approx(ref.low, rel=1e-9)
        assert ours.high[j] == pytest.approx(ref.high, rel=1e-9)


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, True, "3"])
def test_a_seed_no_generator_accepts_is_refused_by_name(seed):
    with pytest.raises(TransferNeuronsError, match=r"^seed: expected an integer from 0 to 4294967295"):
        bootstrap_ci(np.arange(5.0), seed=seed)
    assert check_seed(2**32 - 1) == 2**32 - 1
