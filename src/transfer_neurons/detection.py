"""Transfer-neuron detection end to end, and its files (the contract other commands read).

A detection folder holds `scores.npy` and `magnitudes.npy` ([layer, d_ff] float32),
`centroids.npy` ([layer, d_model] float32, raw layer outputs), `neurons.json` (the
ranked top-n within the candidate layers, 0-based, schema version 2 of docs/neurons.md:
model id, revision and fingerprint, the neuron's module, TransformerLens and nnsight names)
and `meta.json` (model, its revision and fingerprint, type, language, data, candidate
layers, top-n, versions, timings).
"""

from __future__ import annotations

import json
import logging
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import distributed
from ._version import __version__
from .capture import as_texts, batch_size_for
from .centroids import language_centroids, shared_centroids
from .errors import TransferNeuronsError
from .models.adapters import ModelView
from .models.loaded import LoadedModel
from .neuron_sets import NeuronSet, model_record, neuron_module, read_neuron_set, to_json
from .outputs import load_npy, save_npy, staged_folder, write_json
from .scoring import check_layers, check_top_n, default_candidate_layers, default_top_n, rank_neurons, score_neurons

NEURON_TYPES = ("type1", "type2")
SHAPE_KEYS = ("num_layers", "d_ff", "d_model")
"""The model shape a detection's meta.json records; a detection applies only to a model of this shape."""
LOG = logging.getLogger("transfer_neurons")


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
    batch_size: int | str = 16,
) -> torch.Tensor:
    """C1 from hub–L2 pairs (Type-1) or C2 from L2 sentences (Type-2): [layer, d_model]."""
    l2_texts = as_texts(l2_texts, "l2_texts")
    hub_texts = None if hub_texts is None else as_texts(hub_texts, "hub_texts")
    if neuron_type == "type1":
        if hub_texts is None:
            raise TransferNeuronsError("Type-1 centroids need parallel pairs: hub-language and L2 sentences")
        return shared_centroids(lm, hub_texts, l2_texts, batch_size)
    if neuron_type == "type2":
        return language_centroids(lm, l2_texts, batch_size)
    raise TransferNeuronsError(f"neuron_type must be one of {NEURON_TYPES}, got {neuron_type!r}", option="neuron_type")


def detect(
    lm: LoadedModel,
    neuron_type: str,
    lang: str,
    score_texts: Sequence[str],
    centroids: torch.Tensor,
    layers: Sequence[int] | None = None,
    top_n: int | None = None,
    batch_size: int | str = 16,
) -> Detection:
    """Score every neuron against the centroids and rank the candidates (method.md §4); batch_size may be "auto"."""
    start = time.perf_counter()
    view = lm.view
    score_texts = as_texts(score_texts, "score_texts")
    default_layers = default_candidate_layers(view.num_layers, neuron_type)  # checks neuron_type first
    layers = tuple(check_layers(layers, view.num_layers).tolist()) if layers is not None else default_layers
    rule = "user"
    if top_n is None:
        top_n, rule = default_top_n(view.num_layers, view.d_ff)
    top_n = check_top_n(top_n)
    candidates = len(layers) * view.d_ff
    if top_n > candidates:
        LOG.warning("--top-n %d is more than the %d candidate neurons (%d layers x %d); keeping all %d",
                    top_n, candidates, len(layers), view.d_ff, candidates)
        top_n, rule = candidates, f"{rule}, clamped to the {candidates} candidates"
    centroids = torch.as_tensor(centroids).detach()
    check_finite(centroids, "centroids", view)
    batch_size = batch_size_for(lm, batch_size, score_texts)
    result = score_neurons(lm, centroids, score_texts, batch_size, progress=f"score {neuron_type} {lang}")
    check_finite(torch.as_tensor(result.scores), "scores", view)
    neurons = rank_neurons(result.scores, layers, top_n)
    meta = {
        "model": lm.name,
        "model_revision": lm.revision,
        "model_fingerprint": lm.fingerprint(),
        "model_type": getattr(lm.model.config, "model_type", None),
        "neuron_module": neuron_module(view.adapter),
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
        "batch_size": batch_size,
        **view.precision(lm.name),
        "seconds_scoring": round(time.perf_counter() - start, 3),
        "versions": versions(),
    }
    return Detection(
        neuron_type, lang, result.scores, result.magnitudes, np.asarray(centroids, dtype=np.float32), layers, neurons, meta
    )


def check_finite(values: torch.Tensor, what: str, view: ModelView) -> None:
    """Refuse NaN or inf centroids or scores: ranking them would pick arbitrary neurons. The usual cause
    is a float16 model whose activations overflow, so then the error suggests another dtype."""
    bad = int((~torch.isfinite(values)).sum())
    if not bad:
        return
    message = f"{what}: {bad:,} of {values.numel():,} values are not finite (NaN or inf)"
    if view.precision()["dtype"] == "float16":
        message += "; the model runs in float16, whose activations overflow easily: use dtype='bfloat16' or 'float32'"
    raise TransferNeuronsError(message, mentions=("dtype",))


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
    """Write a detection folder (rank 0 only under torch.distributed: staged_folder sees to it)."""
    out = Path(out).expanduser()
    ranked = to_json(NeuronSet(
        det.neurons, det.scores[det.neurons[:, 0], det.neurons[:, 1]] if len(det.neurons) else np.zeros(0),
        model=model_record(det.meta), module=det.meta.get("neuron_module"), neuron_type=det.neuron_type, language=det.lang,
    ))
    with staged_folder(out) as tmp:  # all five files or none: a full disk leaves no partial detection
        save_npy(tmp / "scores.npy", det.scores.astype(np.float32))
        save_npy(tmp / "magnitudes.npy", det.magnitudes.astype(np.float32))
        save_npy(tmp / "centroids.npy", det.centroids.astype(np.float32))
        write_json(tmp / "neurons.json", ranked)
        write_json(tmp / "meta.json", det.meta)
    return out


def read_neurons(path: str | Path, top_k: int | None = None) -> np.ndarray:
    """Read neurons as [n, 2], optionally the first k: a neurons.json (version 2, or version 1's list of
    {layer, neuron, score}), a detection folder holding one, or a pairs JSON/pickle (neuron_sets)."""
    neurons = read_neuron_set(path).neurons
    if top_k is not None:
        top_k = check_top_n(top_k, "top_k")
        if top_k > len(neurons):
            LOG.warning("top_k %d is more than the %d neurons of %s; using all %d", top_k, len(neurons), path,
                        len(neurons))
        neurons = neurons[:top_k]
    return neurons


def read_meta(folder: str | Path, name: str = "meta.json") -> dict:
    """The meta.json of a detection folder (model, shape, type, language, ...), or another such file."""
    folder = Path(folder)
    meta_path = folder / name
    if not meta_path.is_file():
        raise TransferNeuronsError(f"{folder}: not a detection folder (no meta.json); run `transfer-neurons detect`")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise TransferNeuronsError(f"{meta_path}: not a readable meta.json ({err}); run `transfer-neurons detect` again") from None
    if not isinstance(meta, dict):
        raise TransferNeuronsError(f"{meta_path}: expected a JSON object of detection facts, got {type(meta).__name__}")
    return meta


def read_centroids(path: str | Path, neuron_type: str, lang: str, hub_lang: str = "en") -> tuple[torch.Tensor, dict]:
    """A saved centroids.npy [layer, d_model] and the facts beside it (centroids_meta.json from `centroids`, or
    meta.json from `detect`; {} when neither is there). Refused if it holds NaN or inf, or if those facts say
    another type, language or (Type-1) hub language; check_detection_model checks their model. A folder
    (from `centroids --out` or `detect --out`) stands for its centroids.npy."""
    path = Path(path) / "centroids.npy" if Path(path).is_dir() else Path(path)
    try:
        cents = torch.from_numpy(load_npy(path))
    except (OSError, ValueError) as err:
        raise TransferNeuronsError(f"centroids {path}: cannot read a centroids.npy ({err})", option="centroids") from None
    if cents.dim() != 2 or not torch.isfinite(cents).all():
        raise TransferNeuronsError(f"centroids {path}: expected a finite [layer, d_model] array, got shape "
                                   f"{tuple(cents.shape)} with {int((~torch.isfinite(cents)).sum())} NaN or inf",
                                   option="centroids")
    for name in ("centroids_meta.json", "meta.json"):
        if (path.parent / name).is_file():
            facts = read_meta(path.parent, name)
            made_for = (facts.get("type"), facts.get("language"))
            if made_for != (neuron_type, lang):
                raise TransferNeuronsError(
                    f"centroids {path}: computed for {made_for[0]} {made_for[1]} ({name} beside it), "
                    f"not {neuron_type} {lang}", option="centroids")
            if neuron_type == "type1" and facts.get("hub_lang", hub_lang) != hub_lang:
                raise TransferNeuronsError(
                    f"centroids {path}: computed from {facts['hub_lang']}–{lang} pairs ({name} beside it), not "
                    f"{hub_lang}–{lang}; give hub_lang={facts['hub_lang']!r} or compute them again",
                    option="centroids", mentions=("hub_lang",))
            return cents, facts
    return cents, {}


def read_detection(folder: str | Path, top_k: int | None = None) -> Detection:
    """Read a detection folder written by write_detection."""
    folder = Path(folder).expanduser()
    meta = read_meta(folder)
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
    except KeyError as err:
        raise TransferNeuronsError(f"{folder / 'meta.json'}: no {err} field; expected the meta.json `detect` writes "
                                   "(type, language, candidate_layers, ...)") from None
    except (OSError, TypeError, ValueError) as err:
        raise TransferNeuronsError(f"{folder}: incomplete detection folder ({err})") from None


def model_shape(lm: LoadedModel) -> dict[str, int]:
    """num_layers, d_ff and d_model of a loaded model, as meta.json records them."""
    return {"num_layers": lm.view.num_layers, "d_ff": lm.view.d_ff, "d_model": lm.view.d_model}


def _describe(name: object, shape: dict) -> str:
    """'name' (L layers, d_ff F, d_model D)."""
    return f"{name!r} ({shape.get('num_layers', '?')} layers, d_ff {shape.get('d_ff', '?')}, d_model {shape.get('d_model', '?')})"


def weights_id(fingerprint: object) -> str | None:
    """What names the weights in a model fingerprint: a content hash, a hub commit or an in-memory name."""
    if not isinstance(fingerprint, dict):
        return None
    value = fingerprint.get("sha256") or fingerprint.get("commit") or fingerprint.get("name")
    return str(value) if value else None


def check_detection_model(meta: dict, lm: LoadedModel, source: str, allow_model_mismatch: bool = False) -> None:
    """Refuse a detection made on another model: a shape mismatch always, other weights unless allowed.

    A detection's neurons index one model's layers and MLP rows; on a model of the same shape
    but other weights they are arbitrary neurons. The weights are compared by the fingerprint
    meta.json records (content hash or hub commit: a moved folder still matches, a folder
    retrained in place does not), else by model name; `allow_model_mismatch` accepts a difference
    on purpose.
    """
    recorded = {key: meta[key] for key in SHAPE_KEYS if key in meta}
    shape = model_shape(lm)
    differs = [f"{key} {recorded[key]} vs {shape[key]}" for key in recorded if recorded[key] != shape[key]]
    made_on, applied_to = _describe(meta.get("model"), recorded), _describe(lm.name, shape)
    if differs:
        raise TransferNeuronsError(
            f"{source} was made on model {made_on}, not on model={applied_to}: {', '.join(differs)}; "
            "a detection applies only to a model of its shape", mentions=("model",)
        )
    if allow_model_mismatch or "model" not in meta:
        return
    then = weights_id(meta.get("model_fingerprint"))
    now = weights_id(lm.fingerprint()) if then is not None else None
    shape_note = "same shape" if len(recorded) == len(SHAPE_KEYS) else "its shape not recorded"
    if then is not None and now is not None:
        if then == now:
            return
        what = f"{shape_note}, other weights: {then[:12]} then, {now[:12]} now"
    elif meta["model"] == lm.name:
        return
    else:
        what = f"{shape_note}, another name"
    raise TransferNeuronsError(
        f"{source} was made on model {made_on}, not on model={lm.name!r} ({what}); pass the model it was made "
        "on, or allow_model_mismatch=True if the difference is intended", mentions=("model", "allow_model_mismatch")
    )
