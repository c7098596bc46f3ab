"""Statistics every analysis reports: bootstrap intervals, paired tests, Benjamini–Hochberg
adjustment over layers, seed spread and hypergeometric / Fisher tests for neuron-set overlaps
and shares (numpy/scipy, seeded)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from transfer_neurons.errors import TransferNeuronsError

MAX_SEED = 2**32 - 1
"""The largest seed every generator used here accepts (scikit-learn's random_state is a 32-bit seed)."""


def check_seed(value: object, name: str = "seed") -> int:
    """A seed in 0..MAX_SEED, else an error naming `name`: caught before any model work, not inside the PCA."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise TransferNeuronsError(f"{name}: expected an integer from 0 to {MAX_SEED}, got {value!r}", option=name)
    return value


def seeded_rng(seed: object) -> np.random.Generator:
    """numpy's generator for a checked seed (check_seed)."""
    return np.random.default_rng(check_seed(seed))


_ALTERNATIVES = ("two-sided", "less", "greater")


@dataclass(frozen=True)
class Interval:
    """A mean with its confidence bounds; floats for 1-D input, per-layer arrays for 2-D."""

    mean: float | np.ndarray
    low: float | np.ndarray
    high: float | np.ndarray


def _as_samples(values: np.ndarray, name: str) -> np.ndarray:
    """Validate per-sentence values (1-D, or 2-D [sentences, layers]) as a finite float array."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim not in (1, 2) or arr.shape[0] == 0:
        raise TransferNeuronsError(
            f"{name}: expected a non-empty 1-D [sentences] or 2-D [sentences, layers] array, "
            f"got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise TransferNeuronsError(f"{name}: expected finite values, found NaN or inf")
    return arr


def _as_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate two paired samples of identical shape."""
    a_arr, b_arr = _as_samples(a, "a"), _as_samples(b, "b")
    if a_arr.shape != b_arr.shape:
        raise TransferNeuronsError(
            f"a, b: expected paired values of the same shape, got {a_arr.shape} and {b_arr.shape}"
        )
    return a_arr, b_arr


def _unwrap(x: np.ndarray, one_d: bool) -> float | np.ndarray:
    """Return a Python float for 1-D input, the per-layer array otherwise."""
    return float(x[0]) if one_d else x


def resample_counts(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """How often each of n items appears in each of n_boot bootstrap resamples: [boot, n]."""
    idx = rng.integers(0, n, size=(n_boot, n))
    offsets = np.arange(n_boot)[:, None] * n
    return np.bincount((idx + offsets).ravel(), minlength=n_boot * n).reshape(n_boot, n)


def bootstrap_ci(
    values: np.ndarray, seed: int = 0, n_boot: int = 2000, level: float = 0.95
) -> Interval:
    """Percentile bootstrap interval of the mean over sentences, per layer for 2-D input.

    All layers share one resample index matrix, so a 2-D column equals the 1-D call on it.
    """
    arr = _as_samples(values, "values")
    if not (isinstance(n_boot, (int, np.integer)) and n_boot >= 1):
        raise TransferNeuronsError(f"n_boot: expected a positive integer, got {n_boot!r}")
    if not 0.0 < level < 1.0:
        raise TransferNeuronsError(f"level: expected a number in (0, 1), got {level!r}")
    one_d = arr.ndim == 1
    cols = arr[:, None] if one_d else arr
    n = cols.shape[0]
    mean = cols.mean(axis=0)
    counts = resample_counts(n, int(n_boot), seeded_rng(seed))
    boot_means = mean + counts @ (cols - mean) / n
    alpha = 1.0 - level
    low, high = np.quantile(boot_means, [alpha / 2, 1.0 - alpha / 2], axis=0)
    return Interval(_unwrap(mean, one_d), _unwrap(low, one_d), _unwrap(high, one_d))


def paired_difference(
    a: np.ndarray, b: np.ndarray, seed: int = 0, n_boot: int = 2000, level: float = 0.95
) -> Interval:
    """Mean of a − b over the same sentences with its bootstrap interval (per layer for 2-D)."""
    a_arr, b_arr = _as_pair(a, b)
    return bootstrap_ci(a_arr - b_arr, seed=seed, n_boot=n_boot, level=level)


def paired_test(a: np.ndarray, b: np.ndarray) -> float | np.ndarray:
    """Two-sided Wilcoxon signed-rank p-value of a vs b (zero differences dropped), per layer.

    A layer whose differences are all zero gets p = 1.0; layers are tested one by one so
    each per-layer p equals the 1-D call on that column.
    """
    a_arr, b_arr = _as_pair(a, b)
    diff = a_arr - b_arr
    one_d = diff.ndim == 1
    cols = diff[:, None] if one_d else diff
    p = np.ones(cols.shape[1])
    for j in np.flatnonzero(np.any(cols != 0, axis=0)):
        p[j] = sps.wilcoxon(cols[:, j]).pvalue
    return _unwrap(p, one_d)


def bh_adjust(p_values: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (scipy.stats.false_discovery_control, method "bh") of one family.

    The effects tables call it over the layers of one condition and metric: the layers are the
    family of tests, so a per-layer claim keeps the false discovery rate at the stated level.
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1 or p.size == 0 or not np.all((p >= 0) & (p <= 1)):
        raise TransferNeuronsError(f"p_values: expected a non-empty 1-D array of values in [0, 1], got {p!r}")
    return sps.false_discovery_control(p, method="bh")


def seed_spread(values_per_seed: np.ndarray) -> tuple[float | np.ndarray, float | np.ndarray]:
    """Mean and standard deviation over seeds (axis 0; ddof=1 with more than one seed, else 0)."""
    arr = _as_samples(values_per_seed, "values_per_seed")
    ddof = 1 if arr.shape[0] > 1 else 0
    mean, std = arr.mean(axis=0), arr.std(axis=0, ddof=ddof)
    if arr.ndim == 1:
        return float(mean), float(std)
    return mean, std


def _check_count(name: str, value: int) -> int:
    """Validate a non-negative integer count."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise TransferNeuronsError(f"{name}: expected a non-negative integer, got {value!r}")
    return int(value)


def _check_hypergeom(
    names: tuple[str, str, str, str], hits: int, draws: int, marked: int, total: int
) -> tuple[int, int, int, int]:
    """Validate (hits among draws, marked among total) as a possible hypergeometric outcome."""
    vals = tuple(_check_count(n, v) for n, v in zip(names, (hits, draws, marked, total)))
    for small, big in ((1, 3), (2, 3), (0, 1), (0, 2)):
        if vals[small] > vals[big]:
            raise TransferNeuronsError(
                f"{names[small]}: expected at most {names[big]} ({vals[big]}), got {vals[small]}"
            )
    return vals


def hypergeom_overlap_p(overlap: int, set_a: int, set_b: int, population: int) -> float:
    """P(X >= overlap) for the chance overlap of two random sets of sizes set_a, set_b."""
    k, b, a, m = _check_hypergeom(
        ("overlap", "set_b", "set_a", "population"), overlap, set_b, set_a, population
    )
    return float(sps.hypergeom.sf(k - 1, m, a, b))


def expected_overlap(set_a: int, set_b: int, population: int) -> float:
    """Expected chance overlap of two random sets of sizes set_a and set_b."""
    _, b, a, m = _check_hypergeom(
        ("overlap", "set_b", "set_a", "population"), 0, set_b, set_a, population
    )
    return a * b / m if m else 0.0


def share_vs_base_rate(k_pass: int, k: int, base_pass: int, base_total: int) -> float:
    """One-sided p that k neurons drawn from base_total (base_pass passing) have >= k_pass passing.

    The base counts are over the whole population the k neurons came from, the sample included.
    """
    h, d, m, t = _check_hypergeom(
        ("k_pass", "k", "base_pass", "base_total"), k_pass, k, base_pass, base_total
    )
    return float(sps.hypergeom.sf(h - 1, t, m, d))


def two_proportion_test(
    k1: int, n1: int, k2: int, n2: int, alternative: str = "two-sided"
) -> float:
    """Fisher exact p-value comparing the shares k1/n1 and k2/n2 (e.g. of two neuron types)."""
    if alternative not in _ALTERNATIVES:
        raise TransferNeuronsError(
            f"alternative: expected one of {', '.join(_ALTERNATIVES)}, got {alternative!r}"
        )
    for k_name, k, n_name, n in (("k1", k1, "n1", n1), ("k2", k2, "n2", n2)):
        _check_count(k_name, k)
        if _check_count(n_name, n) < k:
            raise TransferNeuronsError(f"{k_name}: expected at most {n_name} ({n}), got {k}")
    table = [[int(k1), int(n1) - int(k1)], [int(k2), int(n2) - int(k2)]]
    return float(sps.fisher_exact(table, alternative=alternative).pvalue)
