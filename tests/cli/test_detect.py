"""`detect` and `centroids` from the command line on a tiny saved model: files, contract, determinism."""

import json
import re

import numpy as np
import pytest
import torch
from tiny import assert_same_ranking, save_model, tiny_lm, write_jsonl

from transfer_neurons.cli import main
from transfer_neurons.detection import check_finite
from transfer_neurons.errors import TransferNeuronsError
from transfer_neurons.outputs import load_npy

ROWS = [
    {"en": "The cat sleeps.", "ja": "猫が寝ている。"},
    {"en": "I like green tea.", "ja": "緑茶が好きです。"},
    {"en": "Where is the station?", "ja": "駅はどこですか。"},
    {"en": "It is raining today.", "ja": "今日は雨が降っています。"},
    {"en": "My brother is a doctor.", "ja": "兄は医者です。"},
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("detect")
    lm = tiny_lm("gemma3_text")
    save_model(lm, root / "model")
    data = root / "pairs.jsonl"
    write_jsonl(data, ROWS)
    return root, ["--model", str(root / "model"), "--lang", "ja", "--centroid-data", str(data),
                  "--score-data", str(data), "--batch-size", "2"]


def test_detect_writes_the_contract_files(setup):
    root, common = setup
    assert main(["detect", "--type", "type1", *common, "--top-n", "7", "--out", str(root / "t1")]) == 0
    scores, mags = load_npy(root / "t1/scores.npy"), load_npy(root / "t1/magnitudes.npy")
    assert scores.shape == mags.shape == (4, 64) and scores.dtype == np.float32
    assert load_npy(root / "t1/centroids.npy").shape == (4, 32)
    neurons = json.loads((root / "t1/neurons.json").read_text())["neurons"]
    meta = json.loads((root / "t1/meta.json").read_text())
    assert len(neurons) == 7 and meta["candidate_layers"] == [0, 1, 2]  # 62.5 % of 4 layers, rounded
    assert all(n["layer"] in (0, 1, 2) for n in neurons)
    assert [n["score"] for n in neurons] == sorted((n["score"] for n in neurons), reverse=True)
    assert neurons[0]["score"] == pytest.approx(scores[:3].max())
    assert meta["type"] == "type1" and meta["num_score_sentences"] == 5 and meta["top_n_rule"] == "user"


def test_same_inputs_give_identical_neurons_and_centroids_reuse(setup):
    root, common = setup
    main(["detect", "--type", "type2", *common, "--out", str(root / "a")])
    main(["centroids", "--type", "type2", *common[:-4], "--centroid-data", common[5], "--out", str(root / "c")])
    main(["detect", "--type", "type2", *common, "--centroids", str(root / "c/centroids.npy"), "--out", str(root / "b")])
    a, b = ([[n["layer"], n["neuron"]] for n in json.loads((root / f"{x}/neurons.json").read_text())["neurons"]] for x in "ab")
    assert_same_ranking(a, b, load_npy(root / "a/scores.npy"))  # the centroids differ by batching (float32 sums)
    np.testing.assert_allclose(load_npy(root / "a/scores.npy"), load_npy(root / "b/scores.npy"), rtol=0, atol=1e-6)
    meta = json.loads((root / "a/meta.json").read_text())
    assert meta["candidate_layers"] == [3] and "458,752" in meta["top_n_rule"]
    assert meta["top_n"] == max(1, round(1000 * 4 * 64 / 458_752))  # 4 layers x d_ff 64, the model's share


def test_layers_option_overrides_candidates(setup):
    root, common = setup
    main(["detect", "--type", "type1", *common, "--layers", "1:3", "--top-n", "5", "--out", str(root / "l")])
    assert {n["layer"] for n in json.loads((root / "l/neurons.json").read_text())["neurons"]} <= {1, 2}


def test_bad_inputs_exit_2_with_a_message(setup, capsys):
    root, common = setup
    assert main(["detect", "--type", "type1", *common, "--layers", "x", "--out", str(root / "x")]) == 2
    assert "--layers 'x'" in capsys.readouterr().err
    bad = common.copy()
    bad[bad.index("--score-data") + 1] = str(root / "missing.jsonl")
    assert main(["detect", "--type", "type2", *bad, "--out", str(root / "y")]) == 2
    assert "missing.jsonl" in capsys.readouterr().err


def test_every_subcommand_has_help(capsys):
    from transfer_neurons.cli import COMMANDS

    for name in COMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0
        assert "usage: transfer-neurons" in capsys.readouterr().out


def test_centroids_of_another_type_or_language_or_not_finite_are_refused(setup, capsys):
    root, common = setup
    assert main(["centroids", "--type", "type2", *common[:-4], "--centroid-data", common[5], "--out", str(root / "c2")]) == 0
    nan = root / "nan.npy"
    np.save(nan, np.full((4, 32), np.nan, dtype=np.float32))
    cases = [(root / "c2/centroids.npy", r"c2/centroids\.npy: computed for type2 ja \(centroids_meta\.json beside it\), "
                                         r"not type1 ja$"),
             (nan, r"nan\.npy: expected a finite \[layer, d_model\] array, got shape \(4, 32\) with 128 NaN or inf$")]
    for path, message in cases:
        capsys.readouterr()
        assert main(["detect", "--type", "type1", *common, "--centroids", str(path), "--out", str(root / "refused")]) == 2
        assert re.search(r"error: --centroids \S*" + message, capsys.readouterr().err.strip())
    assert not (root / "refused").exists()


def test_non_finite_scores_are_refused_and_name_the_dtype():
    """A float16 model can overflow (the embedded Gemma 3 does): NaN scores would rank arbitrary neurons."""
    lm = tiny_lm("llama")
    check_finite(torch.zeros(3), "scores", lm.view)  # finite: nothing to say
    lm.model.to(torch.float16)
    with pytest.raises(TransferNeuronsError, match=r"^scores: 2 of 3 values are not finite \(NaN or inf\); the model "
                                                   r"runs in float16.*dtype='bfloat16'") as caught:
        check_finite(torch.tensor([0.0, float("nan"), float("inf")]), "scores", lm.view)
    assert caught.value.mentions == ("dtype",)
