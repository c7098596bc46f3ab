"""Dose–response of deactivation (beyond the paper): how the middle-layer English–L2
similarity falls as more top-ranked neurons are deactivated, against the same counts
of random and anti neurons.

A detection's neurons.json keeps only its top-n, but scores.npy covers every neuron, so
any count is ranked afresh from the scores over the detection's candidate layers
(scoring.rank_neurons; its first n equal neurons.json). Counts are capped at half the
candidate neurons, so the random control still has as many non-transfer neurons to draw.

The middle layers are similarity.middle_layers (Type-1: the middle third of the model's
layers; Type-2: all candidate layers), the same summary range as `ablate` and `similarity`. The hub side
(English) is never deactivated; the centring mean comes once from the undeactivated hub
and L2 states and is shared by every count and condition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from ..conditions import Condition  # noqa: E402
from ..controls import anti_neurons, random_control  # noqa: E402
from ..data import ParallelPairs  # noqa: E402
from ..detection import Detection  # noqa: E402
from ..errors import TransferNeuronsError  # noqa: E402
from ..interventions import capture_under  # noqa: E402
from ..models.loading import LoadedModel  # noqa: E402
from ..scoring import rank_neurons  # noqa: E402
from .effects import summarise, summarise_layer_range  # noqa: E402
from .similarity import COLOURS, METRIC_TITLES, METRICS, centring_mean, cosine_rows  # noqa: E402

DEFAULT_COUNTS = (10, 30, 100, 300, 1000)


@dataclass
class DoseResult:
    """Per-pair cosines of every count and condition, and the layers the summary averages."""

    counts: list[int]
    conditions: dict[int, list[Condition]]  # count -> none, transfer, random#seed..., anti
    values: dict[str, dict[int, dict[str, np.ndarray]]]  # metric -> count -> label -> [pair, layer]
    mid_layers: tuple[int, ...]


def max_count(det: Detection) -> int:
    """The largest count a dose can use: half the candidate neurons (random needs as many others)."""
    return len(det.layers) * det.scores.shape[1] // 2


def dose_counts(requested: Sequence[int], det: Detection) -> tuple[list[int], list[int]]:
    """The requested counts that fit the detection (sorted, unique) and those dropped as too large."""
    limit = max_count(det)
    unique = sorted(set(int(c) for c in requested))
    if any(c < 0 for c in unique):
        raise TransferNeuronsError(f"counts must be non-negative, got {unique}")
    kept = [c for c in unique if c <= limit]
    if not kept:
        raise TransferNeuronsError(f"no count fits: the detection's {len(det.layers)} candidate layers allow at most {limit}")
    return kept, [c for c in unique if c > limit]


def ranked_neurons(det: Detection, count: int) -> np.ndarray:
    """The top `count` neurons by score within the detection's candidate layers: [count, 2]."""
    return rank_neurons(det.scores, det.layers, count)


def dose_conditions(det: Detection, ranked: np.ndarray, count: int, seeds: int) -> list[Condition]:
    """none, the first `count` ranked neurons, `seeds` random draws of that size, and the bottom `count`."""
    transfer = ranked[:count]
    d_ff = det.scores.shape[1]
    return [
        Condition("none", None),
        Condition("transfer", transfer),
        *(Condition("random", random_control(transfer, det.layers, d_ff, s), seed=s) for s in range(seeds)),
        Condition("anti", anti_neurons(det.scores, det.layers, count)),
    ]


def dose_response(
    lm: LoadedModel,
    pairs: ParallelPairs,
    det: Detection,
    counts: Sequence[int],
    seeds: int = 3,
    mid_layers: Sequence[int] = (),
    batch_size: int = 16,
    mode: str = "last",
    progress: bool = True,
) -> DoseResult:
    """Raw and centred hub–L2 cosines of h[l] per pair with the L2 side under each count's conditions."""
    counts = sorted(set(int(c) for c in counts))
    ranked = ranked_neurons(det, max(counts))
    conditions = {c: dose_conditions(det, ranked, c, seeds) for c in counts}
    hub = capture_under(lm, pairs.hub, None, ("h",), batch_size, progress=None).h  # [pair, layer, d]
    l2_none = capture_under(lm, pairs.l2, None, ("h",), batch_size, progress=None).h
    mean = centring_mean(hub, l2_none)  # [layer, d], shared by every count and condition
    hub_c = hub.double() - mean

    def cosines(l2: torch.Tensor) -> dict[str, np.ndarray]:
        return {"raw": cosine_rows(hub, l2).numpy(), "centred": cosine_rows(hub_c, l2.double() - mean).numpy()}

    none = cosines(l2_none)
    values: dict[str, dict[int, dict[str, np.ndarray]]] = {m: {c: {} for c in counts} for m in METRICS}
    jobs = [(c, cond) for c in counts for cond in conditions[c]]
    for count, cond in tqdm(jobs, desc=f"dose {pairs.lang}", disable=not progress, unit="condition"):
        if cond.neurons is None:
            result = none
        else:
            result = cosines(capture_under(lm, pairs.l2, cond.neurons, ("h",), batch_size, mode, progress=None).h)
        for metric in METRICS:
            values[metric][count][cond.label] = result[metric]
    return DoseResult(counts, conditions, values, tuple(mid_layers))


def dose_rows(result: DoseResult, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Mid-layer and per-layer effects rows (effects.summarise) for every count and metric."""
    mid, per_layer = [], []
    for count in result.counts:
        conds = result.conditions[count]
        for metric in METRICS:
            values = result.values[metric][count]
            mid += [{"count": count, **r} for r in summarise_layer_range(values, conds, metric, result.mid_layers, seed)]
            per_layer += [{"count": count, **r} for r in summarise(values, conds, metric, seed=seed)]
    return mid, per_layer


def seed_drops(result: DoseResult, metric: str, count: int, name: str = "random") -> np.ndarray:
    """Mid-layer mean drop (none − condition) of each seed of a seeded condition: [seed]."""
    values, layers = result.values[metric][count], list(result.mid_layers)
    base = values["none"][:, layers].mean(axis=1)  # [pair]
    return np.array([
        (base - values[c.label][:, layers].mean(axis=1)).mean()
        for c in result.conditions[count] if c.name == name
    ])


def plot_dose(result: DoseResult, mid_rows: Sequence[dict], title: str, detection_size: int | None = None):
    """Mid-layer drop vs neuron count (log x): transfer and anti with 95 % CI, random mean ± sd over seeds."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    counts = np.array(result.counts)
    shown = counts > 0  # a log axis cannot show count 0
    for ax, metric in zip(axes, METRICS):
        rows = {(r["count"], r["condition"]): r for r in mid_rows if r["metric"] == metric}
        for name in ("transfer", "anti"):
            drop = np.array([rows[(c, name)]["drop"] for c in counts])
            err = np.array([[rows[(c, name)]["drop"] - rows[(c, name)]["drop_low"] for c in counts],
                            [rows[(c, name)]["drop_high"] - rows[(c, name)]["drop"] for c in counts]])
            ax.errorbar(counts[shown], drop[shown], yerr=err[:, shown], marker="o", capsize=3,
                        color=COLOURS[name], label=f"{name} (95 % CI)")
        seeds = [seed_drops(result, metric, c) for c in counts]
        if seeds and len(seeds[0]):
            mean = np.array([s.mean() for s in seeds])
            sd = np.array([s.std(ddof=1) if len(s) > 1 else 0.0 for s in seeds])
            ax.plot(counts[shown], mean[shown], marker="s", color=COLOURS["random"],
                    label=f"random (mean ± sd over {len(seeds[0])} seeds)")
            ax.fill_between(counts[shown], (mean - sd)[shown], (mean + sd)[shown], color=COLOURS["random"], alpha=0.2, lw=0)
        if detection_size:
            ax.axvline(detection_size, color="grey", ls=":", label=f"detection top-n ({detection_size})")
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("neurons deactivated on the L2 side (log scale)")
        ax.set_ylabel("drop of mean cosine (none − condition)")
        layers = result.mid_layers
        ax.set_title(f"{METRIC_TITLES[metric]}, layers {layers[0]}–{layers[-1]}")
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
