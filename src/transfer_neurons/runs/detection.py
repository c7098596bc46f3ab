"""Detection as a run: centroids of the type's latent space, every neuron's score, the ranked neurons, their figure.

`detect` and the study's detection stages both call `run_detection`; `centroids` and
`run_detection` both take their centroids from `centroids_for`, the one place where the
type decides which data a centroid is the mean of.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data import ParallelPairs, Sentences
from ..detection import Detection, compute_centroids, detect, write_detection
from ..errors import TransferNeuronsError
from ..models.loaded import LoadedModel
from ..outputs import save_figure
from ..report.figures import detection_figure
from .common import Summary


def centroids_for(
    lm: LoadedModel, neuron_type: str, source: ParallelPairs | Sentences, batch_size: int | str = 16
) -> tuple[torch.Tensor, dict]:
    """C1 from hub–L2 pairs (Type-1) or C2 from L2 sentences (Type-2): [layer, d_model], and what they came from."""
    if neuron_type == "type1":
        if not isinstance(source, ParallelPairs):
            raise TransferNeuronsError("Type-1 centroids are the mean over hub–L2 parallel pairs; got monolingual sentences")
        cents = compute_centroids(lm, "type1", source.l2, source.hub, batch_size)
        return cents, {"centroid_data": source.name, "num_centroid_pairs": len(source), "hub_lang": source.hub_lang}
    texts = source.l2 if isinstance(source, ParallelPairs) else source.texts
    cents = compute_centroids(lm, "type2", texts, batch_size=batch_size)
    return cents, {"centroid_data": source.name, "num_centroid_sentences": len(texts)}


@dataclass
class DetectInputs:
    """What a detection reads: the model, the type and language, scoring sentences and a centroid source."""

    lm: LoadedModel
    neuron_type: str
    lang: str
    score: Sentences  # L2 sentences the scores are averaged over
    centroids: ParallelPairs | Sentences | torch.Tensor  # data to average, or ready centroids [layer, d_model]
    centroid_meta: dict = field(default_factory=dict)  # what ready centroids came from
    layers: Sequence[int] | None = None  # candidate layers (None: the type's default)
    top_n: int | None = None  # None: the paper's share of the model's neurons
    batch_size: int | str = 16
    seed: int = 0


def run_detection(inputs: DetectInputs, out: Path) -> Summary:
    """Score, rank and write a detection folder with its per-layer figure."""
    lm = inputs.lm
    if isinstance(inputs.centroids, torch.Tensor):
        cents, data = inputs.centroids, dict(inputs.centroid_meta)
    else:
        cents, data = centroids_for(lm, inputs.neuron_type, inputs.centroids, inputs.batch_size)
    det = detect(lm, inputs.neuron_type, inputs.lang, inputs.score.texts, cents, inputs.layers, inputs.top_n,
                 inputs.batch_size)
    det.meta.update(data, score_data=inputs.score.name, seed=inputs.seed)
    write_detection(det, out)
    save_figure(out / "layers.png", detection_figure(det, lm.name))
    best = ", ".join(f"L{l}/{i}" for l, i in det.neurons[:5])
    summary = detection_summary(det)
    summary.data.update(lm.view.precision(lm.name))  # dtype and quantisation, for the report's banner
    summary.text = (f"{det.neuron_type} {det.lang}: top {len(det.neurons)} of layers {det.layers[0]}-{det.layers[-1]} "
                    f"({det.meta['top_n_rule']}); best: {best}")
    summary.files = ["scores.npy", "magnitudes.npy", "centroids.npy", "neurons.json", "meta.json", "layers.png"]
    return summary


def detection_summary(det: Detection) -> Summary:
    """Counts, layers, top neurons and magnitudes of one detection, for the report."""
    layers = det.neurons[:, 0]
    cand = det.magnitudes[list(det.layers)]
    chosen = det.magnitudes[det.neurons[:, 0], det.neurons[:, 1]]
    top = [{"layer": int(l), "neuron": int(i), "score": float(det.scores[l, i]), "magnitude": float(det.magnitudes[l, i])}
           for l, i in det.neurons[:10]]
    return Summary(
        title=f"{det.neuron_type} neurons, {det.lang}", type=det.neuron_type, lang=det.lang, figures=["layers.png"],
        data={
            "count": int(len(det.neurons)), "candidate_layers": list(det.layers),
            "per_layer": {int(l): int((layers == l).sum()) for l in det.layers},
            "top": top, "top_n_rule": det.meta.get("top_n_rule"),
            "num_score_sentences": det.meta.get("num_score_sentences"),
            "num_centroid_items": det.meta.get("num_centroid_pairs", det.meta.get("num_centroid_sentences")),
            "magnitude_ratio": float(chosen.mean() / cand.mean()) if cand.mean() > 0 else None,
            "model": det.meta.get("model"), "num_layers": det.meta.get("num_layers"),
            "d_ff": det.meta.get("d_ff"), "d_model": det.meta.get("d_model"),
        },
    )
