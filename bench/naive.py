"""A deliberately naive neuron scorer: a literal reading of SPEC.md 4, the benchmarks' baseline.

One forward pass per sentence, and for every layer the [d_ff, d_model] array of shifted
states b + a_i v_i is built and compared with the centroid by cosine. It gives the same
scores as `transfer_neurons.scoring.score_neurons` and costs d_ff x d_model work per
sentence and layer on top of the forward pass (about four times what the MLP's own
output projection costs on one token), where the closed form needs one [d_model] x
[d_model, d_ff] product. Everything stays in torch, so no NumPy/BLAS threads compete.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn.functional import cosine_similarity

from transfer_neurons.capture import capture
from transfer_neurons.models.loaded import LoadedModel


@torch.no_grad()
def naive_scores(lm: LoadedModel, centroids: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
    """Mean signed score of every neuron over the sentences, the slow way: [layer, d_ff] float64."""
    view = lm.view
    values = [view.value_vectors(layer) for layer in range(view.num_layers)]  # [d_ff, d_model] each
    centroids = centroids.float()
    total = torch.zeros(view.num_layers, view.d_ff, dtype=torch.float64)
    for text in texts:
        got = capture(lm, [text], want=("m", "a"), batch_size=1, progress=None)  # one forward
        for layer in range(view.num_layers):
            b = got.m[0, layer]  # [d_model]
            c = centroids[layer][None, :]  # [1, d_model]
            shifted = b[None, :] + got.a[0, layer][:, None] * values[layer]  # [d_ff, d_model]
            after = cosine_similarity(shifted, c, dim=1)  # [d_ff]
            before = cosine_similarity(b[None, :], c, dim=1)  # [1]
            total[layer] += (after - before).double()
    return total / len(texts)
