"""Transfer-neuron detection end to end, and its files (the contract other commands read).

A detection folder holds `scores.npy` and `magnitudes.npy` ([layer, d_ff] float32),
`centroids.npy` ([layer, d_model] float32, raw layer outputs), `neurons.json` (the
ranked top-n within the candidate layers: [{"layer", "neuron", "score"}], 0-based)
and `meta.json` (model, type, language, data, candidate layers, top-n, versions, timings).
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import __version__, distributed
from .centroids import language_centroids, shared_centroids
from .errors import TransferNeuronsError
from .models.loading import LoadedModel
from .outputs import load_npy, save_npy, write_json
from .scoring import default_candidate_layers, default_top_n, rank_neurons, score_neurons

NEURON_TYPES = ("type1", "type2")


@dataclass
class Detection:
    """Scores of all neurons and the ranked transfer neurons of one type and language."""

    neuron_type: str
    lang: str
    scores: np.ndarray  # [layer, d_ff]
    magnitudes: np.ndarray  # [layer, d_ff]
    centroids: np.ndarray  # [layer, d_model]
    layers: tuple[int, ...]  # candidate layers
    neurons: np.ndarray  # [top_n, 2] (layer, neuron), best first
    meta: dict = field(default_factory=dict)


def compute_centroids(
    lm: LoadedModel,
    neuron_type: str,
    l2_texts: Sequence[str],
    hub_texts: Sequence[str] | None = None,
    batch_size: int = 16,
) -> torch.Tensor:
    """C1 from hub–L2 pairs (Type-1) or C2 from L2 sentences (Type-2): [layer, d_model]."""
    if neuron_type == "type1":
        if hub_texts is None:
            raise TransferNeuronsError("Type-1 centroids need parallel pairs: hub-language and L2 sentences")
        return shared_centroids(lm, hub_texts, l2_texts, batch_size)
    if neuron_type == "type2":
        return language_centroids(lm, l2_texts, batch_size)
    raise TransferNeuronsError(f"--type must be one of {NEURON_TYPES}, got {neuron_type!r}")


def detect(
    lm: LoadedModel,
    neuron_type: str,
    lang: str,
    score_texts: Sequence[str],
    centroids: torch.Tensor,
    layers: Sequence[int] | None = None,
    top_n: int | None = None,
    batch_size: int = 16,
) -> Detection:
    """Score every neuron against the centroids and rank the candidates (SPEC.md 4)."""
    start = time.perf_counter()
    view = lm.view
    layers = tuple(layers) if layers is not None else default_candidate_layers(view.num_layers, neuron_type)
    rule = "user"
    if top_n is None:
        top_n, rule = default_top_n(view.num_layers, view.d_ff)
    result = score_neurons(lm, torch.as_tensor(centroids), score_texts, batch_size, progress=f"score {neuron_type} {lang}")
    neurons = rank_neurons(result.scores, layers, top_n)
    meta = {
        "model": lm.name,
        "type": neuron_type,
        "language": lang,
        "num_layers": view.num_layers,
        "d_ff": view.d_ff,
        "d_model": view.d_model,
        "candidate_layers": list(layers),
        "top_n": int(top_n),
        "top_n_rule": rule,
        "num_score_sentences": result.num_sentences,
        "processes": distributed.world_size(),
        "seconds_scoring": round(time.perf_counter() - start, 3),
        "versions": versions(),
    }
    return Detection(
        neuron_type, lang, result.scores, result.magnitudes, np.asarray(centroids, dtype=np.float32), layers, neurons, meta
    )


def versions() -> dict[str, str]:
    """Versions that results depend on, recorded in every meta.json."""
    import transformers

    return {
        "transfer_neurons": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def write_detection(det: Detection, out: str | Path) -> Path:
    """Write a detection folder (rank 0 only under torch.distributed)."""
    out = Path(out)
    if not distributed.is_main():
        return out
    save_npy(out / "scores.npy", det.scores.astype(np.float32))
    save_npy(out / "magnitudes.npy", det.magnitudes.astype(np.float32))
    save_npy(out / "centroids.npy", det.centroids.astype(np.float32))
    ranked = [
        {"layer": int(l), "neuron": int(i), "score": float(det.scores[l, i])} for l, i in det.neurons
    ]
    write_json(out / "neurons.json", ranked)
    write_json(out / "meta.json", det.meta)
    return out


def read_neurons(path: str | Path, top_k: int | None = None) -> np.ndarray:
    """Read a neurons.json (or a detection folder holding one) as [n, 2]; optionally the first k."""
    path = Path(path)
    if path.is_dir():
        path = path / "neurons.json"
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
        neurons = np.array([[int(r["layer"]), int(r["neuron"])] for r in rows], dtype=np.int64).reshape(-1, 2)
    except FileNotFoundError:
        raise TransferNeuronsError(f"{path}: no such neurons file (expected neurons.json from `detect`)") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise TransferNeuronsError(
            f"{path}: not a neurons.json from `detect` (expected a list of "
            f'{{"layer": int, "neuron": int, "score": float}}): {err}'
        ) from None
    if top_k is not None:
        if top_k < 1:
            raise TransferNeuronsError(f"--top-k must be at least 1, got {top_k}")
        neurons = neurons[:top_k]
    return neurons


def read_detection(folder: str | Path, top_k: int | None = None) -> Detection:
    """Read a detection folder written by write_detection."""
    folder = Path(folder)
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        raise TransferNeuronsError(f"{folder}: not a detection folder (no meta.json); run `transfer-neurons detect`")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    try:
        return Detection(
            neuron_type=meta["type"],
            lang=meta["language"],
            scores=load_npy(folder / "scores.npy"),
            magnitudes=load_npy(folder / "magnitudes.npy"),
            centroids=load_npy(folder / "centroids.npy"),
            layers=tuple(meta["candidate_layers"]),
            neurons=read_neurons(folder, top_k),
            meta=meta,
        )
    except (KeyError, OSError, ValueError) as err:
        raise TransferNeuronsError(f"{folder}: incomplete detection folder ({err})") from None
