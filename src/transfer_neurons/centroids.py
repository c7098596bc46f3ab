"""Centroids of latent spaces (SPEC.md 3), from raw layer outputs at the last real token.

C1, the shared semantic space: mean over English-L2 pairs of (h(e) + h(x)) / 2.
C2, an L2-specific space: mean over L2 sentences of h(x).
Means are accumulated as float64 sums, so memory does not grow with the data, and
the sums all-reduce across processes when torch.distributed is running.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from . import distributed
from .capture import iter_internals
from .errors import TransferNeuronsError
from .models.loading import LoadedModel


def mean_layer_outputs(
    lm: LoadedModel, texts: Sequence[str], batch_size: int = 16, progress: str | None = "centroid"
) -> torch.Tensor:
    """Mean raw output of every layer over sentences (this rank's share, then reduced): [layer, d_model]."""
    view = lm.view
    total = torch.zeros(view.num_layers, view.d_model, dtype=torch.float64)
    count = torch.zeros((), dtype=torch.float64)
    shard = distributed.shard(texts)
    if shard:
        for _, batch in iter_internals(lm, shard, ("h",), batch_size, progress=progress):
            total += batch.h.double().sum(dim=0)
            count += batch.h.shape[0]
    total, count = distributed.all_reduce_sum(total, count)
    if count == 0:
        raise TransferNeuronsError("no sentences to compute a centroid from")
    return (total / count).float()


def shared_centroids(
    lm: LoadedModel, hub_texts: Sequence[str], l2_texts: Sequence[str], batch_size: int = 16
) -> torch.Tensor:
    """Type-1 centroids C1[l] = mean over pairs of (h[l](e) + h[l](x)) / 2: [layer, d_model]."""
    if len(hub_texts) != len(l2_texts):
        raise TransferNeuronsError(f"parallel sides differ in length: {len(hub_texts)} vs {len(l2_texts)}")
    hub = mean_layer_outputs(lm, hub_texts, batch_size, progress="centroid (hub side)")
    l2 = mean_layer_outputs(lm, l2_texts, batch_size, progress="centroid (L2 side)")
    return (hub + l2) / 2


def language_centroids(lm: LoadedModel, texts: Sequence[str], batch_size: int = 16) -> torch.Tensor:
    """Type-2 centroids C2[l] = mean over L2 sentences of h[l](x): [layer, d_model]."""
    return mean_layer_outputs(lm, texts, batch_size, progress="centroid (L2)")
