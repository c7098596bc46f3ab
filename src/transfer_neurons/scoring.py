"""Neuron scores and rankings (method.md §4), exact and at forward-pass speed.

For a layer with centroid C, a sentence's pre-MLP state b and effective activations a,
the score of neuron i is cos(b + a_i v_i, C) - cos(b, C). With p_i = v_i.C,
q_i = v_i.b and n_i = |v_i|^2 the shifted cosine is

    (b.C + a_i p_i) / (|C| sqrt(|b|^2 + 2 a_i q_i + a_i^2 n_i))

so one [batch, d_model] x [d_model, d_ff] product per layer (q) is all the extra work:
no [d_ff, d_model] array per sentence. Sums over sentences are kept in float64 on each
layer's device, so memory is layers x d_ff whatever the number of sentences, and only
those sums reach the host, once per run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from . import distributed
from .capture import LayerInternals, as_texts, batch_size_for, iter_layer_internals, stack_on
from .errors import TransferNeuronsError
from .models.loaded import LoadedModel

PAPER_TOP_N = 1000
PAPER_NEURONS = 458_752  # 32 layers x 14,336 neurons (LLaMA3-8B, Mistral-7B, Aya-expanse-8B)
TYPE1_SHARE = 0.625  # Type-1 candidates: the first 62.5 % of layers (paper: 20 of 32)
_TINY = 1e-30
_CHUNK = 2048  # neurons whose value vectors are in float64 at once while setting up
SCORE_BYTES = 64 << 20  # one float64 [layers, batch, d_ff] array of a scoring step (a few exist at once)


@dataclass
class NeuronScores:
    """Mean score and contribution norm of every neuron of every layer."""

    scores: np.ndarray  # [layer, d_ff] float32, mean signed score
    magnitudes: np.ndarray  # [layer, d_ff] float32, mean |eff_a| * |eff_v|
    num_sentences: int


class _LayerTerms:
    """Per-layer constants of the closed form: p = V C, n = |v|^2, |C|, on the weight's device (float64).

    Value vectors are converted _CHUNK neurons at a time, so setting up needs tens of MB
    beside the weights, not a float64 copy of a layer's [d_ff, d_model] weight (470 MB on LLaMA3-8B).
    """

    def __init__(self, lm: LoadedModel, centroids: torch.Tensor):
        self.p, self.n, self.c_norm, self.c = [], [], [], []
        view = lm.view
        for layer in range(view.num_layers):
            device = view.out_proj(layer).weight.device
            c = centroids[layer].to(device, torch.float64)
            p, n = [], []
            for start in range(0, view.d_ff, _CHUNK):
                values = view.value_vectors(layer, slice(start, start + _CHUNK)).double()  # [chunk, d_model]
                p.append(values @ c)
                n.append(values.pow(2).sum(dim=1))
            self.p.append(torch.cat(p))
            self.n.append(torch.cat(n))
            self.c_norm.append(c.norm())
            self.c.append(c)


class _GroupTerms:
    """The terms of consecutive layers on one device, stacked: p, n [g, d_ff], C [g, d_model], |C| [g], value gains."""

    def __init__(self, lm: LoadedModel, terms: _LayerTerms, layers: range):
        self.layers = layers
        self.p = torch.stack(terms.p[layers.start : layers.stop])
        self.n = torch.stack(terms.n[layers.start : layers.stop])
        self.c = torch.stack(terms.c[layers.start : layers.stop])
        self.c_norm = torch.stack(terms.c_norm[layers.start : layers.stop])
        self.gains = lm.view.value_gains(layers)  # [g, d_model] or None


def layer_groups(lm: LoadedModel, batch_size: int) -> list[range]:
    """Consecutive layers on one weight device whose float64 [g, batch, d_ff] work fits SCORE_BYTES.

    Scoring a group is one set of element-wise kernels instead of one per layer: on a GPU a
    small model's step is bound by kernel launches, not arithmetic.
    """
    view = lm.view
    most = max(1, SCORE_BYTES // (8 * batch_size * view.d_ff))
    groups: list[range] = []
    start = 0
    for layer in range(1, view.num_layers + 1):
        if (layer == view.num_layers or layer - start == most
                or view.out_proj(layer).weight.device != view.out_proj(start).weight.device):
            groups.append(range(start, layer))
            start = layer
    return groups


def group_score_sum(lm: LoadedModel, group: _GroupTerms, batch: LayerInternals) -> tuple[torch.Tensor, torch.Tensor]:
    """Sums over a batch of every neuron's score and of |a| in a group of layers: -> [g, d_ff] twice.

    The batch's m and a stay on the group's device (capture leaves them there). cos(b, C)
    is the same for every neuron, so its batch sum is subtracted once, and 1/|C| is
    applied to the sums: the [g, n, d_ff] work is a few in-place float64 passes.
    """
    m = batch.block("m", group.layers)  # [g, n, d_model] float32
    q = lm.view.dot_values(group.layers, m, group.gains).double()  # [g, n, d_ff]  q_i = v_i . b
    b = m.double()
    acts = batch.block("a", group.layers).double()  # [g, n, d_ff]
    bc = torch.bmm(b, group.c[:, :, None])  # [g, n, 1]
    bb = b.pow(2).sum(dim=2, keepdim=True)  # [g, n, 1]
    base = (bc / bb.clamp_min(_TINY).sqrt()).sum(dim=(1, 2))  # [g] sum of |C| cos(b, C)
    abs_a = acts.abs().sum(dim=1)  # [g, d_ff]
    # |b + a_i v_i|^2 = |b|^2 + a_i (2 q_i + a_i n_i)
    inv_norm = torch.addcmul(bb, acts, q.addcmul_(acts, group.n[:, None], value=0.5), value=2)
    inv_norm = inv_norm.clamp_min_(_TINY).rsqrt_()
    shifted = torch.addcmul(bc, acts, group.p[:, None]).mul_(inv_norm).sum(dim=1)  # [g, d_ff] sum of |C| cos(b + a_i v_i, C)
    return (shifted - base[:, None]) / group.c_norm[:, None], abs_a


def score_neurons(
    lm: LoadedModel,
    centroids: torch.Tensor,
    texts: Sequence[str],
    batch_size: int | str = 16,
    progress: str | None = "score",
) -> NeuronScores:
    """Mean score and contribution norm of all neurons over the scoring sentences.

    centroids: [layer, d_model] (C1 for Type-1, C2 for Type-2); batch_size may be "auto".
    Internals stay on each layer's device; the [layer, d_ff] sums come to the host once.
    Under torch.distributed each rank scores its shard and the sums are all-reduced.
    """
    view = lm.view
    centroids = torch.as_tensor(centroids).detach()  # a NumPy array or a tensor that tracks gradients works too
    if centroids.shape != (view.num_layers, view.d_model):
        raise TransferNeuronsError(
            f"centroids have shape {tuple(centroids.shape)}, the model needs "
            f"({view.num_layers}, {view.d_model})", option="centroids"
        )
    terms = _LayerTerms(lm, centroids)
    count = 0
    shard = distributed.shard(as_texts(texts))
    size = batch_size_for(lm, batch_size, shard) if shard else 1
    groups = [_GroupTerms(lm, terms, layers) for layers in layer_groups(lm, size)]
    score_sums = [torch.zeros_like(group.n) for group in groups]  # [g, d_ff] float64 per group, on its device
    abs_a_sums = [torch.zeros_like(group.n) for group in groups]  # [g, d_ff] float64 per group, likewise
    if shard:
        for _, batch in iter_layer_internals(lm, shard, ("m", "a"), size, progress=progress):
            for group, score_sum, abs_a_sum in zip(groups, score_sums, abs_a_sums):
                scores, abs_a = group_score_sum(lm, group, batch)
                score_sum += scores
                abs_a_sum += abs_a
            count += len(batch.a[0])
    score_sum, abs_a_sum = (torch.cat([s.to("cpu") for s in sums]) for sums in (score_sums, abs_a_sums))
    value_norms = stack_on(terms.n, "cpu")
    score_sum, abs_a_sum, total = distributed.all_reduce_sum(
        score_sum, abs_a_sum, torch.tensor(count, dtype=torch.float64)
    )
    count = int(total)
    if count == 0:
        raise TransferNeuronsError("no sentences to score neurons on")
    return NeuronScores(
        scores=(score_sum / count).float().numpy(),  # [layer, d_ff]
        magnitudes=(abs_a_sum / count * value_norms.sqrt()).float().numpy(),
        num_sentences=count,
    )


def default_candidate_layers(num_layers: int, neuron_type: str) -> tuple[int, ...]:
    """Type-1: the first 62.5 % of layers (rounded); Type-2: the rest (method.md §4)."""
    split = int(np.floor(num_layers * TYPE1_SHARE + 0.5))
    if neuron_type == "type1":
        return tuple(range(split))
    if neuron_type == "type2":
        return tuple(range(split, num_layers))
    raise TransferNeuronsError(f"neuron_type must be 'type1' or 'type2', got {neuron_type!r}", option="neuron_type")


def parse_layers(spec: str, num_layers: int, option: str = "layers") -> tuple[int, ...]:
    """Parse a layer range START:END (0-based, END exclusive, either may be empty) of a model's layers;
    errors name `option`, the parameter that held it (layers, mid_layers)."""
    parts = spec.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        start = int(parts[0]) if parts[0] else 0
        end = int(parts[1]) if parts[1] else num_layers
    except ValueError:
        raise TransferNeuronsError(f"{option} {spec!r}: expected START:END, e.g. 0:11 (0-based, END exclusive)",
                                   option=option) from None
    if not 0 <= start < end <= num_layers:
        raise TransferNeuronsError(f"{option} {spec!r}: expected 0 <= START < END <= {num_layers} on a "
                                   f"{num_layers}-layer model", option=option)
    return tuple(range(start, end))


def check_layers(layers: Sequence[int], num_layers: int, option: str = "layers") -> np.ndarray:
    """Candidate layers as sorted distinct int64 indices of a num_layers-layer model (at least one)."""
    arr = np.asarray(list(layers) if not isinstance(layers, (str, bytes)) else [layers])
    if arr.size == 0 or arr.ndim != 1 or arr.dtype.kind not in "iu" or len(set(arr.tolist())) != arr.size \
            or arr.min() < 0 or arr.max() >= num_layers:
        raise TransferNeuronsError(f"{option}: expected distinct layer indices in 0..{num_layers - 1}, got "
                                   f"{layers!r}", option=option)
    return np.sort(arr.astype(np.int64))


def check_top_n(top_n: int, option: str = "top_n", minimum: int = 1) -> int:
    """A neuron count of at least `minimum`."""
    if isinstance(top_n, bool) or not isinstance(top_n, (int, np.integer)) or top_n < minimum:
        raise TransferNeuronsError(f"{option}: expected an integer of at least {minimum}, got {top_n!r}", option=option)
    return int(top_n)


def default_top_n(num_layers: int, d_ff: int) -> tuple[int, str]:
    """Neurons to keep of EITHER type: 1000 per 458,752 neurons of the model, as in the paper.

    The paper keeps 1000 of each type on 32-layer models with d_ff 14,336; other models
    keep the same share of all their neurons, so both types get the same n.
    """
    neurons = num_layers * d_ff
    n = max(1, round(PAPER_TOP_N * neurons / PAPER_NEURONS))
    return n, f"1000 per {PAPER_NEURONS:,} neurons: {num_layers} layers x {d_ff:,} = {neurons:,}"


def rank_neurons(scores: np.ndarray, layers: Sequence[int], top_n: int) -> np.ndarray:
    """The top-n neurons by score within the candidate layers, best first: [n, 2] (layer, neuron).

    Ties are broken by (layer, neuron), so rankings are identical across runs.
    """
    scores = torch.as_tensor(scores).detach().cpu().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores)
    layers = check_layers(layers, scores.shape[0])
    top_n = check_top_n(top_n, minimum=0)
    sub = scores[layers]  # [candidate layer, d_ff]
    layer_idx, neuron_idx = np.meshgrid(layers, np.arange(scores.shape[1]), indexing="ij")
    order = np.lexsort((neuron_idx.ravel(), layer_idx.ravel(), -sub.ravel().astype(np.float64)))
    top = order[:top_n]
    return np.stack([layer_idx.ravel()[top], neuron_idx.ravel()[top]], axis=1)
