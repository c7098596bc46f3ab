"""LAPE language-specific neurons (Tang et al. 2024, "Language-Specific Neurons", ACL) and their
overlap with transfer neurons (method.md §6.6).

Per language j and neuron i, the activation probability P_ij is the share of that
language's sentences on which the neuron is active. Normalised over languages,
P'_ij = P_ij / Σ_j P_ij, its entropy LAPE_i = −Σ_j P'_ij log P'_ij is low when the neuron
fires for few languages. Selection, as in the authors' code (identify.py):

1. threshold τ = the 95th percentile (`quantile`) of all activation probabilities P_ij
   (neurons × languages, all layers), taken as numpy's lower order statistic: the
   round(q·N)-th smallest value, as torch.kthvalue in the original;
2. a neuron is a candidate only if some language has P_ij > τ;
3. of all neurons (every layer), the round(share · neurons) ones with the lowest entropy
   (`top_share`, default 1 %) are kept, non-candidates never;
4. each kept neuron belongs to every language j with P_ij > τ.

Differences from Tang et al., deliberate: "active" means the *effective* activation a > 0
(method.md §2: the input of the output projection divided by the MLP-output norm's rms
where one exists), not the activation function's output alone; for gated MLPs
(SwiGLU, GeGLU: a = act(gate)·up) this is the sign of the product, so a neuron whose
up-projection is negative counts as inactive; for GELU models a > 0 means the
pre-activation is positive. And it is measured at each sentence's last real token,
like every other quantity of this project, not over all tokens.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import TransferNeuronsError
from ..stats import expected_overlap, hypergeom_overlap_p
from .specificity import LanguageStats

LOG = logging.getLogger("transfer_neurons")

TOP_SHARE = 0.01
QUANTILE = 0.95


@dataclass
class Lape:
    """LAPE scores and the selected language-specific neurons."""

    langs: tuple[str, ...]
    probability: np.ndarray  # [lang, layer, d_ff] P(a > 0)
    entropy: np.ndarray  # [layer, d_ff] entropy of the normalised probabilities (nats)
    threshold: float  # τ
    neurons: np.ndarray  # [n, 2] (layer, neuron), lowest entropy first
    assigned: np.ndarray  # [n, lang] bool: P > τ

    def of_language(self, lang: str) -> np.ndarray:
        """The selected neurons assigned to one language: [n_lang, 2]."""
        if lang not in self.langs:
            raise TransferNeuronsError(f"language {lang!r} is not among the LAPE languages {', '.join(self.langs)}")
        return self.neurons[self.assigned[:, self.langs.index(lang)]]


def activation_probability(stats: LanguageStats) -> np.ndarray:
    """P(a > 0) per language and neuron: [lang, layer, d_ff]."""
    if np.any(stats.count <= 0):
        raise TransferNeuronsError("activation probabilities need at least one sentence per language")
    return stats.positive / stats.count[:, None, None]


def lape_entropy(probability: np.ndarray) -> np.ndarray:
    """Entropy over languages of the normalised activation probabilities: [lang, ...] -> [...] (0 if never active)."""
    probability = np.asarray(probability, dtype=np.float64)
    mass = probability.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        normed = np.where(mass > 0, probability / np.where(mass > 0, mass, 1.0), 0.0)
        logs = np.where(normed > 0, np.log(np.where(normed > 0, normed, 1.0)), 0.0)
    return -(normed * logs).sum(axis=0)


def select_lape(
    probability: np.ndarray, langs: Sequence[str], top_share: float = TOP_SHARE, quantile: float = QUANTILE
) -> Lape:
    """Language-specific neurons from an activation-probability table [lang, layer, d_ff] (module docstring)."""
    probability = np.asarray(probability, dtype=np.float64)
    if probability.ndim != 3 or probability.shape[0] != len(langs):
        raise TransferNeuronsError(f"expected probabilities [lang={len(langs)}, layer, d_ff], got {probability.shape}")
    if not (0 < top_share <= 1 and 0 < quantile < 1):
        raise TransferNeuronsError(f"LAPE needs 0 < top_share <= 1 and 0 < quantile < 1; got {top_share}, {quantile}")
    flat = probability.ravel()
    rank = max(int(round(quantile * flat.size)), 1) - 1  # torch.kthvalue(k) is the k-th smallest, 1-based
    threshold = float(np.partition(flat, rank)[rank])
    entropy = lape_entropy(probability)  # [layer, d_ff]
    candidate = (probability > threshold).any(axis=0)
    keep = int(round(top_share * entropy.size))
    ranked = np.argsort(np.where(candidate, entropy, np.inf).ravel(), kind="stable")[:keep]
    ranked = ranked[candidate.ravel()[ranked]]
    layer, neuron = np.unravel_index(ranked, entropy.shape)
    neurons = np.stack([layer, neuron], axis=1).astype(np.int64).reshape(-1, 2)
    assigned = (probability[:, layer, neuron] > threshold).T  # [n, lang]
    if not len(neurons):
        LOG.warning("LAPE selected no neurons: the %g quantile of the activation probabilities is %g, and no neuron "
                    "exceeds it (saturated probabilities: too few sentences per language?)", quantile, threshold)
    return Lape(tuple(langs), probability, entropy, threshold, neurons, assigned)


def lape_from_stats(stats: LanguageStats, top_share: float = TOP_SHARE, quantile: float = QUANTILE) -> Lape:
    """LAPE neurons from streamed sufficient statistics."""
    return select_lape(activation_probability(stats), stats.langs, top_share, quantile)


def overlap_row(transfer: np.ndarray, specific: np.ndarray, layers: Sequence[int], d_ff: int, base: dict) -> dict:
    """Overlap of transfer neurons with language-specific ones inside the candidate layers, vs chance."""
    layers = set(int(l) for l in layers)
    transfer_set = {(int(l), int(i)) for l, i in np.asarray(transfer).reshape(-1, 2)}
    specific_set = {(int(l), int(i)) for l, i in np.asarray(specific).reshape(-1, 2) if int(l) in layers}
    population = len(layers) * d_ff
    overlap = len(transfer_set & specific_set)
    return base | {
        "transfer": len(transfer_set), "lape_in_layers": len(specific_set), "population": population,
        "overlap": overlap, "share_of_transfer": overlap / len(transfer_set) if transfer_set else None,
        "expected": expected_overlap(len(transfer_set), len(specific_set), population),
        "p_overlap": hypergeom_overlap_p(overlap, len(transfer_set), len(specific_set), population),
    }
