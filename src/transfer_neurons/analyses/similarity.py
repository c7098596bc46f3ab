"""Cross-lingual hidden-state similarity per layer (SPEC.md 6.1), raw and mean-centred.

Residual streams carry a few very large dimensions, so raw cosines of unrelated
sentences can exceed 0.9; the centred cosine subtracts one mean state per layer
(of the undeactivated states of both languages) first, shared by every condition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..interventions import capture_under
from ..models.loading import LoadedModel


@dataclass
class PairSimilarity:
    """Per-pair, per-layer cosines between hub and L2 last-token layer outputs."""

    raw: np.ndarray  # [pair, layer]
    centred: np.ndarray  # [pair, layer]


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
