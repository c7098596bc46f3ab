"""`neurons import | export`: round trips through the paper's pairs and LAPE masks, refusals as one-line errors."""

import json
import pickle
import re

import numpy as np
import pytest
import torch

from transfer_neurons.cli import main
from transfer_neurons.detection import Detection, read_neurons, write_detection

NEURONS = np.array([[2, 7], [0, 3], [2, 1], [1, 63]])


@pytest.fixture
def det_dir(tmp_path):
    """A detection folder of a 4-layer, d_ff 64 model whose meta records its shape and module."""
    scores = np.zeros((4, 64), np.float32)
    scores[NEURONS[:, 0], NEURONS[:, 1]] = [0.4, 0.3, 0.2, 0.1]
    meta = {"type": "type1", "language": "ja", "candidate_layers": [0, 1, 2], "model": "org/tiny",
            "model_revision": "v1", "num_layers": 4, "d_ff": 64, "neuron_module": "model.layers.{layer}.mlp.down_proj"}
    det = Detection("type1", "ja", scores, scores, np.zeros((4, 32), np.float32), (0, 1, 2), NEURONS, meta)
    return write_detection(det, tmp_path / "det")


@pytest.mark.parametrize("name", ["pairs.pkl", "pairs.json"])
def test_pairs_export_import_round_trip(det_dir, tmp_path, name):
    exported = tmp_path / name
    assert main(["neurons", "export", str(det_dir), "--out", str(exported)]) == 0
    if name.endswith(".pkl"):
        assert pickle.loads(exported.read_bytes()) == [tuple(p) for p in NEURONS.tolist()]  # the paper's layout
    else:
        assert json.loads(exported.read_text()) == NEURONS.tolist()
    back = tmp_path / "back.json"
    assert main(["neurons", "import", str(exported), "--out", str(back), "--model", "org/tiny", "--revision", "v1",
                 "--model-type", "llama", "--type", "type1", "--lang", "ja"]) == 0
    np.testing.assert_array_equal(read_neurons(back), NEURONS)
    doc = json.loads(back.read_text())
    assert doc["model"] == {"name": "org/tiny", "revision": "v1", "type": "llama", "fingerprint": None,
                            "num_layers": None, "d_ff": None, "d_model": None}  # unknown facts are null
    assert doc["source"] == str(exported)
    assert doc["neurons"][0]["nnsight"] == "model.layers[2].mlp.down_proj.input"


def test_lape_export_import_round_trip(det_dir, tmp_path):
    other = tmp_path / "other.json"
    other.write_text(json.dumps([[3, 5], [0, 0]]))
    mask = tmp_path / "mask.pt"
    assert main(["neurons", "export", str(det_dir), str(other), "--out", str(mask)]) == 0  # 4 layers from meta
    assert [len(layers) for layers in torch.load(mask, weights_only=True)] == [4, 4]
    for index, lang, want in ((0, "ja", NEURONS), (1, "ko", np.array([[3, 5], [0, 0]]))):
        out = tmp_path / f"{lang}.json"
        assert main(["neurons", "import", str(mask), "--lape-langs", "ja,ko", "--lang", lang, "--out", str(out)]) == 0
        got = read_neurons(out)
        assert sorted(map(tuple, got.tolist())) == sorted(map(tuple, want.tolist()))  # LAPE keeps sets, not ranks
        assert json.loads(out.read_text())["language"] == lang


def test_import_offsets_and_top_k(tmp_path):
    src = tmp_path / "one_based.json"
    src.write_text(json.dumps([[1, 4], [3, 2], [2, 2]]))
    assert main(["neurons", "import", str(src), "--layer-offset", "-1", "--top-k", "2", "--out", str(tmp_path / "n.json")]) == 0
    np.testing.assert_array_equal(read_neurons(tmp_path / "n.json"), [[0, 4], [2, 2]])


def test_export_upgrades_a_version_1_file(tmp_path):
    old = tmp_path / "old.json"
    old.write_text(json.dumps([{"layer": 1, "neuron": 2, "score": 0.5}]))
    assert main(["neurons", "export", str(old), "--format", "neurons-json", "--out", str(tmp_path / "new.json")]) == 0
    doc = json.loads((tmp_path / "new.json").read_text())
    assert doc["schema_version"] == 2 and doc["neurons"][0]["score"] == 0.5
    assert set(doc["model"]) >= {"name", "revision", "fingerprint", "num_layers"} and set(doc["model"].values()) == {None}
    assert doc["neurons"][0]["transformer_lens"] == "blocks.1.mlp.hook_post"


class Reduce:
    def __reduce__(self):
        return print, ("ran",)


@pytest.mark.parametrize("args, message", [
    (["import", "{evil}", "--out", "{tmp}/x.json"], r"evil\.pkl: refused: it references builtins\.print"),
    (["import", "{mask}", "--out", "{tmp}/x.json"], "holds 2 languages: choose one with --lape-index"),
    (["import", "{mask}", "--lape-index", "5", "--out", "{tmp}/x.json"], "--lape-index 5 is outside the 2 languages"),
    (["export", "{det}", "{det}", "--out", "{tmp}/x.pkl"], "pairs-pickle writes one neuron set; 2 were given"),
    (["export", "{plain}", "--out", "{tmp}/x.pt"], "give --num-layers"),
])
def test_refusals_are_one_line_errors(args, message, det_dir, tmp_path, capsys):
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps([(1, 2), Reduce()]))
    mask = tmp_path / "mask.pt"
    torch.save([[torch.tensor([1])], [torch.tensor([2])]], mask)
    plain = tmp_path / "plain.json"
    plain.write_text("[[0, 1]]")
    filled = [a.format(evil=evil, mask=mask, det=det_dir, plain=plain, tmp=tmp_path) for a in args]
    assert main(["neurons", *filled]) == 2
    captured = capsys.readouterr()
    assert "ran" not in captured.out  # the pickled call was never made
    err = captured.err.strip()
    assert err.startswith("transfer-neurons neurons: error:") and "\n" not in err
    assert re.search(message, err), err
