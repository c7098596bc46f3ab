"""Language latent spaces over several languages (method.md §6.4), with each language's own neurons deactivated.

For the hub language (never deactivated) and each L2, the last-token layer outputs h[l]
of monolingual sentences give, per layer:
- a 2-D PCA scatter (default protocol: sklearn PCA fitted on the undeactivated states of
  all languages, so deactivated states are drawn in the same frame);
- the cosine between language centroids, raw and centred (one mean per layer over the
  undeactivated states of all languages, shared by all conditions);
- how many singular components of each language's own centred states (default protocol)
  reach 90 / 95 / 99 % of its variance;
- the "merge" numbers: the mean pairwise Euclidean distance between language centroids,
  and that distance over the pooled within-language spread (RMS distance of a state to
  its language's centroid). If Type-2 neurons carry states into language-specific
  spaces, deactivating them should shrink both in the final layers.
The merge numbers are set-level, so their intervals come from a paired bootstrap that
resamples sentences within each language (the same resamples for every condition).

Claim 2 is decided per L2 on two per-sentence statistics against fixed references (the
undeactivated language centroids and the centring mean): `own_nearest`, whether the
sentence's state is nearest (centred cosine) to its own language's centroid among all the
languages' centroids, and `hub_cosine`, its centred cosine to the hub (English) centroid.
If Type-2 neurons carry states into their language's own space, deactivating them lowers
the first and raises the second in the final layers.

Two protocols (`PROTOCOLS`) fix the spectra and the PCA frame; everything else is shared:
- `default`: component counts from each language's centred states, and one PCA frame per
  layer (the undeactivated states of all languages) in which every condition is drawn;
- `paper` (Tezuka & Inoue): component counts from the singular values of the uncentred
  states, as the paper computed its spectra (the common offset of the states then takes
  the first component), and each condition's panel drawn in its own PCA, fitted on that
  condition's states of all languages (hub undeactivated, each L2 under its own neurons).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
import numpy as np
import torch
from sklearn.decomposition import PCA

from ..conditions import Condition
from ..errors import TransferNeuronsError
from ..protocols import choose
from ..models.loaded import LoadedModel
from ..states import StateProvider, provider_for
from ..stats import check_seed, resample_counts, seeded_rng
from .effects import summarise_boot, summarise_layer_range
from .similarity import COLOURS

THRESHOLDS = (0.90, 0.95, 0.99)
MERGE_METRICS = ("centroid_distance", "separation")
MERGE_TITLES = {
    "centroid_distance": "mean pairwise distance of language centroids",
    "separation": "centroid distance / within-language spread",
}
PROJECTED = ("none", "transfer")  # conditions whose states are projected for the PCA figures
L2_METRICS = ("own_nearest", "hub_cosine")
L2_TITLES = {
    "own_nearest": "share of L2 states nearest (centred cosine) to their own language's centroid",
    "hub_cosine": "centred cosine of L2 states to the hub-language centroid",
}


@dataclass(frozen=True)
class LatentProtocol:
    """Everything a latent-space protocol fixes: how the spectra are taken and which PCA frame each panel uses."""

    name: str
    centred_spectra: bool  # True: singular values of each language's centred states; False: of the raw states (paper)
    shared_frame: bool  # True: one PCA per layer on the undeactivated states for every condition; False: one per condition

    def describe(self) -> dict[str, str]:
        """The spectra and the PCA frame in words, for the record."""
        return {
            "spectra": "singular values of each language's " + ("centred" if self.centred_spectra else "uncentred (raw)")
                       + " states per layer",
            "pca_frame": "one PCA(2) per layer fitted on the undeactivated states of all languages; every condition is "
                         "projected into it" if self.shared_frame else
                         "each condition's own PCA(2) per layer, fitted on that condition's states of all languages",
        }


PROTOCOLS: dict[str, LatentProtocol] = {
    "default": LatentProtocol("default", centred_spectra=True, shared_frame=True),
    "paper": LatentProtocol("paper", centred_spectra=False, shared_frame=False),
}


def latent_protocol(name: str | LatentProtocol) -> LatentProtocol:
    """A protocol by name (`default` or `paper`)."""
    return choose(PROTOCOLS, name, "latent-space")


# ---------------------------------------------------------------- per-set quantities


def components_for_variance(x: np.ndarray, thresholds: Sequence[float] = THRESHOLDS, centred: bool = True) -> np.ndarray:
    """How many singular components of the rows x [n, d] reach each share of the variance: [threshold].

    centred=False takes the singular values of x itself (the paper's spectra): the share is then
    of the sum of squares about zero, so a common offset of the rows fills the first component."""
    x = np.asarray(x, dtype=np.float64)
    variance = np.linalg.svd(x - x.mean(axis=0) if centred else x, compute_uv=False) ** 2
    if variance.sum() <= 0:
        return np.zeros(len(thresholds), dtype=np.int64)
    share = np.cumsum(variance) / variance.sum()
    return np.minimum(np.searchsorted(share, np.asarray(thresholds), side="left") + 1, len(variance))


def centroid_cosines(centroids: np.ndarray, mean: np.ndarray | None = None) -> np.ndarray:
    """Cosine between every two language centroids [lang, layer, d] per layer, optionally after subtracting mean [layer, d]: [layer, lang, lang]."""
    c = np.asarray(centroids, dtype=np.float64)
    if mean is not None:
        c = c - np.asarray(mean, dtype=np.float64)
    unit = c / np.maximum(np.linalg.norm(c, axis=-1, keepdims=True), 1e-30)
    return np.einsum("ald,bld->lab", unit, unit)


def mean_pairwise_distance(centroids: np.ndarray) -> np.ndarray:
    """Mean Euclidean distance over all pairs of language centroids [..., lang, d]: [...]."""
    pairs = list(combinations(range(centroids.shape[-2]), 2))
    return np.mean([np.linalg.norm(centroids[..., a, :] - centroids[..., b, :], axis=-1) for a, b in pairs], axis=0)


def merge_numbers(states: Sequence[np.ndarray], counts: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Centroid distance and separation of languages' states [n_i, layer, d] under weights counts [boot, n_i]: [boot, layer] each.

    With all-ones weights this is the point estimate. Separation = mean pairwise centroid
    distance / sqrt(mean over languages of the mean squared distance to the own centroid).
    """
    num_layers = states[0].shape[1]
    distance = np.zeros((counts[0].shape[0], num_layers))
    spread = np.zeros_like(distance)
    for l in range(num_layers):
        centroids, within = [], []
        for x, w in zip(states, counts):
            xl = np.asarray(x[:, l], dtype=np.float64)  # [n, d]
            total = w.sum(axis=1, keepdims=True)  # [boot, 1]
            c = w @ xl / total  # [boot, d]
            within.append(np.maximum((w @ (xl ** 2).sum(axis=1)) / total[:, 0] - (c ** 2).sum(axis=1), 0.0))
            centroids.append(c)
        distance[:, l] = mean_pairwise_distance(np.stack(centroids, axis=1))
        spread[:, l] = np.sqrt(np.mean(within, axis=0))
    return distance, distance / np.maximum(spread, 1e-30)


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length along the last axis (zero rows stay zero)."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-30)


def own_nearest(states: np.ndarray, centroids: np.ndarray, own: int, mean: np.ndarray) -> np.ndarray:
    """Whether each state is nearest, by centred cosine, to centroid `own`: states [n, layer, d],
    centroids [lang, layer, d], mean [layer, d] -> [n, layer] of 0.0 / 1.0 (ties count as not own)."""
    x = _unit(np.asarray(states, dtype=np.float64) - mean)  # [n, layer, d]
    c = _unit(np.asarray(centroids, dtype=np.float64) - mean)  # [lang, layer, d]
    cos = np.einsum("nld,ald->nla", x, c)  # [n, layer, lang]
    others = np.delete(cos, own, axis=2).max(axis=2)  # [n, layer]
    return (cos[:, :, own] > others).astype(np.float64)


def centred_cosine_to(states: np.ndarray, centroid: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Centred cosine of each state to one centroid: states [n, layer, d], centroid and mean [layer, d] -> [n, layer]."""
    x = _unit(np.asarray(states, dtype=np.float64) - mean)
    c = _unit(np.asarray(centroid, dtype=np.float64) - mean)
    return np.einsum("nld,ld->nl", x, c)


def l2_statistics(states: np.ndarray, own: int, centroids: np.ndarray, mean: np.ndarray) -> dict[str, np.ndarray]:
    """Claim 2's per-sentence statistics of one L2's states (centroid 0 is the hub's): metric -> [n, layer]."""
    return {"own_nearest": own_nearest(states, centroids, own, mean),
            "hub_cosine": centred_cosine_to(states, centroids[0], mean)}


# ---------------------------------------------------------------- the analysis


@dataclass
class ConditionSpaces:
    """What one condition gives for all languages (hub first)."""

    centroids: np.ndarray  # [lang, layer, d]
    components: np.ndarray  # [lang, layer, threshold]
    merge: dict[str, np.ndarray]  # metric -> [layer]
    merge_boot: dict[str, np.ndarray]  # metric -> [boot, layer]
    projection: list[np.ndarray] | None = None  # per language [n, layer, 2], for PROJECTED conditions
    explained: np.ndarray | None = None  # [layer, 2] variance share of the two axes of the frame projected into


@dataclass
class LatentSpaces:
    """Latent-space summaries of several languages under each condition, with one centring and the protocol's PCA frame."""

    langs: tuple[str, ...]  # hub first
    conditions: list[Condition]
    spaces: dict[str, ConditionSpaces]  # condition label -> summary
    mean: np.ndarray  # [layer, d] centring mean of the undeactivated states of all languages
    explained: np.ndarray  # [layer, 2] variance share of the two PCA axes (fitted on undeactivated states)
    sentences: dict[str, int] = field(default_factory=dict)  # lang -> sentence count
    thresholds: tuple[float, ...] = THRESHOLDS
    # condition label -> L2 -> metric (L2_METRICS) -> [n, layer], against the undeactivated centroids
    l2: dict[str, dict[str, dict[str, np.ndarray]]] = field(default_factory=dict)
    protocol: LatentProtocol = PROTOCOLS["default"]


def fit_frame(states: Sequence[torch.Tensor], seed: int) -> list[PCA]:
    """One PCA(2) per layer fitted on the states [n_i, layer, d] of all languages together."""
    stacked = torch.cat(list(states)).double().numpy()  # [all sentences, layer, d]
    return [PCA(n_components=2, random_state=check_seed(seed)).fit(stacked[:, l]) for l in range(stacked.shape[1])]


def summarise_condition(
    states: Sequence[torch.Tensor], counts: Sequence[np.ndarray], pcas: Sequence[PCA] | None, thresholds: Sequence[float],
    centred_spectra: bool = True,
) -> ConditionSpaces:
    """Centroids, component counts, merge numbers (point and bootstrap) and, given a frame, PCA projections."""
    arrays = [s.double().numpy() for s in states]  # per language [n, layer, d]
    num_layers = arrays[0].shape[1]
    centroids = np.stack([x.mean(axis=0) for x in arrays])
    components = np.stack([[components_for_variance(x[:, l], thresholds, centred_spectra) for l in range(num_layers)]
                           for x in arrays])
    point = merge_numbers(arrays, [np.ones((1, x.shape[0])) for x in arrays])
    boot = merge_numbers(arrays, counts)
    projection = explained = None
    if pcas is not None:
        projection = [np.stack([pcas[l].transform(x[:, l]) for l in range(num_layers)], axis=1) for x in arrays]
        explained = np.stack([p.explained_variance_ratio_ for p in pcas])
    return ConditionSpaces(centroids, components, {m: p[0] for m, p in zip(MERGE_METRICS, point)},
                           dict(zip(MERGE_METRICS, boot)), projection, explained)


def latent_spaces(
    source: LoadedModel | StateProvider,
    texts: Mapping[str, Sequence[str]],
    hub_lang: str,
    conditions: Sequence[Condition],
    neurons: Mapping[str, Mapping[str, np.ndarray | None]],
    thresholds: Sequence[float] = THRESHOLDS,
    n_boot: int = 500,
    seed: int = 0,
    batch_size: int = 16,
    mode: str = "last",
    progress: bool = True,
    protocol: str | LatentProtocol = "default",
) -> LatentSpaces:
    """method.md §6.4 for texts {lang: sentences} (hub_lang among them, never deactivated), under a protocol.

    neurons[label][lang] is the [n, 2] set deactivated on that language's sentences under the
    condition with that label (None: none). Holds the undeactivated states and one condition's.
    """
    chosen_protocol = latent_protocol(protocol)
    langs = (hub_lang, *[lang for lang in texts if lang != hub_lang])
    if hub_lang not in texts or len(langs) < 2:
        raise TransferNeuronsError(f"latent spaces need {hub_lang!r} sentences and at least one other language")
    for lang in langs:
        if len(texts[lang]) < 3:
            raise TransferNeuronsError(f"{lang}: latent spaces need at least 3 sentences per language, got {len(texts[lang])}")

    provider = provider_for(source, batch_size)

    def grab(lang: str, chosen: np.ndarray | None, label: str) -> torch.Tensor:
        return provider.get(texts[lang], chosen, mode, ("h",), f"{lang} h {label}" if progress else None).h

    base = [grab(lang, None, "none") for lang in langs]  # per language [n, layer, d]
    pcas = fit_frame(base, seed)  # the undeactivated frame
    rng = seeded_rng(seed)
    counts = [resample_counts(len(texts[lang]), n_boot, rng) for lang in langs]
    mean = torch.cat(base).double().numpy().mean(axis=0)  # [layer, d] centring mean of the undeactivated states
    reference = np.stack([b.double().numpy().mean(axis=0) for b in base])  # [lang, layer, d] undeactivated centroids
    spaces, l2 = {}, {}
    for condition in conditions:
        chosen = neurons.get(condition.label, {})
        states = [base[i] if i == 0 or chosen.get(lang) is None else grab(lang, chosen[lang], condition.label)
                  for i, lang in enumerate(langs)]
        frame = None
        if condition.label in PROJECTED:
            frame = pcas if chosen_protocol.shared_frame else fit_frame(states, seed)
        spaces[condition.label] = summarise_condition(states, counts, frame, thresholds, chosen_protocol.centred_spectra)
        l2[condition.label] = {lang: l2_statistics(states[i].double().numpy(), i, reference, mean)
                               for i, lang in enumerate(langs) if i > 0}
    return LatentSpaces(langs, list(conditions), spaces, mean,
                        np.stack([p.explained_variance_ratio_ for p in pcas]),
                        {lang: len(texts[lang]) for lang in langs}, tuple(thresholds), l2, chosen_protocol)


# ---------------------------------------------------------------- tables


def merge_rows(ls: LatentSpaces) -> list[dict]:
    """Effects rows (effects.summarise_boot) of each merge metric per condition and layer."""
    rows = []
    items = sum(ls.sentences.values())
    for metric in MERGE_METRICS:
        point = {label: s.merge[metric] for label, s in ls.spaces.items()}
        boot = {label: s.merge_boot[metric] for label, s in ls.spaces.items()}
        rows += summarise_boot(point, boot, ls.conditions, metric, items)
    return rows


def l2_rows(ls: LatentSpaces, layers: Sequence[int], seed: int = 0) -> list[dict]:
    """Effects rows (effects.summarise_layer_range, plus "lang") of claim 2's statistics per L2, mean over `layers`;
    none without a transfer condition (nothing deactivated, nothing to compare)."""
    if "transfer" not in ls.l2:
        return []
    rows = []
    for lang in ls.langs[1:]:
        for metric in L2_METRICS:
            values = {label: per_lang[lang][metric] for label, per_lang in ls.l2.items()}
            rows += [{"lang": lang, **r} for r in summarise_layer_range(values, ls.conditions, metric, layers, seed)]
    return rows


def component_rows(ls: LatentSpaces) -> list[dict]:
    """One row per condition label, language, layer and variance threshold: the component count."""
    return [
        {"condition": label, "lang": lang, "layer": l, "variance": t, "components": int(s.components[i, l, j]),
         "sentences": ls.sentences[lang]}
        for label, s in ls.spaces.items() for i, lang in enumerate(ls.langs)
        for l in range(s.components.shape[1]) for j, t in enumerate(ls.thresholds)
    ]


def centroid_pair_rows(ls: LatentSpaces) -> list[dict]:
    """One row per condition label, layer and pair of languages: raw and centred centroid cosine and distance."""
    rows = []
    for label, s in ls.spaces.items():
        raw, centred = centroid_cosines(s.centroids), centroid_cosines(s.centroids, ls.mean)
        for l in range(s.centroids.shape[1]):
            for a, b in combinations(range(len(ls.langs)), 2):
                rows.append({"condition": label, "layer": l, "lang_a": ls.langs[a], "lang_b": ls.langs[b],
                             "raw_cosine": float(raw[l, a, b]), "centred_cosine": float(centred[l, a, b]),
                             "distance": float(np.linalg.norm(s.centroids[a, l] - s.centroids[b, l]))})
    return rows


# ---------------------------------------------------------------- figures


def _grid(num_layers: int, width: float, height: float):
    """A near-square grid of per-layer panels and the axes beyond the last layer switched off."""
    cols = int(np.ceil(np.sqrt(num_layers * 1.5)))
    rows = int(np.ceil(num_layers / cols))
    fig = Figure(figsize=(width * cols, height * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.ravel()[num_layers:]:
        ax.axis("off")
    return fig, axes.ravel()


def plot_pca(ls: LatentSpaces, label: str, title: str):
    """Per-layer 2-D PCA scatter of every language in the condition's frame; in the shared frame (default
    protocol) the undeactivated states are drawn faintly under deactivation."""
    spaces = ls.spaces[label]
    num_layers = spaces.centroids.shape[1]
    fig, axes = _grid(num_layers, 2.9, 2.7)
    reference = ls.spaces["none"].projection if label != "none" and ls.protocol.shared_frame else None
    for l in range(num_layers):
        ax = axes[l]
        for i, lang in enumerate(ls.langs):
            if reference is not None and i > 0:
                ax.scatter(reference[i][:, l, 0], reference[i][:, l, 1], s=6, facecolors="none",
                           edgecolors=f"C{i}", alpha=0.35, lw=0.6)
            xy = spaces.projection[i][:, l]
            ax.scatter(xy[:, 0], xy[:, 1], s=6, color=f"C{i}", alpha=0.7, lw=0)
        ax.set_title(f"layer {l} ({100 * spaces.explained[l].sum():.0f} % var.)", fontsize=9)
        ax.tick_params(labelsize=6)
        ax.set_xlabel("PC 1", fontsize=7, labelpad=1)
        ax.set_ylabel("PC 2", fontsize=7, labelpad=1)
    handles = [Line2D([], [], ls="", marker="o", color=f"C{i}", label=lang) for i, lang in enumerate(ls.langs)]
    if reference is not None:
        handles.append(Line2D([], [], ls="", marker="o", mfc="none", color="grey", label="same L2, no deactivation"))
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), bbox_to_anchor=(0.5, 1.0 - 0.02), fontsize=10,
               markerscale=2)
    fig.suptitle(title, y=1.03)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return fig


def plot_centroid_heatmaps(ls: LatentSpaces, label: str, centred: bool, title: str):
    """Per-layer heatmap of centroid cosines between languages (shared colour scale across layers)."""
    spaces = ls.spaces[label]
    cos = centroid_cosines(spaces.centroids, ls.mean if centred else None)  # [layer, lang, lang]
    num_layers, n = cos.shape[0], len(ls.langs)
    off = cos[:, ~np.eye(n, dtype=bool)]
    vmin, vmax = (-1.0, 1.0) if centred else (float(np.floor(off.min() * 100) / 100), 1.0)
    fig, axes = _grid(num_layers, 0.55 * n + 1.1, 0.55 * n + 0.9)
    for l in range(num_layers):
        ax = axes[l]
        image = ax.imshow(cos[l], vmin=vmin, vmax=vmax, cmap="coolwarm" if centred else "viridis")
        for a in range(n):
            for b in range(n):
                shade = (cos[l, a, b] - vmin) / (vmax - vmin)
                ax.text(b, a, f"{cos[l, a, b]:.2f}", ha="center", va="center", fontsize=7,
                        color="black" if 0.2 < shade < 0.8 or (not centred and shade > 0.55) else "white")
        ax.set_xticks(range(n), ls.langs, fontsize=7)
        ax.set_yticks(range(n), ls.langs, fontsize=7)
        ax.set_title(f"layer {l}", fontsize=9)
    fig.subplots_adjust(hspace=0.45, wspace=0.35)
    fig.colorbar(image, ax=list(axes[:num_layers]), fraction=0.02, pad=0.02,
                 label="mean-centred cosine" if centred else "raw cosine")
    fig.suptitle(title)
    return fig


def plot_components(ls: LatentSpaces, title: str):
    """Components reaching each variance share per layer: one panel per threshold, colour per language, dashed = deactivated."""
    labels = [label for label in PROJECTED if label in ls.spaces]
    fig = Figure(figsize=(5 * len(ls.thresholds) + 2, 4.8))
    axes = fig.subplots(1, len(ls.thresholds), squeeze=False)
    for ax, (j, t) in zip(axes[0], enumerate(ls.thresholds)):
        for label, style in zip(labels, ("-", "--")):
            comps = ls.spaces[label].components  # [lang, layer, threshold]
            for i, lang in enumerate(ls.langs):
                if label != "none" and i == 0:
                    continue  # the hub language is never deactivated
                ax.plot(np.arange(comps.shape[1]), comps[i, :, j], style, color=f"C{i}", marker="o", ms=2.5, lw=1.5)
        ax.set_title(f"{100 * t:.0f} % of variance")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("layer (0-based)")
        ax.set_ylabel("singular components needed")
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=f"C{i}", label=lang) for i, lang in enumerate(ls.langs)]
    handles += [Line2D([], [], color="grey", ls=style, label=f"{label}" + (" (own neurons)" if label != "none" else ""))
                for label, style in zip(labels, ("-", "--"))]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=9, title="language / deactivated")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_merge(rows: Sequence[dict], title: str):
    """Merge numbers per layer and condition with 95 % bootstrap bands, and the distance relative to none."""
    names = list(dict.fromkeys(r["condition"] for r in rows))
    panels = [("centroid_distance", "mean"), ("centroid_distance", "ratio"), ("separation", "mean")]
    fig = Figure(figsize=(17, 4.5))
    axes = fig.subplots(1, 3)
    for ax, (metric, kind) in zip(axes, panels):
        base = [r for r in rows if r["metric"] == metric and r["condition"] == "none"]
        for i, name in enumerate(names):
            sel = [r for r in rows if r["metric"] == metric and r["condition"] == name]
            layers = [int(r["layer"]) for r in sel]
            colour = COLOURS.get(name, f"C{i}")
            if kind == "ratio":  # condition / none with the paired (drop) interval
                scale = np.array([b["mean"] for b in base])
                value = np.array([r["mean"] for r in sel]) / scale
                low, high = (1 - np.array([r[f"drop_{end}"] for r in sel]) / scale for end in ("high", "low"))
            else:
                value = np.array([r["mean"] for r in sel])
                low, high = np.array([r["mean_low"] for r in sel]), np.array([r["mean_high"] for r in sel])
            ax.plot(layers, value, color=colour, lw=2.2 if name in PROJECTED else 1.3, marker="o", ms=2.5, label=name)
            ax.fill_between(layers, low, high, color=colour, alpha=0.15, lw=0)
        ax.set_xlabel("layer (0-based)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if kind == "ratio":
            ax.axhline(1, color="black", lw=0.8)
            ax.set_ylabel("centroid distance / undeactivated")
            ax.set_title("centroid distance relative to no deactivation\n(shade: paired 95 % CI)", fontsize=10)
        else:
            ax.set_ylabel(MERGE_TITLES[metric])
            ax.set_title(MERGE_TITLES[metric], fontsize=10)
        if metric == "centroid_distance" and kind == "mean":
            ax.set_yscale("log")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=9,
               title="each L2's own neurons\ndeactivated (shade: 95 % CI,\nsentences resampled)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
