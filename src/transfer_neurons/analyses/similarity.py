"""Cross-lingual hidden-state similarity per layer (method.md §6.1), raw and mean-centred.

Residual streams carry a few very large dimensions, so raw cosines of unrelated
sentences can exceed 0.9; the centred cosine subtracts one mean state per layer
(of the undeactivated states of both languages) first, shared by every condition
and by parallel and non-parallel pairs.

The hub side (English) is never deactivated and is captured once; the L2 side is
captured once per condition; non-parallel pairs re-pair those same states by a
seeded derangement, so no state is computed twice. The same machinery serves the
activation-pattern analysis (quantity "a", analyses/activations.py) and `ablate`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import MaxNLocator
import numpy as np
import torch

from ..conditions import Condition, condition_groups
from ..data import ParallelPairs, nonparallel_pairs
from ..interventions import capture_under
from ..models.loaded import LoadedModel
from ..scoring import default_candidate_layers
from ..states import StateProvider, provider_for
from .effects import summarise, summarise_layer_range

METRICS = ("raw", "centred")
PAIR_KINDS = ("parallel", "nonparallel")
TABLE_KINDS = (*PAIR_KINDS, "gap")  # gap: per hub sentence, parallel − non-parallel cosine
METRIC_TITLES = {"raw": "raw cosine", "centred": "mean-centred cosine"}
KIND_TITLES = {"parallel": "parallel pairs", "nonparallel": "non-parallel pairs", "gap": "parallel − non-parallel gap"}
BAR_STYLE = {"parallel": (1.0, None), "nonparallel": (0.45, "//"), "gap": (0.75, "..")}  # alpha, hatch
COLOURS = {
    "none": "black", "transfer": "tab:red", "random": "tab:blue", "layer-matched": "tab:green",
    "magnitude-matched": "tab:purple", "anti": "tab:orange",
}


@dataclass
class PairSimilarity:
    """Per-pair, per-layer cosines between hub and L2 last-token layer outputs."""

    raw: np.ndarray  # [pair, layer]
    centred: np.ndarray  # [pair, layer]


@dataclass
class ConditionCosines:
    """Per-pair cosines of every condition: key "raw_parallel" etc. -> condition label -> [pair, layer]."""

    values: dict[str, dict[str, np.ndarray]]
    mean: torch.Tensor  # [layer, width] float64, the one centring mean all conditions share
    partner: np.ndarray  # [pair] index of the L2 sentence each hub sentence meets in non-parallel pairs


def key(metric: str, kind: str) -> str:
    """The ConditionCosines key of a metric (raw/centred) and pair kind (parallel/nonparallel)."""
    return f"{metric}_{kind}"


def cosine_rows(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cosine of matching rows along the last axis, in float64: [..., d] x [..., d] -> [...]."""
    x, y = x.double(), y.double()
    denom = (x.norm(dim=-1) * y.norm(dim=-1)).clamp_min(1e-30)
    return (x * y).sum(-1) / denom


def centring_mean(*states: torch.Tensor) -> torch.Tensor:
    """One mean state per layer over all given [n, layer, d] tensors: [layer, d]."""
    return torch.cat([s.double() for s in states]).mean(dim=0)


def pair_similarity(
    lm: LoadedModel,
    hub_texts: Sequence[str],
    l2_texts: Sequence[str],
    l2_neurons: np.ndarray | None = None,
    batch_size: int = 16,
    mode: str = "last",
) -> PairSimilarity:
    """Cosines of h[l] between hub and L2 sentences, with optional deactivation on the L2 side."""
    hub = capture_under(lm, hub_texts, None, ("h",), batch_size, progress=None).h
    l2 = capture_under(lm, l2_texts, l2_neurons, ("h",), batch_size, mode, progress=None).h
    mean = centring_mean(hub, l2) if l2_neurons is None else centring_mean(
        hub, capture_under(lm, l2_texts, None, ("h",), batch_size, progress=None).h
    )
    return PairSimilarity(
        raw=cosine_rows(hub, l2).numpy(),
        centred=cosine_rows(hub.double() - mean, l2.double() - mean).numpy(),
    )


def nonparallel_index(pairs: ParallelPairs, seed: int) -> np.ndarray:
    """Index of the L2 sentence each hub sentence meets in the seeded non-parallel pairing: [pair].

    nonparallel_pairs guarantees a different text for every pair, so no index is a fixed point.
    """
    first: dict[str, int] = {}
    for i, text in enumerate(pairs.l2):
        first.setdefault(text, i)
    return np.array([first[text] for text in nonparallel_pairs(pairs, seed).l2], dtype=np.int64)


def cosine_table(hub: torch.Tensor, l2: torch.Tensor, mean: torch.Tensor, partner: np.ndarray) -> dict[str, np.ndarray]:
    """Raw and centred cosines of hub [n, layer, d] vs L2 [n, layer, d]: parallel, re-paired, and their gap; [n, layer] each.

    The gap (parallel − non-parallel for the same hub sentence) measures how much more a
    translation resembles the hub sentence than an unrelated L2 sentence does, free of any
    shift that moves all L2 states alike.
    """
    index = torch.as_tensor(partner)
    out: dict[str, np.ndarray] = {}
    for metric, (x, y) in {"raw": (hub, l2), "centred": (hub.double() - mean, l2.double() - mean)}.items():
        out[key(metric, "parallel")] = cosine_rows(x, y).numpy()
        out[key(metric, "nonparallel")] = cosine_rows(x, y[index]).numpy()
        out[key(metric, "gap")] = out[key(metric, "parallel")] - out[key(metric, "nonparallel")]
    return out


def condition_cosines(
    hub: torch.Tensor,
    l2_none: torch.Tensor,
    l2_states: Iterable[tuple[str, torch.Tensor]],
    partner: np.ndarray,
) -> ConditionCosines:
    """Cosines for each (label, L2 states [n, layer, d]); the centring mean comes from hub and l2_none only."""
    mean = centring_mean(hub, l2_none)  # [layer, d], shared by every condition and pair kind
    values: dict[str, dict[str, np.ndarray]] = {}
    for label, l2 in l2_states:
        for name, cos in cosine_table(hub, l2, mean, partner).items():
            values.setdefault(name, {})[label] = cos
    return ConditionCosines(values, mean, partner)


def compare_conditions(
    source: LoadedModel | StateProvider,
    pairs: ParallelPairs,
    conditions: Sequence[Condition],
    quantity: str = "h",
    seed: int = 0,
    batch_size: int = 16,
    mode: str = "last",
    progress: bool = True,
) -> ConditionCosines:
    """Hub (never deactivated) vs L2 under each condition, for quantity "h" or "a" at the last token.

    States come from a StateProvider (shared with other analyses) or are captured here.
    """
    states = provider_for(source, batch_size)
    partner = nonparallel_index(pairs, seed)

    def grab(texts: Sequence[str], neurons: np.ndarray | None, desc: str) -> torch.Tensor:
        return getattr(states.get(texts, neurons, mode, (quantity,), desc if progress else None), quantity)

    hub = grab(pairs.hub, None, f"{pairs.hub_lang} {quantity}")
    base = grab(pairs.l2, None, f"{pairs.lang} {quantity} none")
    l2 = (
        (c.label, base if c.neurons is None else grab(pairs.l2, c.neurons, f"{pairs.lang} {quantity} {c.label}"))
        for c in conditions
    )
    return condition_cosines(hub, base, l2, partner)


def hidden_similarity(
    source: LoadedModel | StateProvider,
    pairs: ParallelPairs,
    conditions: Sequence[Condition],
    seed: int = 0,
    batch_size: int = 16,
    mode: str = "last",
    progress: bool = True,
) -> ConditionCosines:
    """method.md §6.1: cosines of the layer outputs h[l] between hub and L2 sentences under each condition."""
    return compare_conditions(source, pairs, conditions, "h", seed, batch_size, mode, progress)


def middle_layers(num_layers: int, neuron_type: str = "type1", candidate_layers: Sequence[int] | None = None) -> tuple[int, ...]:
    """Layers the mid-layer summary averages over.

    Type-1: the middle third of the model's layers, where method.md §1 puts the shared semantic
    space that Type-1 neurons should carry the L2 state into (their effect is measured
    where the transfer should have arrived, not inside it). Type-2: all its candidate
    layers (default candidates if none given), where the state should leave that space.
    """
    if neuron_type == "type2":
        return tuple(candidate_layers) if candidate_layers else default_candidate_layers(num_layers, "type2")
    middle = np.array_split(np.arange(num_layers), 3)[1]
    return tuple(int(l) for l in middle) if middle.size else tuple(range(num_layers))


def effect_tables(
    cos: ConditionCosines,
    conditions: Sequence[Condition],
    mid_layers: Sequence[int],
    kinds: Sequence[str] = TABLE_KINDS,
    seed: int = 0,
) -> tuple[list[dict], list[dict]]:
    """Per-layer and mid-layer effects rows (effects.summarise) for each metric and pair kind."""
    per_layer, mid = [], []
    for kind in kinds:
        for metric in METRICS:
            values = cos.values[key(metric, kind)]
            per_layer += [{"pairs": kind, **row} for row in summarise(values, conditions, metric, seed=seed)]
            mid += [{"pairs": kind, **row} for row in summarise_layer_range(values, conditions, metric, mid_layers, seed)]
    return per_layer, mid


def magnitude_ratios(conditions: Sequence[Condition], magnitudes: np.ndarray) -> dict[str, float]:
    """Per condition name, the mean contribution norm |a|·‖v‖ of its neurons over the transfer set's (mean over seeds)."""
    def mean_norm(neurons: np.ndarray) -> float:
        return float(magnitudes[neurons[:, 0], neurons[:, 1]].mean()) if len(neurons) else float("nan")

    groups = condition_groups(conditions)
    base = mean_norm(groups["transfer"][0].neurons)
    return {
        name: float(np.mean([mean_norm(m.neurons) for m in members]) / base)
        for name, members in groups.items() if name != "none"
    }


def ablate_rows(
    cos: ConditionCosines,
    conditions: Sequence[Condition],
    mid_layers: Sequence[int],
    magnitudes: np.ndarray | None = None,
    seed: int = 0,
) -> list[dict]:
    """The mid-layer effects of each condition on parallel pairs, raw and centred, with magnitude ratios."""
    _, rows = effect_tables(cos, conditions, mid_layers, kinds=("parallel",), seed=seed)
    return with_magnitude_ratios(rows, conditions, magnitudes)


def with_magnitude_ratios(rows: Sequence[dict], conditions: Sequence[Condition], magnitudes: np.ndarray | None) -> list[dict]:
    """Rows with a magnitude_ratio column (None without magnitudes, e.g. for a bare neurons.json)."""
    ratios = magnitude_ratios(conditions, magnitudes) if magnitudes is not None else {}
    return [{**row, "magnitude_ratio": ratios.get(row["condition"])} for row in rows]


def _curve(values: Mapping[str, np.ndarray], members: Sequence[Condition]) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-layer mean over items and seeds [layer], and the seeds' min/max band [2, layer] if seeded."""
    per_seed = np.stack([np.asarray(values[m.label]).mean(axis=0) for m in members])  # [seed, layer]
    band = np.stack([per_seed.min(axis=0), per_seed.max(axis=0)]) if len(members) > 1 else None
    return per_seed.mean(axis=0), band


def _legend_label(name: str, members: Sequence[Condition]) -> str:
    """Condition name with its neuron count and seed count."""
    if members[0].neurons is None:
        return name
    seeds = f", {len(members)} seeds" if len(members) > 1 else ""
    return f"{name} ({len(members[0].neurons)} neurons{seeds})"


def plot_layer_curves(
    cos: ConditionCosines,
    conditions: Sequence[Condition],
    title: str,
    mid_layers: Sequence[int] = (),
    quantity_label: str = "h[l]",
) -> Figure:
    """Per-layer mean cosine, raw and centred panels; parallel solid, non-parallel dashed, seed range shaded."""
    groups = condition_groups(conditions)
    fig = Figure(figsize=(13, 4.8))
    axes = fig.subplots(1, 2, sharex=True)
    for ax, metric in zip(axes, METRICS):
        for i, (name, members) in enumerate(groups.items()):
            colour = COLOURS.get(name, f"C{i}")
            front = 4 if name == "none" else 2  # the undeactivated curve stays visible on top
            for kind, style in zip(PAIR_KINDS, ("-", "--")):
                mean, band = _curve(cos.values[key(metric, kind)], members)
                layers = np.arange(mean.shape[0])
                label = _legend_label(name, members) if kind == "parallel" else None
                ax.plot(layers, mean, style, color=colour, lw=2.2 if name == "none" else 1.5, label=label, zorder=front)
                if band is not None:
                    ax.fill_between(layers, band[0], band[1], color=colour, alpha=0.2, lw=0)
        if len(mid_layers):
            ax.axvspan(min(mid_layers) - 0.5, max(mid_layers) + 0.5, color="grey", alpha=0.1, lw=0)
        ax.set_title(f"{METRIC_TITLES[metric]} of {quantity_label}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("layer (0-based)")
        ax.set_ylabel(f"mean {METRIC_TITLES[metric]}")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    handles += [Line2D([], [], color="grey", ls="-"), Line2D([], [], color="grey", ls="--")]
    labels += ["parallel pairs", "non-parallel pairs"]
    if len(mid_layers):
        handles.append(Rectangle((0, 0), 1, 1, color="grey", alpha=0.15))
        labels.append("mid layers (summary)")
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=9,
               title="L2 side deactivated\n(band: range over seeds)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_mid_drop(
    cos: ConditionCosines,
    conditions: Sequence[Condition],
    mid_rows: Sequence[dict],
    mid_layers: Sequence[int],
    title: str,
    kinds: Sequence[str] = TABLE_KINDS,
) -> Figure:
    """Bar chart of the mid-layer drop (none − condition) per condition with 95 % intervals and per-seed dots."""
    groups = {n: m for n, m in condition_groups(conditions).items() if n != "none"}
    names = list(groups)
    layers = list(mid_layers)
    width = 0.8 / len(kinds)
    fig = Figure(figsize=(max(8, 1.7 * len(names) * 2), 4.6))
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, METRICS):
        values = {kind: cos.values[key(metric, kind)] for kind in kinds}
        for k, kind in enumerate(kinds):
            rows = {r["condition"]: r for r in mid_rows if r["pairs"] == kind and r["metric"] == metric}
            x = np.arange(len(names)) + (k - (len(kinds) - 1) / 2) * width
            drops = np.array([rows[n]["drop"] for n in names])
            err = np.array([[rows[n]["drop"] - rows[n]["drop_low"] for n in names],
                            [rows[n]["drop_high"] - rows[n]["drop"] for n in names]])
            ax.bar(x, drops, width, yerr=err, capsize=3, color=[COLOURS.get(n, "grey") for n in names],
                   alpha=BAR_STYLE[kind][0], hatch=BAR_STYLE[kind][1], edgecolor="black", lw=0.5)
            base = values[kind]["none"][:, layers].mean(axis=1)  # [pair]
            for xi, name in zip(x, names):
                if len(groups[name]) > 1:
                    seed_drops = [(base - values[kind][m.label][:, layers].mean(axis=1)).mean() for m in groups[name]]
                    ax.scatter(np.full(len(seed_drops), xi), seed_drops, s=10, color="black", zorder=3)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(np.arange(len(names)), names, rotation=20)
        ax.set_xlabel("deactivated neurons (L2 side)")
        ax.set_ylabel("drop of mean cosine (none − condition)")
        ax.set_title(f"{METRIC_TITLES[metric]}, layers {layers[0]}–{layers[-1]} (error bars: 95 % CI)")
        ax.grid(axis="y", alpha=0.3)
    handles = [Patch(facecolor="white", edgecolor="black", hatch=BAR_STYLE[kind][1], label=KIND_TITLES[kind])
               for kind in kinds] if len(kinds) > 1 else []
    if any(len(m) > 1 for m in groups.values()):
        handles.append(Line2D([], [], ls="", marker="o", ms=3, color="black", label="single seeds"))
    if handles:
        axes[0].legend(handles=handles, fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
