"""Neuron sets as files other tools read and write (schema in docs/neurons.md).

A neuron (l, i) is a[l][i] (method.md §2): input feature i of the MLP output projection of
decoder layer l, 0-based, which deactivation sets to zero. `neurons.json` version 2
records with the ranked list the model (id, revision, fingerprint), that definition as a
module path, and per neuron the equivalent TransformerLens hook and nnsight path.

Exchange formats, both directions:
- pairs: the paper's ranked `[(layer, neuron), ...]` as JSON or a pickle. Pickles are
  read only by an unpickler that builds nothing but lists, tuples and ints; any class,
  function or reduce is refused before it is built.
- LAPE: `torch.save`d per-language lists of per-layer LongTensors of neuron indices
  (`activation_mask` of Tang et al. 2024), read with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import io
import json
import math
import pickle
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import TransferNeuronsError
from .outputs import write_bytes, write_json

SCHEMA = "transfer-neurons/neurons"
SCHEMA_VERSION = 2
TRANSFORMER_LENS_HOOK = "blocks.{layer}.mlp.hook_post"  # [batch, pos, d_mlp]; hook_post is the down-projection input
DEFINITION = ("a[l][i]: input feature i of the MLP output projection of decoder layer l (0-based), "
              "i.e. act(W_gate x) * (W_up x) or act(W_in x + b_in); its value vector is that projection's column i")
PICKLE_SUFFIXES = (".pkl", ".pickle")
TORCH_SUFFIXES = (".pt", ".pth")


@dataclass
class NeuronSet:
    """Ranked neurons with what they mean and which model they index."""

    neurons: np.ndarray  # [n, 2] (layer, neuron), best first
    scores: np.ndarray | None = None  # [n] float, NaN where unknown; None for an unscored set
    model: dict = field(default_factory=dict)  # name, revision, fingerprint, model_type, num_layers, d_ff
    module: str | None = None  # e.g. "model.layers.{layer}.mlp.down_proj"; a[l] is its input
    neuron_type: str | None = None
    language: str | None = None
    source: str | None = None  # the file it was imported from


def check_neurons(neurons: np.ndarray, option: str = "neurons") -> np.ndarray:
    """Neurons as an int64 [n, 2] array of (layer, neuron); anything else (floats, a flat list, a Detection) is
    refused naming what it was, never reshaped or rounded into other neurons."""
    if hasattr(neurons, "neurons") and not isinstance(neurons, np.ndarray):  # a Detection or NeuronSet
        raise TransferNeuronsError(f"{option}: expected an integer [n, 2] array of (layer, neuron), got a "
                                   f"{type(neurons).__name__}; pass its .neurons", option=option)
    arr = np.asarray(neurons)
    if arr.size == 0:
        return np.zeros((0, 2), np.int64)
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.dtype.kind not in "iu":
        raise TransferNeuronsError(f"{option}: expected an integer [n, 2] array of (layer, neuron), got shape "
                                   f"{arr.shape}, dtype {arr.dtype}", option=option)
    return arr.astype(np.int64)


def neuron_module(adapter) -> str:
    """Template of the module (of models.adapters.Adapter) whose input is a[l]: "<decoder>.<layers>.{layer}.<out_proj>"."""
    return f"{adapter.decoder}.{adapter.layers}.{{layer}}.{adapter.out_proj}"


def nnsight_path(module: str, layer: int) -> str:
    """nnsight access to a[l] relative to the LanguageModel: e.g. model.layers[3].mlp.down_proj.input."""
    parts = module.split(".")
    at = parts.index("{layer}")
    return ".".join(parts[: at - 1] + [f"{parts[at - 1]}[{layer}]"] + parts[at + 1:]) + ".input"


def hook_names(layer: int, module: str | None) -> dict:
    """The equivalent names of one layer's neuron activations in other tools."""
    return {
        "module": None if module is None else module.format(layer=layer),
        "transformer_lens": TRANSFORMER_LENS_HOOK.format(layer=layer),
        "nnsight": None if module is None else nnsight_path(module, layer),
    }


def _number(value) -> float | None:
    """A finite float for JSON, None for NaN."""
    return None if value is None or not math.isfinite(float(value)) else float(value)


def to_json(ns: NeuronSet) -> dict:
    """The version-2 neurons.json document of a set."""
    rows = []
    for rank, (layer, neuron) in enumerate(ns.neurons.tolist(), start=1):
        score = None if ns.scores is None else _number(ns.scores[rank - 1])
        rows.append({"rank": rank, "layer": layer, "neuron": neuron, "score": score, **hook_names(layer, ns.module)})
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "model": {**{key: None for key, _ in _RECORD_KEYS}, **ns.model},  # every fact named, null when unknown
        "neuron_type": ns.neuron_type,
        "language": ns.language,
        "definition": {
            "neuron": DEFINITION,
            "module": ns.module,
            "io": "input",
            "index": "layer and neuron are 0-based; the neuron indexes the last dimension of the module input",
            "transformer_lens": TRANSFORMER_LENS_HOOK,
        },
        "source": ns.source,
        "count": len(rows),
        "neurons": rows,
    }


_RECORD_KEYS = (("name", "model"), ("revision", "model_revision"), ("fingerprint", "model_fingerprint"),
                ("type", "model_type"), ("num_layers", "num_layers"), ("d_ff", "d_ff"), ("d_model", "d_model"))
"""A neurons.json's model record key and the meta.json key holding the same fact."""


def model_record(meta: dict) -> dict:
    """The model facts a neurons.json records, from a detection's meta.json."""
    return {key: meta[source] for key, source in _RECORD_KEYS if source in meta}


def known_facts(record: object) -> dict:
    """A neurons.json's model record without its unknown (null) facts."""
    return {key: value for key, value in record.items() if value is not None} if isinstance(record, dict) else {}


def record_meta(record: dict) -> dict:
    """A neurons.json's model record under meta.json's keys (model_record's inverse), to check it against a model."""
    return {source: record[key] for key, source in _RECORD_KEYS if key in record}


def write_neuron_set(ns: NeuronSet, path: str | Path) -> Path:
    """Write a version-2 neurons.json atomically."""
    return write_json(path, to_json(ns))


def _pairs_array(rows, where: str) -> np.ndarray:
    """[[layer, neuron], ...] of non-negative ints (bools refused) as an [n, 2] int64 array."""
    out = []
    for k, row in enumerate(rows):
        if (not isinstance(row, (list, tuple)) or len(row) != 2
                or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in row)):
            raise TransferNeuronsError(f"{where}: entry {k} is {row!r}; expected a (layer, neuron) pair of non-negative ints")
        out.append(row)
    return np.asarray(out, dtype=np.int64).reshape(-1, 2)


def check_unique(neurons: np.ndarray, where: str) -> np.ndarray:
    """Refuse a set that names one neuron twice (the first repeat is named)."""
    seen = set()
    for k, pair in enumerate(map(tuple, neurons.tolist())):
        if pair in seen:
            raise TransferNeuronsError(f"{where}: neuron (layer {pair[0]}, {pair[1]}) appears twice (again at entry {k})")
        seen.add(pair)
    return neurons


def from_json(obj, where: str) -> NeuronSet:
    """A set from a parsed neurons.json: version 2, version 1 ([{layer, neuron, score}]) or bare pairs."""
    if isinstance(obj, dict):
        if obj.get("schema") != SCHEMA:
            raise TransferNeuronsError(f"{where}: not a neurons.json (its \"schema\" is {obj.get('schema')!r}, expected {SCHEMA!r})")
        if obj.get("schema_version") != SCHEMA_VERSION:
            raise TransferNeuronsError(f"{where}: neurons.json schema_version {obj.get('schema_version')!r} is not "
                                       f"supported (this version reads 1 and {SCHEMA_VERSION})")
        rows, definition = obj.get("neurons"), obj.get("definition") or {}
        if not isinstance(rows, list):
            raise TransferNeuronsError(f"{where}: \"neurons\" must be a list")
        ns = NeuronSet(np.empty((0, 2), np.int64), model=known_facts(obj.get("model")), module=definition.get("module"),
                       neuron_type=obj.get("neuron_type"), language=obj.get("language"), source=obj.get("source"))
    elif isinstance(obj, list):
        rows, ns = obj, NeuronSet(np.empty((0, 2), np.int64))
    else:
        raise TransferNeuronsError(f"{where}: expected a neurons.json object or a list, got {type(obj).__name__}")
    if rows and isinstance(rows[0], dict):
        try:
            pairs = [(r["layer"], r["neuron"]) for r in rows]
            scores = [np.nan if r.get("score") is None else float(r["score"]) for r in rows]
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise TransferNeuronsError(f'{where}: each neuron must be {{"layer": int, "neuron": int, "score": float}} ({err!r})') from None
        ns.neurons, ns.scores = _pairs_array(pairs, where), np.asarray(scores, dtype=np.float64)
    else:
        ns.neurons = _pairs_array(rows, where)
    check_unique(ns.neurons, where)
    return ns


def read_neuron_set(path: str | Path) -> NeuronSet:
    """Read a neurons.json (or a detection folder holding one), a pairs JSON/pickle or a one-language LAPE file."""
    path = Path(path)
    if path.is_dir():
        path = path / "neurons.json"
    if not path.is_file():
        raise TransferNeuronsError(f"{path}: no such neurons file (expected neurons.json from `detect`)")
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        return NeuronSet(read_pairs_pickle(path), source=str(path))
    if suffix in TORCH_SUFFIXES:
        sets = read_lape(path)
        if len(sets) != 1:
            raise TransferNeuronsError(f"{path}: a LAPE file of {len(sets)} languages; import one with "
                                       "`transfer-neurons neurons import --lape-index K`")
        return NeuronSet(sets[0], source=str(path))
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise TransferNeuronsError(f"{path}: not a neurons.json ({err})") from None
    return from_json(obj, str(path))


# ---------------------------------------------------------------- the paper's list of pairs


class _PlainUnpickler(pickle.Unpickler):
    """Builds only what pickle's own opcodes build; every global (class, function, reduce) is refused."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"it references {module}.{name}")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("it references a persistent object")


def _check_plain(obj, where: str, depth: int = 0) -> None:
    """Refuse anything but lists, tuples and ints (nested at most 3 deep)."""
    if isinstance(obj, (list, tuple)) and depth < 3:
        for item in obj:
            _check_plain(item, where, depth + 1)
    elif not isinstance(obj, int) or isinstance(obj, bool):
        raise TransferNeuronsError(
            f"{where}: refused: the pickle holds a {type(obj).__name__}; only lists, tuples and ints are read"
        )


def read_pairs_pickle(path: str | Path) -> np.ndarray:
    """A pickled [(layer, neuron), ...] as [n, 2], through the restricted unpickler."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            obj = _PlainUnpickler(handle).load()
    except pickle.UnpicklingError as err:
        raise TransferNeuronsError(f"{path}: refused: {err}; only lists, tuples and ints are read from pickles") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, OverflowError) as err:
        raise TransferNeuronsError(f"{path}: not a readable pickle ({type(err).__name__}: {err})") from None
    _check_plain(obj, str(path))
    return check_unique(_pairs_array(obj, str(path)), str(path))


def read_pairs(path: str | Path) -> np.ndarray:
    """The paper's ranked pairs from a pickle (.pkl/.pickle) or JSON ([[layer, neuron], ...]): [n, 2]."""
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return read_pairs_pickle(path)
    return read_neuron_set(path).neurons


def write_pairs(neurons: np.ndarray, path: str | Path, pickled: bool | None = None) -> Path:
    """Write ranked pairs as the paper did: a pickle of [(layer, neuron), ...] or JSON [[l, n], ...] (default: by suffix)."""
    path = Path(path)
    pairs = [(int(l), int(i)) for l, i in np.asarray(neurons).reshape(-1, 2)]
    if pickled or (pickled is None and path.suffix.lower() in PICKLE_SUFFIXES):
        return write_bytes(path, pickle.dumps(pairs, protocol=4))
    return write_json(path, [list(p) for p in pairs])


# ---------------------------------------------------------------- LAPE per-layer index tensors


def _layer_indices(tensors, where: str) -> np.ndarray:
    """One language's per-layer index tensors as [n, 2] (layer, neuron), in layer then index order."""
    import torch

    rows = []
    for layer, t in enumerate(tensors):
        if not isinstance(t, torch.Tensor) or t.dim() != 1 or t.is_floating_point() or t.is_complex():
            raise TransferNeuronsError(f"{where}: layer {layer} is not a 1-D integer tensor of neuron indices")
        rows += [(layer, int(i)) for i in t.tolist()]
    return _pairs_array(rows, where)


def _load_failure(err: Exception) -> str:
    """torch.load's reason in a few words: the safe unpickler's complaint, without its advice to turn it off."""
    text = " ".join(str(err).split())
    found = re.search(r"WeightsUnpickler error:\s*(.*?)\s*(?:Check the documentation|$)", text)
    reason = found.group(1) if found else text
    return re.split(r" was not an allowed global|\. ", reason)[0][:200]  # the complaint, not what to do


def read_lape(path: str | Path) -> list[np.ndarray]:
    """A LAPE activation mask (a list per language of per-layer LongTensors, or one language's list): [n, 2] each."""
    import torch

    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError) as err:
        raise TransferNeuronsError(f"{path}: not a readable LAPE tensor file ({_load_failure(err)}); only tensors "
                                   "and lists are loaded from it, never code") from None
    if isinstance(obj, torch.Tensor) or not isinstance(obj, (list, tuple)) or not obj:
        raise TransferNeuronsError(f"{path}: expected a list (per language) of lists (per layer) of index tensors")
    languages = [obj] if isinstance(obj[0], torch.Tensor) else list(obj)
    out = []
    for k, tensors in enumerate(languages):
        if not isinstance(tensors, (list, tuple)):
            raise TransferNeuronsError(f"{path}: language {k} is a {type(tensors).__name__}, not a list of per-layer tensors")
        out.append(check_unique(_layer_indices(tensors, f"{path}, language {k}"), f"{path}, language {k}"))
    return out


def write_lape(sets: Sequence[np.ndarray], num_layers: int, path: str | Path) -> Path:
    """Save neuron sets as LAPE does: per language, per layer, a sorted LongTensor of neuron indices."""
    import torch

    mask = []
    for neurons in sets:
        neurons = np.asarray(neurons, dtype=np.int64).reshape(-1, 2)
        if len(neurons) and neurons[:, 0].max() >= num_layers:
            raise TransferNeuronsError(f"a neuron sits in layer {neurons[:, 0].max()}, beyond the {num_layers} layers given")
        mask.append([torch.as_tensor(np.sort(neurons[neurons[:, 0] == l, 1]), dtype=torch.long) for l in range(num_layers)])
    buffer = io.BytesIO()
    torch.save(mask, buffer)
    return write_bytes(path, buffer.getvalue())
