"""Dose–response of deactivation (beyond the paper): how the middle-layer English–L2
similarity falls as more top-ranked neurons are deactivated, against the same counts
of random and anti neurons; and, as a scale sweep, how it moves as the detection's
neurons are multiplied by F (0 = zeroing, 1 = unchanged, > 1 = amplified) against the
same scaling of random neurons of the same candidate layers.

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

from matplotlib.figure import Figure
import numpy as np
import torch
from tqdm.auto import tqdm

from ..conditions import Condition
from ..controls import anti_neurons, random_control
from ..data import ParallelPairs
from ..detection import Detection
from ..errors import TransferNeuronsError
from ..interventions import Intervention, Scale, active_intervention, applying
from ..log import progress_enabled
from ..models.loaded import LoadedModel
from ..scoring import rank_neurons
from ..states import StateProvider, provider_for
from .effects import summarise, summarise_layer_range
from .similarity import COLOURS, METRIC_TITLES, METRICS, centring_mean, cosine_rows

DEFAULT_COUNTS = (10, 30, 100, 300, 1000)
DEFAULT_SCALES = (0.0, 0.5, 1.0, 1.5, 2.0)


@dataclass
class DoseResult:
    """Per-pair cosines of every count and condition, and the layers the summary averages."""

    counts: list[int]
    conditions: dict[int, list[Condition]]  # count -> none, transfer, random#seed..., anti
    values: dict[str, dict[int, dict[str, np.ndarray]]]  # metric -> count -> label -> [pair, layer]
    mid_layers: tuple[int, ...]


@dataclass
class ScaleResult:
    """Per-pair cosines at every scale factor F and condition (transfer, random#seed), and the summary layers."""

    scales: list[float]
    conditions: dict[float, list[Condition]]  # scale -> none, transfer, random#seed... (the same sets at every F)
    values: dict[str, dict[float, dict[str, np.ndarray]]]  # metric -> scale -> label -> [pair, layer]
    mid_layers: tuple[int, ...]


def max_count(det: Detection) -> int:
    """The largest count a dose can use: half the candidate neurons (random needs as many others)."""
    return len(det.layers) * det.scores.shape[1] // 2


def dose_counts(requested: Sequence[int], det: Detection) -> tuple[list[int], list[int]]:
    """The requested counts that fit the detection (sorted, unique) and those dropped as too large (max_count)."""
    limit = max_count(det)
    unique = sorted(set(int(c) for c in requested))
    if any(c < 0 for c in unique):
        raise TransferNeuronsError(f"counts must be non-negative, got {unique}")
    return [c for c in unique if c <= limit], [c for c in unique if c > limit]


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
    source: LoadedModel | StateProvider,
    pairs: ParallelPairs,
    det: Detection,
    counts: Sequence[int],
    seeds: int = 3,
    mid_layers: Sequence[int] = (),
    batch_size: int = 16,
    mode: str = "last",
    progress: bool = True,
    intervention: Intervention | None = None,
) -> DoseResult:
    """Raw and centred hub–L2 cosines of h[l] per pair with the L2 side under each count's conditions
    (intervention: what the neurons' activations become; default the active one, zero)."""
    counts = sorted(set(int(c) for c in counts))
    ranked = ranked_neurons(det, max(counts))
    conditions = {c: dose_conditions(det, ranked, c, seeds) for c in counts}
    jobs = [(c, cond, intervention) for c in counts for cond in conditions[c]]
    values = _sweep(source, pairs, jobs, batch_size, mode, progress and progress_enabled(), f"dose {pairs.lang}")
    return DoseResult(counts, conditions, values, tuple(mid_layers))


def scale_conditions(det: Detection, count: int | None, seeds: int) -> list[Condition]:
    """none, the detection's first `count` neurons (default all) and `seeds` random draws of that size."""
    transfer = det.neurons[:count] if count is not None else det.neurons
    d_ff = det.scores.shape[1]
    return [
        Condition("none", None),
        Condition("transfer", transfer),
        *(Condition("random", random_control(transfer, det.layers, d_ff, s), seed=s) for s in range(seeds)),
    ]


def scale_response(
    source: LoadedModel | StateProvider,
    pairs: ParallelPairs,
    det: Detection,
    scales: Sequence[float] = DEFAULT_SCALES,
    count: int | None = None,
    seeds: int = 3,
    mid_layers: Sequence[int] = (),
    batch_size: int = 16,
    mode: str = "last",
    progress: bool = True,
) -> ScaleResult:
    """Raw and centred hub–L2 cosines of h[l] per pair with the L2 side's transfer (or random) neurons
    multiplied by each factor F (interventions.Scale); F = 1 is the undeactivated run itself."""
    scales = sorted(set(float(f) for f in scales))
    if not scales or not all(np.isfinite(scales)):
        raise TransferNeuronsError(f"scales must be finite numbers, got {scales}")
    conditions = scale_conditions(det, count, seeds)
    jobs = [(f, cond, Scale(f)) for f in scales for cond in conditions if not (f == 1.0 and cond.neurons is not None)]
    values = _sweep(source, pairs, jobs, batch_size, mode, progress and progress_enabled(), f"scale {pairs.lang}")
    for metric in METRICS:
        if 1.0 in values[metric]:  # multiplying by 1 changes nothing: every condition is the undeactivated run
            values[metric][1.0].update({c.label: values[metric][1.0]["none"] for c in conditions})
    return ScaleResult(scales, {f: conditions for f in scales}, values, tuple(mid_layers))


def _sweep(
    source: LoadedModel | StateProvider,
    pairs: ParallelPairs,
    jobs: Sequence[tuple[float, Condition, Intervention | None]],
    batch_size: int,
    mode: str,
    progress: bool,
    desc: str,
) -> dict[str, dict[float, dict[str, np.ndarray]]]:
    """Per-pair raw and centred cosines for each (dose, condition, intervention) job: metric -> dose -> label -> [pair, layer].

    The hub side is never intervened on; the centring mean is the undeactivated hub and L2 states', shared by all jobs.
    """
    states = provider_for(source, batch_size)  # shared with the other analyses in a study
    hub = states.get(pairs.hub).h  # [pair, layer, d]
    l2_none = states.get(pairs.l2).h
    mean = centring_mean(hub, l2_none)  # [layer, d]
    hub_c = hub.double() - mean

    def cosines(l2: torch.Tensor) -> dict[str, np.ndarray]:
        return {"raw": cosine_rows(hub, l2).numpy(), "centred": cosine_rows(hub_c, l2.double() - mean).numpy()}

    none = cosines(l2_none)
    values: dict[str, dict[float, dict[str, np.ndarray]]] = {m: {dose: {} for dose, _, _ in jobs} for m in METRICS}
    for dose, cond, intervention in tqdm(jobs, desc=desc, disable=not progress, unit="condition"):
        if cond.neurons is None:
            result = none
        else:
            with applying(intervention or active_intervention()):
                result = cosines(states.get(pairs.l2, cond.neurons, mode).h)
        for metric in METRICS:
            values[metric][dose][cond.label] = result[metric]
    return values


def sweep_rows(result: DoseResult | ScaleResult, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Mid-layer and per-layer effects rows (effects.summarise) for every dose and metric, each
    row led by its dose (`count` or `scale`)."""
    key, doses = ("scale", result.scales) if isinstance(result, ScaleResult) else ("count", result.counts)
    mid, per_layer = [], []
    for dose in doses:
        conds = result.conditions[dose]
        for metric in METRICS:
            values = result.values[metric][dose]
            mid += [{key: dose, **r} for r in summarise_layer_range(values, conds, metric, result.mid_layers, seed)]
            per_layer += [{key: dose, **r} for r in summarise(values, conds, metric, seed=seed)]
    return mid, per_layer


def seed_drops(result: DoseResult | ScaleResult, metric: str, dose: float, name: str = "random") -> np.ndarray:
    """Mid-layer mean drop (none − condition) of each seed of a seeded condition at one count or scale: [seed]."""
    values, layers = result.values[metric][dose], list(result.mid_layers)
    base = values["none"][:, layers].mean(axis=1)  # [pair]
    return np.array([
        (base - values[c.label][:, layers].mean(axis=1)).mean()
        for c in result.conditions[dose] if c.name == name
    ])


def plot_dose(result: DoseResult, mid_rows: Sequence[dict], title: str, detection_size: int | None = None) -> Figure:
    """Mid-layer drop vs neuron count (log x): transfer and anti with 95 % CI, random mean ± sd over seeds."""
    fig = Figure(figsize=(12, 4.6))
    axes = fig.subplots(1, 2)
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


def plot_scale(result: ScaleResult, mid_rows: Sequence[dict], title: str) -> Figure:
    """Mid-layer drop vs scale factor F: transfer with 95 % CI, random mean ± sd over seeds; F = 1 changes nothing."""
    fig = Figure(figsize=(12, 4.6))
    axes = fig.subplots(1, 2)
    scales = np.array(result.scales)
    for ax, metric in zip(axes, METRICS):
        rows = {(r["scale"], r["condition"]): r for r in mid_rows if r["metric"] == metric}
        drop = np.array([rows[(f, "transfer")]["drop"] for f in scales])
        err = np.array([[rows[(f, "transfer")]["drop"] - rows[(f, "transfer")]["drop_low"] for f in scales],
                        [rows[(f, "transfer")]["drop_high"] - rows[(f, "transfer")]["drop"] for f in scales]])
        ax.errorbar(scales, drop, yerr=err, marker="o", capsize=3, color=COLOURS["transfer"], label="transfer (95 % CI)")
        seeds = [seed_drops(result, metric, f) for f in scales]
        if len(seeds[0]):
            mean = np.array([s.mean() for s in seeds])
            sd = np.array([s.std(ddof=1) if len(s) > 1 else 0.0 for s in seeds])
            ax.plot(scales, mean, marker="s", color=COLOURS["random"], label=f"random (mean ± sd over {len(seeds[0])} seeds)")
            ax.fill_between(scales, mean - sd, mean + sd, color=COLOURS["random"], alpha=0.2, lw=0)
        ax.axvline(1.0, color="grey", ls=":", label="F = 1 (unchanged)")
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xlabel("scale factor F of the neurons' activations on the L2 side (0 = zeroed)")
        ax.set_ylabel("drop of mean cosine (none − condition)")
        layers = result.mid_layers
        ax.set_title(f"{METRIC_TITLES[metric]}, layers {layers[0]}–{layers[-1]}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
