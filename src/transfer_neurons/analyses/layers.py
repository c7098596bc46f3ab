"""Where transfer neurons sit (method.md §6.7): their distribution over layers and the overlap between languages' sets.

Needs no model: it reads detection folders. Overlaps are compared with two chance levels:
two random sets of the same sizes from the shared candidate layers (hypergeometric,
stats.expected_overlap / hypergeom_overlap_p), and the stricter layer-matched chance in
which each set keeps its per-layer counts and only the neurons within a layer are random
(a sum of independent per-layer hypergeometric overlaps).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

from matplotlib.figure import Figure
import numpy as np
from scipy import stats as sps

from ..detection import Detection, weights_id
from ..errors import TransferNeuronsError
from ..stats import expected_overlap, hypergeom_overlap_p

TYPE_TITLES = {"type1": "Type-1", "type2": "Type-2"}


def layer_counts(neurons: np.ndarray, num_layers: int) -> np.ndarray:
    """Number of neurons of a [n, 2] (layer, neuron) set in each layer: [layer]."""
    return np.bincount(np.asarray(neurons, dtype=np.int64).reshape(-1, 2)[:, 0], minlength=num_layers)


def distribution_rows(detections: Sequence[Detection], num_layers: int, d_ff: int) -> list[dict]:
    """One row per detection and layer: count, share of the set, share of the layer's d_ff neurons, candidate or not."""
    rows = []
    for det in detections:
        counts = layer_counts(det.neurons, num_layers)
        for layer, count in enumerate(counts):
            rows.append({
                "type": det.neuron_type, "lang": det.lang, "layer": layer, "count": int(count),
                "share_of_set": float(count / max(1, len(det.neurons))), "share_of_layer": float(count / d_ff),
                "candidate_layer": layer in det.layers,
            })
    return rows


def neuron_set(neurons: np.ndarray) -> set[tuple[int, int]]:
    """A [n, 2] array as a set of (layer, neuron)."""
    return {(int(l), int(i)) for l, i in np.asarray(neurons).reshape(-1, 2)}


def jaccard(a: set, b: set) -> float:
    """|a ∩ b| / |a ∪ b| (1.0 for two empty sets)."""
    union = len(a | b)
    return len(a & b) / union if union else 1.0


def layer_matched_overlap(counts_a: np.ndarray, counts_b: np.ndarray, d_ff: int) -> tuple[float, np.ndarray]:
    """Chance overlap when each set keeps its per-layer counts: expected value and the pmf of the total.

    In layer l the overlap is hypergeometric (d_ff neurons, counts_a[l] marked, counts_b[l] drawn);
    layers are independent, so the total's distribution is the convolution of the per-layer pmfs.
    """
    pmf = np.ones(1)
    for a, b in zip(counts_a, counts_b):
        if a and b:
            pmf = np.convolve(pmf, sps.hypergeom.pmf(np.arange(min(a, b) + 1), d_ff, a, b))
    return float(np.dot(counts_a, counts_b) / d_ff), pmf


OVERLAP_COLUMNS = ("type", "lang_a", "lang_b", "size_a", "size_b", "shared_layers", "population", "overlap", "jaccard",
                   "chance_overlap", "chance_jaccard", "p_chance", "layer_matched_chance_overlap", "p_layer_matched",
                   "overlap_over_chance")
"""The columns of overlap.csv (also its header when no type has two languages)."""


def overlap_rows(detections: Sequence[Detection], num_layers: int, d_ff: int) -> list[dict]:
    """One row per neuron type and pair of languages: sizes, overlap, Jaccard, and both chance levels."""
    rows = []
    for neuron_type in sorted({d.neuron_type for d in detections}):
        same = [d for d in detections if d.neuron_type == neuron_type]
        for a, b in combinations(same, 2):
            layers = sorted(set(a.layers) & set(b.layers))
            set_a = {n for n in neuron_set(a.neurons) if n[0] in layers}
            set_b = {n for n in neuron_set(b.neurons) if n[0] in layers}
            overlap, population = len(set_a & set_b), len(layers) * d_ff
            counts_a = layer_counts(np.array(sorted(set_a)).reshape(-1, 2), num_layers)
            counts_b = layer_counts(np.array(sorted(set_b)).reshape(-1, 2), num_layers)
            matched, pmf = layer_matched_overlap(counts_a, counts_b, d_ff)
            chance = expected_overlap(len(set_a), len(set_b), population)
            union = len(set_a) + len(set_b)
            rows.append({
                "type": neuron_type, "lang_a": a.lang, "lang_b": b.lang, "size_a": len(set_a), "size_b": len(set_b),
                "shared_layers": f"{layers[0]}-{layers[-1]}" if layers else "", "population": population,
                "overlap": overlap, "jaccard": jaccard(set_a, set_b),
                "chance_overlap": chance, "chance_jaccard": chance / (union - chance) if union > chance else 0.0,
                "p_chance": hypergeom_overlap_p(overlap, len(set_a), len(set_b), population),
                "layer_matched_chance_overlap": matched,
                "p_layer_matched": min(1.0, float(pmf[overlap:].sum())) if overlap < len(pmf) else 0.0,  # sum rounding
                "overlap_over_chance": overlap / chance if chance else None,
            })
    return rows


def check_detections(detections: Sequence[Detection]) -> tuple[int, int]:
    """All detections must come from one model (shape and weights) and name each (type, language) once:
    (num_layers, d_ff). Weights are compared by the recorded fingerprint, else by model name."""
    if not detections:
        raise TransferNeuronsError("no detection folders given")
    shapes = {tuple(d.scores.shape) for d in detections}
    if len(shapes) > 1:
        raise TransferNeuronsError(f"detections come from models of different shapes {sorted(shapes)}; use one model")
    models: dict[object, list[str]] = {}
    for d in detections:
        weights = weights_id(d.meta.get("model_fingerprint")) or d.meta.get("model")
        models.setdefault(weights, []).append(f"{d.neuron_type} {d.lang} ({d.meta.get('model')!r})")
    if len(models) > 1:
        groups = "; ".join(", ".join(names) for names in models.values())
        raise TransferNeuronsError(f"detections come from models of other weights: {groups}; use one model's")
    seen = [(d.neuron_type, d.lang) for d in detections]
    dupes = sorted({s for s in seen if seen.count(s) > 1})
    if dupes:
        raise TransferNeuronsError(f"more than one detection of {', '.join(f'{t} {l}' for t, l in dupes)}; give one each")
    return shapes.pop()


# ---------------------------------------------------------------- figures


def plot_distribution(rows: Sequence[dict], num_layers: int, d_ff: int, title: str) -> Figure:
    """Per neuron type, grouped bars of neurons per layer for each language; right axis in % of the layer's neurons."""
    types = sorted({r["type"] for r in rows})
    fig = Figure(figsize=(max(8, 0.55 * num_layers + 3), 3.4 * len(types)))
    axes = fig.subplots(len(types), 1, squeeze=False)
    for ax, neuron_type in zip(axes[:, 0], types):
        langs = list(dict.fromkeys(r["lang"] for r in rows if r["type"] == neuron_type))
        width = 0.8 / len(langs)
        for i, lang in enumerate(langs):
            sel = [r for r in rows if r["type"] == neuron_type and r["lang"] == lang]
            total = sum(r["count"] for r in sel)
            x = np.arange(num_layers) + (i - (len(langs) - 1) / 2) * width
            ax.bar(x, [r["count"] for r in sel], width, color=f"C{i}", label=f"{lang} ({total} neurons)")
        candidates = [r["layer"] for r in rows if r["type"] == neuron_type and r["candidate_layer"]]
        if candidates:
            ax.axvspan(min(candidates) - 0.5, max(candidates) + 0.5, color="grey", alpha=0.08, lw=0, label="candidate layers")
        ax.set_xticks(np.arange(num_layers))
        ax.set_xlim(-0.6, num_layers - 0.4)
        ax.set_xlabel("layer (0-based)")
        ax.set_ylabel("transfer neurons")
        share = ax.secondary_yaxis("right", functions=(lambda c: 100 * c / d_ff, lambda p: p * d_ff / 100))
        share.set_ylabel(f"% of the layer's {d_ff} neurons")
        ax.set_title(f"{TYPE_TITLES.get(neuron_type, neuron_type)} transfer neurons per layer")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.08, 1.0))
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_overlap(rows: Sequence[dict], detections: Sequence[Detection], title: str) -> Figure:
    """Per neuron type, the Jaccard matrix between languages' sets; cells show overlap and layer-matched chance."""
    types = sorted({d.neuron_type for d in detections})
    fig = Figure(figsize=(4.8 * len(types) + 1, 4.6))
    axes = fig.subplots(1, len(types), squeeze=False)
    for ax, neuron_type in zip(axes[0], types):
        langs = [d.lang for d in detections if d.neuron_type == neuron_type]
        sizes = {d.lang: len(d.neurons) for d in detections if d.neuron_type == neuron_type}
        matrix = np.eye(len(langs))
        text = [[f"{sizes[l]} neurons" if i == j else "" for j in range(len(langs))] for i, l in enumerate(langs)]
        for r in (r for r in rows if r["type"] == neuron_type):
            i, j = langs.index(r["lang_a"]), langs.index(r["lang_b"])
            matrix[i, j] = matrix[j, i] = r["jaccard"]
            text[i][j] = text[j][i] = (f"J = {r['jaccard']:.2f}\n{r['overlap']} shared\n"
                                        f"(chance {r['layer_matched_chance_overlap']:.1f})")
        image = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
        for i in range(len(langs)):
            for j in range(len(langs)):
                ax.text(j, i, text[i][j], ha="center", va="center", fontsize=9,
                        color="black" if matrix[i, j] > 0.6 else "white")
        ax.set_xticks(range(len(langs)), langs)
        ax.set_yticks(range(len(langs)), langs)
        ax.set_title(f"{TYPE_TITLES.get(neuron_type, neuron_type)}: Jaccard of neuron sets")
        fig.colorbar(image, ax=ax, fraction=0.046, label="Jaccard index")
    fig.suptitle(f"{title}\n(J: Jaccard index; chance: expected shared neurons if each set kept its per-layer counts)",
                 fontsize=10)
    fig.tight_layout()
    return fig
