"""Centroids of latent spaces (method.md §3), from raw layer outputs at the last real token.

C1, the shared semantic space: mean over English-L2 pairs of (h(e) + h(x)) / 2.
C2, an L2-specific space: mean over L2 sentences of h(x).
Means are accumulated as float64 sums on each layer's device, so memory does not grow
with the data and only the [layer, d_model] sums reach the host, once; the sums
all-reduce across processes when torch.distributed is running.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from . import distributed
from .capture import iter_layer_internals, stack_on
from .errors import TransferNeuronsError
from .models.loaded import LoadedModel


def mean_layer_outputs(
    lm: LoadedModel, texts: Sequence[str], batch_size: int | str = 16, progress: str | None = "centroid"
) -> torch.Tensor:
    """Mean raw output of every layer over sentences (this rank's share, then reduced): [layer, d_model]."""
    view = lm.view
    total = torch.zeros(view.num_layers, view.d_model, dtype=torch.float64)
    count = 0
    shard = distributed.shard(texts)
    if shard:
        sums = None  # per layer [d_model] float64, on the layer's device
        for _, batch in iter_layer_internals(lm, shard, ("h",), batch_size, progress=progress):
            if sums is None:
                sums = [torch.zeros(view.d_model, dtype=torch.float64, device=h.device) for h in batch.h]
            for layer_sum, h in zip(sums, batch.h):  # h: [n, d_model]
                layer_sum += h.sum(dim=0, dtype=torch.float64)
            count += len(batch.h[0])
        total = stack_on(sums, "cpu")
    total, count = distributed.all_reduce_sum(total, torch.tensor(count, dtype=torch.float64))
    if count == 0:
        raise TransferNeuronsError("no sentences to compute a centroid from")
    return (total / count).float()


def shared_centroids(
    lm: LoadedModel, hub_texts: Sequence[str], l2_texts: Sequence[str], batch_size: int | str = 16
) -> torch.Tensor:
    """Type-1 centroids C1[l] = mean over pairs of (h[l](e) + h[l](x)) / 2: [layer, d_model]."""
    if len(hub_texts) != len(l2_texts):
        raise TransferNeuronsError(f"parallel sides differ in length: {len(hub_texts)} vs {len(l2_texts)}")
    hub = mean_layer_outputs(lm, hub_texts, batch_size, progress="centroid (hub side)")
    l2 = mean_layer_outputs(lm, l2_texts, batch_size, progress="centroid (L2 side)")
    return (hub + l2) / 2


def language_centroids(lm: LoadedModel, texts: Sequence[str], batch_size: int | str = 16) -> torch.Tensor:
    """Type-2 centroids C2[l] = mean over L2 sentences of h[l](x): [layer, d_model]."""
    return mean_layer_outputs(lm, texts, batch_size, progress="centroid (L2)")
