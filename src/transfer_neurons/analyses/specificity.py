"""Language specificity of transfer neurons (method.md §6.5), against its base rate (issue 10).

Over monolingual sentences of several languages, each neuron's last-token effective
activation a[l][i] is related to a one-vs-rest language label (target language vs the
others) by the correlation ratio η² = SS_between / SS_total and the one-way ANOVA F-test.
Both are exact functions of per-group count, sum and sum of squares, so the model's
activations are streamed once and only those sufficient statistics are kept
([lang, layer, d_ff] float64, plus the count of positive activations for LAPE): memory
does not grow with the number of sentences.

A share of transfer neurons passing η² ≥ t at p < α means little alone, so every share
comes with the base rate of all neurons of the same candidate layers and a hypergeometric
test of the difference; Type-1 and Type-2 shares are compared with Fisher's exact test.

Language-family label (when the languages allow): the target's group vs all other
languages, with the groups in FAMILIES — Germanic (en, de, nl), Romance (it, fr, es) and
East Asian (ja, ko, zh). The last is an areal / script grouping (shared Han-character
vocabulary, SOV or topic-prominent syntax), not a genetic family: Japanese, Korean and
Chinese are unrelated languages. A family label is skipped when only the target of its
group is among the languages, or when the group covers every language (no "rest").

Two protocols (`PROTOCOLS`) fix the family label; the language label is the same in both:
- `default`: the groups above, each against every other measured language;
- `paper` (Tezuka & Inoue): the paper's two groups, East Asian {ja, ko} vs European
  {nl, it, en}; the target's group is compared with the other group only, so sentences of a
  language in neither group do not enter the family label (they still count in the
  language label's "rest"), and a target in neither group gets no family label.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats as sps

from ..capture import iter_internals
from ..detection import Detection
from ..errors import TransferNeuronsError
from ..protocols import choose
from ..models.loaded import LoadedModel
from ..stats import share_vs_base_rate, two_proportion_test

FAMILIES = {
    "germanic": ("en", "de", "nl"),
    "romance": ("it", "fr", "es"),
    "east-asian": ("ja", "ko", "zh"),
}
PAPER_FAMILIES = {
    "east-asian": ("ja", "ko"),
    "european": ("nl", "it", "en"),
}
THRESHOLDS = (0.1, 0.25)
ALPHA = 0.05


@dataclass(frozen=True)
class SpecificityProtocol:
    """Everything a specificity protocol fixes: the family groups and what a family is compared with."""

    name: str
    families: Mapping[str, tuple[str, ...]]
    against_families: bool  # True: the target's family vs the other families' languages only (paper); False: vs all others

    def family_labels(self, target: str, langs: Sequence[str]) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
        """"family:<name>" -> (the target's group, the languages it is compared with), for the groups that apply."""
        labels = {}
        for name, group in self.families.items():
            if target not in group:
                continue
            present = tuple(lang for lang in langs if lang in group)
            others = {lang for other, members in self.families.items() if other != name for lang in members}
            rest = tuple(lang for lang in langs if lang not in group and (not self.against_families or lang in others))
            if len(present) > 1 and rest:
                labels[f"family:{name}"] = (present, rest)
        return labels


PROTOCOLS: dict[str, SpecificityProtocol] = {
    "default": SpecificityProtocol("default", FAMILIES, against_families=False),
    "paper": SpecificityProtocol("paper", PAPER_FAMILIES, against_families=True),
}


def specificity_protocol(name: str | SpecificityProtocol) -> SpecificityProtocol:
    """A protocol by name (`default` or `paper`)."""
    return choose(PROTOCOLS, name, "specificity")


@dataclass
class LanguageStats:
    """Per-language sufficient statistics of every neuron's last-token effective activation."""

    langs: tuple[str, ...]
    count: np.ndarray  # [lang] sentences seen
    total: np.ndarray  # [lang, layer, d_ff] float64, sum of a
    sumsq: np.ndarray  # [lang, layer, d_ff] float64, sum of a²
    positive: np.ndarray  # [lang, layer, d_ff] float64, count of a > 0

    @classmethod
    def empty(cls, langs: Sequence[str], num_layers: int, d_ff: int) -> LanguageStats:
        """Zero statistics for the given languages and model shape."""
        shape = (len(langs), num_layers, d_ff)
        return cls(tuple(langs), np.zeros(len(langs)), np.zeros(shape), np.zeros(shape), np.zeros(shape))

    def add(self, lang: int, a: np.ndarray | torch.Tensor) -> None:
        """Add a batch of activations a [n, layer, d_ff] of language index `lang`, reduced on a's device
        (only the three [layer, d_ff] sums reach the host)."""
        a = torch.as_tensor(a).double()
        self.count[lang] += a.shape[0]
        self.total[lang] += a.sum(dim=0).cpu().numpy()
        self.sumsq[lang] += a.pow(2).sum(dim=0).cpu().numpy()
        self.positive[lang] += (a > 0).sum(dim=0).cpu().numpy()

    def index(self, lang: str) -> int:
        """Position of a language code in langs."""
        if lang not in self.langs:
            raise TransferNeuronsError(f"language {lang!r} is not among the measured languages {', '.join(self.langs)}")
        return self.langs.index(lang)


def collect_language_stats(
    lm: LoadedModel,
    texts_by_lang: Mapping[str, Sequence[str]],
    batch_size: int = 16,
    progress: bool = True,
) -> LanguageStats:
    """Stream every language's sentences through the model and accumulate LanguageStats."""
    view = lm.view
    stats = LanguageStats.empty(list(texts_by_lang), view.num_layers, view.d_ff)
    for j, (lang, texts) in enumerate(texts_by_lang.items()):
        desc = f"activations {lang}" if progress else None
        for _, batch in iter_internals(lm, texts, want=("a",), batch_size=batch_size, progress=desc, device=view.device):
            stats.add(j, batch.a)
    return stats


@dataclass
class Anova:
    """Correlation ratio and one-way ANOVA of each neuron's activation with a group label."""

    eta2: np.ndarray  # [...] SS_between / SS_total (0 where the activation is constant)
    f: np.ndarray  # [...] F statistic (inf where SS_within is 0 but SS_between is not; nan if constant)
    p: np.ndarray  # [...] survival function of F(k - 1, N - k) at f (1 where constant)
    dfn: int
    dfd: int


def anova_from_sums(count: np.ndarray, total: np.ndarray, sumsq: np.ndarray) -> Anova:
    """η², F and p of a one-way ANOVA from per-group count [g], sum and sum of squares [g, ...]."""
    count = np.asarray(count, dtype=np.float64)
    total, sumsq = np.asarray(total, dtype=np.float64), np.asarray(sumsq, dtype=np.float64)
    if np.any(count <= 0):
        raise TransferNeuronsError(f"every group needs at least one observation; got counts {count.tolist()}")
    groups, n = len(count), count.sum()
    dfn, dfd = groups - 1, int(n) - groups
    if dfn < 1 or dfd < 1:
        raise TransferNeuronsError(f"ANOVA needs at least 2 groups and more observations than groups; got {count.tolist()}")
    shape = (-1,) + (1,) * (total.ndim - 1)
    means = total / count.reshape(shape)  # [g, ...]
    grand = total.sum(axis=0) / n  # [...]
    ss_between = (count.reshape(shape) * (means - grand) ** 2).sum(axis=0)
    ss_within = np.clip(sumsq - total * means, 0.0, None).sum(axis=0)  # Σ_g (Q_g − S_g²/n_g), rounding-guarded
    ss_total = ss_between + ss_within
    scale = np.maximum(np.abs(sumsq).sum(axis=0), np.finfo(np.float64).tiny)
    constant = ss_total <= 1e-12 * scale
    with np.errstate(divide="ignore", invalid="ignore"):
        eta2 = np.where(constant, 0.0, ss_between / np.where(constant, 1.0, ss_total))
        f = np.where(constant, np.nan, (ss_between / dfn) / (ss_within / dfd))
    p = np.where(constant, 1.0, sps.f.sf(np.where(constant, 0.0, f), dfn, dfd))
    return Anova(eta2, f, p, dfn, dfd)


def group_anova(stats: LanguageStats, members: Sequence[str], rest: Sequence[str] | None = None) -> Anova:
    """Two-group ANOVA of every neuron, [layer, d_ff]: the languages in `members` vs those in `rest`
    (default: all others); languages in neither are left out."""
    inside = np.array([lang in members for lang in stats.langs])
    outside = ~inside if rest is None else np.array([lang in rest and lang not in members for lang in stats.langs])
    if not inside.any() or not outside.any():
        raise TransferNeuronsError(
            f"a group label needs languages on both sides; got {sorted(members)} vs "
            f"{'the rest' if rest is None else sorted(rest)} of {', '.join(stats.langs)}"
        )
    parts = [inside, outside]
    count = np.array([stats.count[m].sum() for m in parts])
    total = np.stack([stats.total[m].sum(axis=0) for m in parts])
    sumsq = np.stack([stats.sumsq[m].sum(axis=0) for m in parts])
    return anova_from_sums(count, total, sumsq)


def labels_for(
    target: str, langs: Sequence[str], protocol: str | SpecificityProtocol = "default"
) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """The group labels that apply, each as (group, compared with): "language" (the target vs every other
    language) and "family:<name>" where the protocol's groups allow one."""
    labels = {"language": ((target,), tuple(lang for lang in langs if lang != target))}
    return labels | specificity_protocol(protocol).family_labels(target, langs)


def passes(anova: Anova, threshold: float, alpha: float = ALPHA) -> np.ndarray:
    """Neurons with η² ≥ threshold and p < alpha: bool [layer, d_ff]."""
    return (anova.eta2 >= threshold) & (anova.p < alpha)


def share_rows(
    passing: np.ndarray,
    neurons: np.ndarray,
    layers: Sequence[int],
    base: Mapping[str, object],
) -> dict:
    """Share of the neurons [n, 2] passing, the base rate of all neurons in `layers`, and their test."""
    passing = np.asarray(passing, dtype=bool)  # [layer, d_ff]
    neurons = np.asarray(neurons, dtype=np.int64).reshape(-1, 2)
    layers = list(layers)
    if len(neurons) == 0:
        raise TransferNeuronsError("no transfer neurons to measure a share of")
    if not set(neurons[:, 0].tolist()) <= set(layers):
        raise TransferNeuronsError("transfer neurons lie outside the candidate layers given for the base rate")
    k = len(neurons)
    k_pass = int(passing[neurons[:, 0], neurons[:, 1]].sum())
    base_total = len(layers) * passing.shape[1]
    base_pass = int(passing[layers].sum())
    share, base_rate = k_pass / k, base_pass / base_total
    return dict(base) | {
        "k": k, "k_pass": k_pass, "share": share,
        "base_total": base_total, "base_pass": base_pass, "base_rate": base_rate,
        "enrichment": share / base_rate if base_rate > 0 else None,
        "p_vs_base": share_vs_base_rate(k_pass, k, base_pass, base_total),
    }


def specificity_shares(
    stats: LanguageStats,
    detections: Sequence[Detection],
    thresholds: Sequence[float] = THRESHOLDS,
    alpha: float = ALPHA,
    protocol: str | SpecificityProtocol = "default",
) -> tuple[list[dict], dict[tuple[str, str], Anova]]:
    """Share table: per detection, label (the protocol's) and threshold, the transfer share, base rate and p.

    Returns the rows and the ANOVA of each (target language, label) used.
    """
    rows, anovas = [], {}
    for det in detections:
        stats.index(det.lang)
        for label, (members, rest) in labels_for(det.lang, stats.langs, protocol).items():
            key = (det.lang, label)
            if key not in anovas:
                anovas[key] = group_anova(stats, members, rest)
            for threshold in thresholds:
                rows.append(share_rows(
                    passes(anovas[key], threshold, alpha), det.neurons, det.layers,
                    {"type": det.neuron_type, "lang": det.lang, "label": label, "group": "+".join(members),
                     "versus": "+".join(rest), "eta2_min": threshold, "alpha": alpha,
                     "layers": f"{min(det.layers)}-{max(det.layers)}"},
                ))
    return rows, anovas


def compare_types(rows: Sequence[Mapping]) -> list[dict]:
    """Type-1 vs Type-2 shares per language, label and threshold (Fisher's exact test, two-sided)."""
    by_key: dict[tuple, dict[str, Mapping]] = {}
    for row in rows:
        by_key.setdefault((row["lang"], row["label"], row["eta2_min"]), {})[row["type"]] = row
    out = []
    for (lang, label, threshold), pair in by_key.items():
        if {"type1", "type2"} <= pair.keys():
            t1, t2 = pair["type1"], pair["type2"]
            out.append({
                "lang": lang, "label": label, "eta2_min": threshold,
                "type1_share": t1["share"], "type1_base_rate": t1["base_rate"],
                "type2_share": t2["share"], "type2_base_rate": t2["base_rate"],
                "type2_minus_type1": t2["share"] - t1["share"],
                "p_type1_vs_type2": two_proportion_test(t1["k_pass"], t1["k"], t2["k_pass"], t2["k"]),
                "base2_minus_base1": t2["base_rate"] - t1["base_rate"],
            })
    return out


def shares_figure(rows: Sequence[Mapping], title: str):
    """Bars of the transfer-neuron share per (language, label) and type, one panel per η² threshold,
    with each bar's base rate (all neurons of its candidate layers) marked and its p-value above."""
    from matplotlib.figure import Figure

    thresholds = sorted({row["eta2_min"] for row in rows})
    groups = list(dict.fromkeys((row["lang"], row["label"]) for row in rows))
    types = sorted({row["type"] for row in rows})
    width = 0.8 / len(types)
    fig = Figure(figsize=(max(4.5, 1.6 * len(groups) * len(types)) * len(thresholds) / 1.5, 4.2))
    axes = fig.subplots(1, len(thresholds), squeeze=False, sharey=True)
    for ax, threshold in zip(axes[0], thresholds):
        for t, neuron_type in enumerate(types):
            for g, group in enumerate(groups):
                match = [r for r in rows if (r["lang"], r["label"]) == group and r["type"] == neuron_type
                         and r["eta2_min"] == threshold]
                if not match:
                    continue
                row, x = match[0], g + (t - (len(types) - 1) / 2) * width
                ax.bar(x, row["share"], width * 0.9, color=f"C{t}", label=neuron_type if g == 0 else None)
                ax.hlines(row["base_rate"], x - width * 0.45, x + width * 0.45, colors="black", linewidth=2,
                          label="base rate (same layers)" if g == 0 and t == 0 else None)
                ax.annotate(f"p={row['p_vs_base']:.1g}", (x, max(row["share"], row["base_rate"])), ha="center",
                            va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points")
        ax.set_xticks(range(len(groups)), [f"{lang}\n{label}" for lang, label in groups], fontsize=8)
        ax.set_ylim(0, 1.08)
        ax.set_xlabel("target language / group label")
        ax.set_title(f"η² ≥ {threshold:g} and ANOVA p < {rows[0]['alpha']:g}\n"
                     "(above bars: p of share vs base rate, hypergeometric)", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("share of neurons passing")
    axes[0][0].legend(fontsize=8, loc="upper left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def eta2_figure(
    detections: Sequence[Detection], anovas: Mapping[tuple[str, str], Anova], title: str,
    thresholds: Sequence[float] = THRESHOLDS,
):
    """Histograms (density) of η² (language label) for transfer neurons vs all neurons of their candidate layers."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2 * len(detections), 3.6))
    axes = fig.subplots(1, len(detections), squeeze=False)
    bins = np.linspace(0.0, 1.0, 41)
    for ax, det in zip(axes[0], detections):
        eta2 = anovas[(det.lang, "language")].eta2  # [layer, d_ff]
        everything = eta2[list(det.layers)].ravel()
        transfer = eta2[det.neurons[:, 0], det.neurons[:, 1]]
        ax.hist(everything, bins=bins, density=True, histtype="step", color="black",
                label=f"all candidate neurons ({everything.size})")
        ax.hist(transfer, bins=bins, density=True, alpha=0.6, color="C0" if det.neuron_type == "type1" else "C1",
                label=f"{det.neuron_type} transfer neurons ({transfer.size})")
        for t, threshold in enumerate(thresholds):
            ax.axvline(threshold, color="grey", linestyle="--", linewidth=1, label="η² thresholds" if t == 0 else None)
        ax.set_yscale("log")
        ax.set_xlabel(f"η² ({det.lang} vs rest)")
        ax.set_ylabel("density (log)")
        ax.set_title(f"{det.neuron_type} {det.lang}, layers {min(det.layers)}-{max(det.layers)}", fontsize=10)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
