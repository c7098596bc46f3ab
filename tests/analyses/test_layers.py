"""Layer histograms, Jaccard overlaps and chance levels on hand-made neuron sets, and the `layers` CLI."""

import json

import numpy as np
import pytest
from scipy import stats as sps

from transfer_neurons.analyses.layers import (
    OVERLAP_COLUMNS,
    check_detections,
    distribution_rows,
    jaccard,
    layer_counts,
    layer_matched_overlap,
    overlap_rows,
)
from transfer_neurons.cli import main
from transfer_neurons.detection import Detection, write_detection
from transfer_neurons.errors import TransferNeuronsError

D_FF = 10


def det(lang, neurons, neuron_type="type1", layers=(0, 1, 2)):
    neurons = np.array(neurons, dtype=np.int64).reshape(-1, 2)
    scores = np.zeros((4, D_FF), np.float32)
    return Detection(neuron_type, lang, scores, scores.copy(), np.zeros((4, 3), np.float32), tuple(layers), neurons,
                     {"model": "hand-made", "type": neuron_type, "language": lang, "candidate_layers": list(layers)})


JA = det("ja", [[0, 1], [0, 2], [1, 5], [2, 7]])
KO = det("ko", [[0, 1], [1, 5], [1, 6], [2, 8], [2, 9]])
JA2 = det("ja", [[3, 0], [3, 4]], "type2", layers=(3,))


def test_layer_counts_and_distribution_rows():
    assert layer_counts(KO.neurons, 4).tolist() == [1, 2, 2, 0]
    rows = {(r["lang"], r["layer"]): r for r in distribution_rows([JA, KO], 4, D_FF)}
    assert rows[("ja", 0)]["count"] == 2 and rows[("ja", 0)]["share_of_set"] == 0.5
    assert rows[("ko", 1)]["share_of_layer"] == pytest.approx(0.2)
    assert rows[("ko", 3)]["count"] == 0 and not rows[("ko", 3)]["candidate_layer"]


def test_layer_matched_p_is_at_most_one_for_disjoint_sets():
    rng = np.random.default_rng(0)
    for _ in range(300):  # disjoint sets: p = the whole pmf's sum, which rounding can put above 1
        a = {(int(l), int(n)) for l, n in zip(rng.integers(0, 3, 6), rng.integers(0, D_FF, 6))}
        b = {(int(l), int(n)) for l, n in zip(rng.integers(0, 3, 6), rng.integers(0, D_FF, 6))} - a
        (row,) = overlap_rows([det("ja", sorted(a)), det("ko", sorted(b))], 4, D_FF)
        assert 0.0 <= row["p_layer_matched"] <= 1.0


def test_detections_of_other_weights_are_refused():
    other = det("ko", KO.neurons)
    other.meta["model"] = "another-model"
    with pytest.raises(TransferNeuronsError, match=r"other weights: type1 ja \('hand-made'\); type1 ko "
                       r"\('another-model'\)"):
        check_detections([JA, other])
    here, moved = det("ja", JA.neurons), det("ko", KO.neurons)  # the same weights in another folder
    for d, name in ((here, "hand-made"), (moved, "moved")):
        d.meta.update(model=name, model_fingerprint={"kind": "folder", "sha256": "ab" * 32})
    assert check_detections([here, moved]) == (4, D_FF)


def test_jaccard_and_chance_overlaps():
    assert jaccard({(0, 1), (1, 5)}, {(0, 1), (2, 2), (3, 3)}) == pytest.approx(1 / 4)
    (row,) = overlap_rows([JA, KO, JA2], 4, D_FF)  # one type1 pair; type2 has one language only
    assert (row["lang_a"], row["lang_b"], row["overlap"]) == ("ja", "ko", 2) and tuple(row) == OVERLAP_COLUMNS
    assert row["jaccard"] == pytest.approx(2 / 7) and row["population"] == 30
    assert row["chance_overlap"] == pytest.approx(4 * 5 / 30)
    assert row["p_chance"] == pytest.approx(sps.hypergeom.sf(1, 30, 4, 5))
    # per layer (ja, ko) counts: (2,1), (1,2), (1,2) -> expected sum of a*b/d_ff
    assert row["layer_matched_chance_overlap"] == pytest.approx((2 + 2 + 2) / D_FF)


def test_layer_matched_pmf_is_the_convolution_of_per_layer_hypergeometrics():
    expected, pmf = layer_matched_overlap(np.array([1, 1]), np.array([1, 1]), 2)
    # each layer overlaps with probability 1/2: total ~ Binomial(2, 1/2)
    assert expected == pytest.approx(1.0) and pmf == pytest.approx([0.25, 0.5, 0.25])


def test_check_detections_refuses_duplicates():
    assert check_detections([JA, KO]) == (4, D_FF)
    with pytest.raises(TransferNeuronsError, match="type1 ja"):
        check_detections([JA, JA])


def test_layers_cli(tmp_path, capsys):
    folders = []
    for d in (JA, KO, JA2):
        folders.append(str(write_detection(d, tmp_path / f"{d.lang}-{d.neuron_type}")))
    assert main(["layers", "--detections", *folders, "--out", str(tmp_path / "out")]) == 0
    record = json.loads((tmp_path / "out/layers.json").read_text())
    assert len(record["distribution"]) == 3 * 4 and record["overlap"][0]["overlap"] == 2
    assert {d["lang"] for d in record["detections"] if d["type"] == "type2"} == {"ja"}
    assert (tmp_path / "out/layers.png").is_file() and (tmp_path / "out/overlap.png").is_file()
    assert "Jaccard 0.286" in capsys.readouterr().out
    assert main(["layers", "--detections", folders[0], "--top-k", "1", "--out", str(tmp_path / "one")]) == 0
    assert json.loads((tmp_path / "one/layers.json").read_text())["detections"][0]["neurons"] == 1
