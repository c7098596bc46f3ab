"""neurons.json v2 (model identity, definition, other tools' names), v1 compatibility, pairs and LAPE round trips."""

import builtins
import json
import os
import pickle

import numpy as np
import pytest
import torch
from tiny import SENTENCES, tiny_lm

from transfer_neurons.detection import Detection, detect, read_detection, read_neurons, write_detection
from transfer_neurons.errors import TransferNeuronsError
from transfer_neurons.neuron_sets import (
    NeuronSet, read_lape, read_neuron_set, read_pairs, to_json, write_lape, write_neuron_set, write_pairs,
)

NEURONS = np.array([[2, 7], [0, 3], [2, 1], [1, 63]])


@pytest.mark.parametrize("arch, module", [("llama", "model.layers.{layer}.mlp.down_proj"),
                                          ("gpt2", "transformer.h.{layer}.mlp.c_proj")])
def test_detection_writes_schema_2_with_model_definition_and_hook_names(arch, module, tmp_path):
    lm = tiny_lm(arch)
    det = detect(lm, "type2", "ja", SENTENCES, torch.randn(4, lm.view.d_model), top_n=5, batch_size=3)
    write_detection(det, tmp_path / "det")
    doc = json.loads((tmp_path / "det/neurons.json").read_text())
    assert doc["schema"] == "transfer-neurons/neurons" and doc["schema_version"] == 2
    assert doc["model"]["name"] == f"tiny-{arch}" and doc["model"]["fingerprint"] == {"kind": "in-memory", "name": f"tiny-{arch}"}
    assert doc["model"]["type"] == arch and "revision" in doc["model"] and doc["model"]["num_layers"] == 4
    assert doc["definition"]["module"] == module and doc["definition"]["io"] == "input"
    assert doc["neuron_type"] == "type2" and doc["language"] == "ja" and doc["count"] == 5
    first = doc["neurons"][0]
    layer, neuron = first["layer"], first["neuron"]
    assert first["rank"] == 1 and first["score"] == pytest.approx(float(det.scores[layer, neuron]))
    assert first["transformer_lens"] == f"blocks.{layer}.mlp.hook_post"
    assert first["module"] == module.format(layer=layer)
    # the module path names a real module whose input is a[l] (its last dimension is d_ff)
    seen = {}
    target = dict(lm.model.named_modules())[first["module"]]
    handle = target.register_forward_pre_hook(lambda m, args: seen.setdefault("a", args[0]))
    with torch.no_grad():
        lm.model(**lm.tokenizer(["The cat"], return_tensors="pt"))
    handle.remove()
    assert seen["a"].shape[-1] == lm.view.d_ff
    # the nnsight path walks the same attributes, indexing the layer list
    obj = lm.model
    for part in first["nnsight"].removesuffix(".input").split("."):
        name, _, index = part.partition("[")
        obj = getattr(obj, name)[int(index[:-1])] if index else getattr(obj, name)
    assert obj is target and first["nnsight"].endswith(".input")
    np.testing.assert_array_equal(read_neurons(tmp_path / "det"), det.neurons)
    np.testing.assert_array_equal(read_detection(tmp_path / "det", top_k=2).neurons, det.neurons[:2])


def test_version_1_files_are_still_read(tmp_path):
    old = [{"layer": 2, "neuron": 7, "score": 0.5}, {"layer": 0, "neuron": 3, "score": 0.25}]
    (tmp_path / "neurons.json").write_text(json.dumps(old))
    ns = read_neuron_set(tmp_path / "neurons.json")
    np.testing.assert_array_equal(ns.neurons, [[2, 7], [0, 3]])
    np.testing.assert_array_equal(ns.scores, [0.5, 0.25])
    np.testing.assert_array_equal(read_neurons(tmp_path, top_k=1), [[2, 7]])


def test_top_k_beyond_the_set_keeps_all_with_a_warning(tmp_path, caplog):
    (tmp_path / "neurons.json").write_text(json.dumps([{"layer": 2, "neuron": 7}, {"layer": 0, "neuron": 3}]))
    with caplog.at_level("WARNING", logger="transfer_neurons"):
        np.testing.assert_array_equal(read_neurons(tmp_path, top_k=5), [[2, 7], [0, 3]])
    assert "top_k 5 is more than the 2 neurons of" in caplog.text and "using all 2" in caplog.text
    caplog.clear()
    read_neurons(tmp_path, top_k=2)
    assert not caplog.text


def test_schema_2_round_trip_keeps_everything(tmp_path):
    ns = NeuronSet(NEURONS, np.array([0.4, 0.3, np.nan, 0.1]), model={"name": "org/m", "revision": "v1"},
                   module="model.layers.{layer}.mlp.down_proj", neuron_type="type1", language="ko", source="x.pkl")
    back = read_neuron_set(write_neuron_set(ns, tmp_path / "n.json"))
    np.testing.assert_array_equal(back.neurons, NEURONS)
    np.testing.assert_array_equal(back.scores, ns.scores)  # NaN (unknown) written as null, read back as NaN
    assert (back.model, back.module, back.neuron_type, back.language, back.source) == (
        ns.model, ns.module, "type1", "ko", "x.pkl")
    assert to_json(back) == to_json(ns) | {"neurons": to_json(ns)["neurons"]}


@pytest.mark.parametrize("doc, message", [
    ({"schema": "transfer-neurons/neurons", "schema_version": 3, "neurons": []}, "schema_version 3 is not supported"),
    ({"schema": "other"}, "not a neurons.json"),
    ([{"layer": 1}], "each neuron must be"),
    ([[1, 2], [1, 2]], r"neuron \(layer 1, 2\) appears twice"),
    ([[1, -2]], "expected a \\(layer, neuron\\) pair of non-negative ints"),
    ([[1, True]], "expected a \\(layer, neuron\\) pair"),
])
def test_malformed_neuron_files_are_named(doc, message, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(TransferNeuronsError, match=message):
        read_neuron_set(path)


@pytest.mark.parametrize("name", ["pairs.json", "pairs.pkl"])
def test_pairs_round_trip(name, tmp_path):
    path = write_pairs(NEURONS, tmp_path / name)
    np.testing.assert_array_equal(read_pairs(path), NEURONS)
    np.testing.assert_array_equal(read_neurons(path, top_k=3), NEURONS[:3])


def test_paper_style_pickle_of_tuples_is_read(tmp_path):
    path = tmp_path / "type1_ja.pkl"
    path.write_bytes(pickle.dumps([(20, 5), (3, 14336 - 1)]))  # the paper's sorted list: plain int tuples
    np.testing.assert_array_equal(read_pairs(path), [[20, 5], [3, 14335]])


class Payload:
    """Unpickling this would open (and create) a file: proof that a reduce ran."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return builtins.open, (str(self.target), "w")


class Shell(Payload):
    """Unpickling this would run a shell command that creates a file."""

    def __reduce__(self):
        return os.system, (f"touch {self.target}",)


@pytest.mark.parametrize("make, what", [
    (lambda t: [(1, 2), Payload(t)], "references io.open"),
    (lambda t: [Shell(t)], r"references (posix|os)\.system"),
    (lambda t: [(1, 2), NeuronSet(NEURONS)], "NeuronSet"),
    (lambda t: np.array([[1, 2]]), "numpy"),
    (lambda t: [(1, 2.5)], "holds a float"),
    (lambda t: {"pairs": [(1, 2)]}, "holds a dict"),
    (lambda t: [(1, "2")], "holds a str"),
])
def test_pickles_with_anything_but_lists_tuples_ints_are_refused(make, what, tmp_path):
    target = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(make(target)))
    with pytest.raises(TransferNeuronsError, match=rf"evil\.pkl: refused: .*{what}"):
        read_pairs(path)
    assert not target.exists()  # nothing was built, so nothing ran


def test_lape_round_trip_per_language(tmp_path):
    sets = [NEURONS, np.array([[3, 0], [3, 9]]), np.zeros((0, 2), np.int64)]
    path = write_lape(sets, 4, tmp_path / "activation_mask.pt")
    mask = torch.load(path, weights_only=True)  # LAPE's own layout: language -> layer -> LongTensor
    assert len(mask) == 3 and all(len(layers) == 4 for layers in mask)
    assert mask[0][2].tolist() == [1, 7] and mask[0][2].dtype == torch.long
    back = read_lape(path)
    for got, want in zip(back, sets):  # LAPE keeps sets, not ranks: compare in (layer, neuron) order
        np.testing.assert_array_equal(got, want[np.lexsort((want[:, 1], want[:, 0]))])


def test_lape_single_language_list_and_refusals(tmp_path):
    torch.save([torch.tensor([4, 1]), torch.tensor([], dtype=torch.long)], tmp_path / "one.pt")
    np.testing.assert_array_equal(read_neurons(tmp_path / "one.pt"), [[0, 4], [0, 1]])
    torch.save([[torch.tensor([0.5])]], tmp_path / "float.pt")
    with pytest.raises(TransferNeuronsError, match="layer 0 is not a 1-D integer tensor"):
        read_lape(tmp_path / "float.pt")
    torch.save([[NeuronSet(NEURONS)]], tmp_path / "object.pt")
    (tmp_path / "garbage.pt").write_text("garbage\n")
    for name, reason in (("object.pt", r"Unsupported global: GLOBAL transfer_neurons\.neuron_sets\.NeuronSet"),
                         ("garbage.pt", r"Unsupported operand 103|invalid load key.*")):
        with pytest.raises(TransferNeuronsError, match=rf"{name}: not a readable LAPE tensor file \(({reason})\); only "
                                                       r"tensors and lists are loaded from it, never code$") as caught:
            read_lape(tmp_path / name)
        assert "weights_only" not in str(caught.value)
    with pytest.raises(TransferNeuronsError, match="beyond the 2 layers given"):
        write_lape([NEURONS], 2, tmp_path / "x.pt")


def test_hand_built_detection_without_model_facts_still_writes(tmp_path):
    det = Detection("type1", "en", np.zeros((4, 64), np.float32), np.zeros((4, 64), np.float32),
                    np.zeros((4, 32), np.float32), (0, 1, 2), NEURONS[:2], {"type": "type1", "language": "en"})
    write_detection(det, tmp_path / "det")
    doc = json.loads((tmp_path / "det/neurons.json").read_text())
    assert doc["definition"]["module"] is None and doc["neurons"][0]["nnsight"] is None
    assert doc["neurons"][0]["transformer_lens"] == "blocks.2.mlp.hook_post"
