"""Kernel alignment between hub and L2 representations per layer (method.md §6.3): mutual kNN and debiased linear CKA.

Mutual k-nearest-neighbour alignment (the paper's measure) is per item: for pair i,
N_en(i) are the k nearest other English sentences and N_L2(i) the k nearest other L2
sentences (dot product of L2-normalised states, each within its own language), and
the item's value is |N_en(i) ∩ N_L2(i)| / k. It is computed on raw states and on
states centred by one mean per layer (of the undeactivated hub and L2 states, shared
by all conditions), so it goes through effects.summarise like any per-item metric.

Debiased linear CKA is a set-level number, so its interval comes from a paired
bootstrap over pairs: every condition is evaluated on the same resampled pair
multiplicities (weighted_hsic, which never pairs an item with its own copy), which
also gives intervals for the drop (none − condition) and for transfer − control.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
import numpy as np
import torch

from ..conditions import Condition
from ..data import ParallelPairs
from ..errors import TransferNeuronsError
from ..models.loaded import LoadedModel
from ..states import StateProvider, provider_for
from ..stats import resample_counts, seeded_rng
from .effects import layer_range, summarise, summarise_boot, summarise_layer_range
from .similarity import COLOURS, centring_mean

CKA = "cka"


def knn_metric(k: int, centring: str) -> str:
    """Metric name of mutual kNN with k neighbours on raw or centred states, e.g. `mknn@5_centred`."""
    return f"mknn@{k}_{centring}"


# ---------------------------------------------------------------- mutual kNN


def knn_membership(x: np.ndarray, k: int) -> np.ndarray:
    """Row i marks the k nearest other rows of x [n, d] by cosine (dot product of normalised rows): [n, n] bool.

    Ties go to the lower index (stable sort), so identical inputs give identical sets.
    """
    n = x.shape[0]
    if not 1 <= k < n:
        raise TransferNeuronsError(f"mutual kNN needs 1 <= k < number of items; got k={k} with {n} items")
    x = np.asarray(x, dtype=np.float64)
    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-30)
    sim = unit @ unit.T  # [n, n]
    np.fill_diagonal(sim, -np.inf)  # never its own neighbour
    nearest = np.argsort(-sim, axis=1, kind="stable")[:, :k]  # [n, k]
    member = np.zeros((n, n), dtype=bool)
    member[np.arange(n)[:, None], nearest] = True
    return member


def mutual_knn_items(x: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """Per item i, |N_x(i) ∩ N_y(i)| / k for aligned rows of x [n, d_x] and y [n, d_y]: [n]."""
    if x.shape[0] != y.shape[0]:
        raise TransferNeuronsError(f"mutual kNN needs aligned items; got {x.shape[0]} and {y.shape[0]}")
    return (knn_membership(x, k) & knn_membership(y, k)).sum(axis=1) / k


def mutual_knn(hub: torch.Tensor | np.ndarray, l2: torch.Tensor | np.ndarray, k: int) -> np.ndarray:
    """Per-item mutual kNN alignment of every layer: hub [n, layer, d] vs L2 [n, layer, d] -> [n, layer]."""
    hub, l2 = np.asarray(hub, dtype=np.float64), np.asarray(l2, dtype=np.float64)
    return np.stack([mutual_knn_items(hub[:, l], l2[:, l], k) for l in range(hub.shape[1])], axis=1)


# ---------------------------------------------------------------- debiased linear CKA


def gram(x: np.ndarray) -> np.ndarray:
    """Linear kernel K = X̄ X̄ᵀ of the column-centred rows x [n, d], float64: [n, n].

    HSIC₁ is unchanged by translating the features, but residual streams carry a large shared
    mean, and centring first keeps HSIC₁ from being a small difference of huge numbers.
    """
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(axis=0)
    return x @ x.T


def unbiased_hsic(k: np.ndarray, l: np.ndarray) -> np.ndarray:
    """Unbiased HSIC estimator (Song et al. 2012) of kernel matrices [..., n, n]; diagonals are ignored.

    With K̃, L̃ the kernels with zeroed diagonals and 1 the all-ones vector,
        HSIC₁(K, L) = [ tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1) / ((n−1)(n−2)) − 2/(n−2) · 1ᵀK̃L̃1 ] / (n(n−3)),
    the U-statistic E[k_ij l_ij] + E[k_ij l_qr] − 2 E[k_ij l_iq] over distinct indices i, j, q, r.
    """
    n = k.shape[-1]
    if n < 4:
        raise TransferNeuronsError(f"debiased CKA needs at least 4 items, got {n}")
    eye = np.eye(n, dtype=bool)
    k = np.where(eye, 0.0, k)
    l = np.where(eye, 0.0, l)
    trace = (k * l).sum(axis=(-1, -2))  # tr(K̃L̃), both symmetric
    totals = k.sum(axis=(-1, -2)) * l.sum(axis=(-1, -2)) / ((n - 1) * (n - 2))
    cross = 2.0 / (n - 2) * (k.sum(axis=-1) * l.sum(axis=-1)).sum(axis=-1)  # 1ᵀK̃L̃1 = (K̃1)·(L̃1)
    return (trace + totals - cross) / (n * (n - 3))


def cka_from_hsic(kl: np.ndarray, kk: np.ndarray, ll: np.ndarray) -> np.ndarray:
    """CKA = HSIC₁(K, L) / sqrt(HSIC₁(K, K) · HSIC₁(L, L)); NaN where the denominator is not positive."""
    denom = kk * ll
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, kl / np.sqrt(np.where(denom > 0, denom, 1.0)), np.nan)


def debiased_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Debiased linear CKA of aligned rows x [n, d_x] and y [n, d_y] (Nguyen, Raghu & Kornblith 2021).

    CKA(X, Y) = HSIC₁(XXᵀ, YYᵀ) / sqrt(HSIC₁(XXᵀ, XXᵀ) · HSIC₁(YYᵀ, YYᵀ)) with HSIC₁ the unbiased
    estimator of unbiased_hsic; invariant to orthogonal transforms and isotropic scaling of either
    side, 1 for identical sides, and close to 0 (not biased upwards) for independent features.
    """
    k, l = gram(x), gram(y)
    return float(cka_from_hsic(unbiased_hsic(k, l), unbiased_hsic(k, k), unbiased_hsic(l, l)))


def weighted_hsic(k: np.ndarray, l: np.ndarray, w: np.ndarray) -> np.ndarray:
    """HSIC₁ of a bootstrap resample given as item multiplicities w [boot, n] of kernels k, l [n, n]: [boot].

    The same U-statistic as unbiased_hsic, over tuples of *distinct original items* weighted by the
    product of their multiplicities, so copies of one item never count as a pair (which would pull
    the debiased estimate towards the biased one). With w = 1 it equals unbiased_hsic(k, l).
    Sums over distinct tuples come from inclusion–exclusion; with K̃ = k minus its diagonal,
    M = K̃ ∘ L̃, a = wᵀK̃w, b = wᵀL̃w, u = (K̃w) ∘ (L̃w) and w² elementwise:
        pairs   Σ w_i w_j k_ij l_ij          = wᵀMw
        triples Σ w_i w_j w_q k_ij l_iq      = wᵀu − wᵀMw²
        quads   Σ w_i w_j w_q w_r k_ij l_qr  = ab − 4 w²ᵀu + 2 w²ᵀMw²
    each divided by the same sum with k = l = 1 off the diagonal (NaN with fewer than 4 distinct items).
    """
    eye = np.eye(k.shape[0], dtype=bool)
    k, l = np.where(eye, 0.0, k), np.where(eye, 0.0, l)
    w = np.asarray(w, dtype=np.float64)
    w2, m = w ** 2, k * l
    kw, lw, mw2 = w @ k, w @ l, w2 @ m  # [boot, n]; the kernels are symmetric
    u = kw * lw
    pairs = ((w @ m) * w).sum(axis=1)
    triples = (w * u).sum(axis=1) - (mw2 * w).sum(axis=1)
    quads = (kw * w).sum(axis=1) * (lw * w).sum(axis=1) - 4 * (w2 * u).sum(axis=1) + 2 * (mw2 * w2).sum(axis=1)
    s1, s2, s3, s4 = (np.sum(w ** p, axis=1) for p in (1, 2, 3, 4))
    n_pairs = s1 ** 2 - s2
    n_triples = s1 ** 3 - 3 * s1 * s2 + 2 * s3
    n_quads = s1 ** 4 - 6 * s1 ** 2 * s2 + 3 * s2 ** 2 + 8 * s1 * s3 - 6 * s4
    with np.errstate(invalid="ignore", divide="ignore"):
        hsic = pairs / n_pairs + quads / n_quads - 2 * triples / n_triples
    return np.where(n_quads > 0.5, hsic, np.nan)


# ---------------------------------------------------------------- the analysis


@dataclass
class Alignment:
    """Per-item mutual kNN and set-level debiased CKA of hub vs L2 states under each condition."""

    knn: dict[str, dict[str, np.ndarray]]  # metric (knn_metric) -> condition label -> [pair, layer]
    cka: dict[str, np.ndarray]  # condition label -> [layer]
    cka_boot: dict[str, np.ndarray]  # condition label -> [boot, layer], resamples shared by all labels
    ks: tuple[int, ...]
    items: int


def alignment_of(
    hub: torch.Tensor,
    l2_states: Sequence[tuple[str, torch.Tensor]] | Mapping[str, torch.Tensor],
    mean: torch.Tensor,
    ks: Sequence[int] = (5, 10),
    n_boot: int = 1000,
    seed: int = 0,
) -> Alignment:
    """Alignment of hub [n, layer, d] with each labelled L2 [n, layer, d]; `mean` [layer, d] centres kNN.

    l2_states may be a lazy iterable: only one L2 state set and its Gram matrices are held at a time.
    """
    n, num_layers = hub.shape[0], hub.shape[1]
    hub64 = hub.double()
    weights = resample_counts(n, n_boot, seeded_rng(seed))  # [boot, pair], shared by all conditions
    hub_gram = [gram(hub64[:, l].numpy()) for l in range(num_layers)]
    hub_hsic = np.stack([unbiased_hsic(g, g) for g in hub_gram])  # [layer]
    hub_boot = np.stack([weighted_hsic(g, g, weights) for g in hub_gram], axis=1)  # [boot, layer]
    knn: dict[str, dict[str, np.ndarray]] = {}
    cka, cka_boot = {}, {}
    items = l2_states.items() if isinstance(l2_states, Mapping) else l2_states
    for label, l2 in items:
        l2_64 = l2.double()
        for centring, (x, y) in {"raw": (hub64, l2_64), "centred": (hub64 - mean, l2_64 - mean)}.items():
            for k in ks:
                knn.setdefault(knn_metric(k, centring), {})[label] = mutual_knn(x.numpy(), y.numpy(), k)
        point, boot = np.zeros(num_layers), np.zeros((n_boot, num_layers))
        for l in range(num_layers):
            g = gram(l2_64[:, l].numpy())
            point[l] = cka_from_hsic(unbiased_hsic(hub_gram[l], g), hub_hsic[l], unbiased_hsic(g, g))
            boot[:, l] = cka_from_hsic(weighted_hsic(hub_gram[l], g, weights), hub_boot[:, l], weighted_hsic(g, g, weights))
        cka[label], cka_boot[label] = point, boot
    return Alignment(knn, cka, cka_boot, tuple(ks), n)


def kernel_alignment(
    source: LoadedModel | StateProvider,
    pairs: ParallelPairs,
    conditions: Sequence[Condition],
    ks: Sequence[int] = (5, 10),
    n_boot: int = 1000,
    seed: int = 0,
    batch_size: int = 16,
    mode: str = "last",
    progress: bool = True,
) -> Alignment:
    """method.md §6.3: hub (never deactivated) vs L2 layer outputs h[l] under each condition, at the last token."""
    ks = (ks,) if isinstance(ks, int) else tuple(ks)  # one k, or several
    if not ks or not all(isinstance(k, int) and not isinstance(k, bool) for k in ks) or min(ks) < 1 \
            or max(ks) >= len(pairs):
        raise TransferNeuronsError(f"k values must be integers between 1 and pairs − 1 = {len(pairs) - 1}; got {list(ks)}",
                                   option="k")
    states = provider_for(source, batch_size)

    def grab(texts: Sequence[str], neurons: np.ndarray | None, desc: str) -> torch.Tensor:
        return states.get(texts, neurons, mode, ("h",), desc if progress else None).h

    hub = grab(pairs.hub, None, f"{pairs.hub_lang} h")
    base = grab(pairs.l2, None, f"{pairs.lang} h none")
    mean = centring_mean(hub, base)  # [layer, d], shared by every condition
    l2 = ((c.label, base if c.neurons is None else grab(pairs.l2, c.neurons, f"{pairs.lang} h {c.label}"))
          for c in conditions)
    return alignment_of(hub, l2, mean, ks, n_boot, seed)


def alignment_tables(
    al: Alignment, conditions: Sequence[Condition], mid_layers: Sequence[int], seed: int = 0
) -> tuple[list[dict], list[dict]]:
    """Per-layer and mid-layer effects rows for every mutual-kNN metric and for CKA."""
    per_layer, mid = [], []
    for metric, values in al.knn.items():
        per_layer += summarise(values, conditions, metric, seed=seed)
        mid += summarise_layer_range(values, conditions, metric, mid_layers, seed)
    per_layer += summarise_boot(al.cka, al.cka_boot, conditions, CKA, al.items)
    mid += summarise_boot(layer_range(al.cka, mid_layers), layer_range(al.cka_boot, mid_layers), conditions, CKA,
                          al.items, [f"{mid_layers[0]}-{mid_layers[-1]}"])
    return per_layer, mid


# ---------------------------------------------------------------- figures


METRIC_LABELS = {"raw": "mutual kNN, raw states", "centred": "mutual kNN, mean-centred states"}


def metric_title(metric: str) -> str:
    """Human title of a metric name."""
    if metric == CKA:
        return "debiased linear CKA"
    k, centring = metric.removeprefix("mknn@").split("_")
    return f"{METRIC_LABELS[centring]} (k={k})"


def plot_alignment(rows: Sequence[dict], metrics: Sequence[str], title: str, items: int, mid_layers: Sequence[int] = (),
                   column: str = "mean") -> Figure:
    """One panel per metric: per-layer level (column "mean") or drop none − condition ("drop"), 95 % intervals shaded.

    Seeded controls show their seed-averaged value; their interval is over items (or resamples) of that average.
    """
    conditions = [c for c in dict.fromkeys(r["condition"] for r in rows) if column == "mean" or c != "none"]
    cols = int(np.ceil((len(metrics) + 1) / 2))
    fig = Figure(figsize=(5.2 * cols, 8.2))
    axes = fig.subplots(2, cols, squeeze=False)
    for ax, metric in zip(axes.ravel(), metrics):
        for i, name in enumerate(conditions):
            sel = [r for r in rows if r["metric"] == metric and r["condition"] == name]
            layers = np.array([int(r["layer"]) for r in sel])
            colour = COLOURS.get(name, f"C{i}")
            main_line = name in ("none", "transfer")
            ax.plot(layers, [r[column] for r in sel], color=colour, lw=2.2 if main_line else 1.2, marker="o",
                    ms=3 if main_line else 2, label=name, zorder=3 if main_line else 2)
            ax.fill_between(layers, [r[f"{column}_low"] for r in sel], [r[f"{column}_high"] for r in sel],
                            color=colour, alpha=0.18 if main_line else 0.08, lw=0)
        if column == "mean" and metric.startswith("mknn@"):
            k = int(metric.removeprefix("mknn@").split("_")[0])
            ax.axhline(k / (items - 1), color="grey", ls=":", lw=1.2, label="chance k/(n−1)")
        if column == "drop":
            ax.axhline(0, color="black", lw=0.8)
        if len(mid_layers):
            ax.axvspan(min(mid_layers) - 0.5, max(mid_layers) + 0.5, color="grey", alpha=0.1, lw=0, label="mid layers")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.set_title(metric_title(metric), fontsize=11)
        ax.set_xlabel("layer (0-based)")
        ax.set_ylabel("alignment" if column == "mean" else "drop of alignment (none − condition)")
    legend_ax = axes.ravel()[len(metrics)]
    for ax in axes.ravel()[len(metrics):]:
        ax.axis("off")
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    legend_ax.legend(handles, labels, loc="center", fontsize=10, title="L2 side deactivated\n(shade: 95 % CI)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
