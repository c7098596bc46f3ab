"""Dose–response: counts ranked from scores, caps, conditions, zero-neuron baseline, CLI smoke."""

import json

import numpy as np
import pytest
from tiny import save_model, tiny_lm

from transfer_neurons.analyses.dose import (
    dose_conditions, dose_counts, dose_response, dose_rows, max_count, ranked_neurons, seed_drops,
)
from transfer_neurons.analyses.similarity import middle_layers
from transfer_neurons.cli import main
from transfer_neurons.data import ParallelPairs
from transfer_neurons.detection import Detection
from transfer_neurons.errors import TransferNeuronsError
from transfer_neurons.scoring import rank_neurons

EN = ("The cat sleeps.", "I like green tea.", "Where is the station?", "It is raining today.")
NL = ("De kat slaapt.", "Ik hou van groene thee.", "Waar is het station?", "Het regent vandaag.")


def detection(top_n=4, layers=(0, 1, 2), num_layers=4, d_ff=64, seed=0):
    """A hand-built detection whose neurons.json keeps only the top `top_n` of its scores."""
    scores = np.random.default_rng(seed).normal(size=(num_layers, d_ff)).astype(np.float32)
    return Detection("type1", "nl", scores, np.abs(scores), np.zeros((num_layers, 32), np.float32), layers,
                     rank_neurons(scores, layers, top_n))


def test_counts_beyond_the_detection_are_ranked_from_scores():
    det = detection(top_n=4)
    ranked = ranked_neurons(det, 50)
    np.testing.assert_array_equal(ranked, rank_neurons(det.scores, det.layers, 50))
    np.testing.assert_array_equal(ranked[:4], det.neurons)  # neurons.json is the prefix
    assert set(ranked[:, 0]) <= {0, 1, 2}
    flat = det.scores[list(det.layers)].ravel()
    assert det.scores[ranked[-1, 0], ranked[-1, 1]] == pytest.approx(np.sort(flat)[::-1][49])


def test_counts_are_capped_at_half_the_candidates():
    det = detection(layers=(0, 1))  # 128 candidates
    assert max_count(det) == 64
    assert dose_counts([100, 10, 64, 10], det) == ([10, 64], [100])
    with pytest.raises(TransferNeuronsError):
        dose_counts([65], det)


def test_conditions_per_count():
    det = detection()
    conds = dose_conditions(det, ranked_neurons(det, 20), 20, seeds=3)
    assert [c.label for c in conds] == ["none", "transfer", "random#0", "random#1", "random#2", "anti"]
    transfer = {tuple(n) for n in conds[1].neurons}
    for random in conds[2:5]:
        assert len(random.neurons) == 20 and not transfer & {tuple(n) for n in random.neurons}
        assert set(random.neurons[:, 0]) <= set(det.layers)
    anti = conds[5].neurons
    lowest = np.sort(det.scores[list(det.layers)].ravel())[:20]
    np.testing.assert_allclose(np.sort(det.scores[anti[:, 0], anti[:, 1]]), lowest)


@pytest.fixture(scope="module")
def lm():
    return tiny_lm("llama")


def test_zero_neurons_drop_nothing_and_seed_drops_match_rows(lm):
    det = detection()
    pairs = ParallelPairs("t", "en", "nl", EN, NL)
    result = dose_response(lm, pairs, det, [0, 6], seeds=2, mid_layers=(1, 2), batch_size=3, progress=False)
    mid, per_layer = dose_rows(result)
    zero = [r for r in mid + per_layer if r["count"] == 0]
    assert zero and all(r["drop"] == 0.0 and r["p_vs_none"] == 1.0 for r in zero)
    six = {(r["metric"], r["condition"]): r for r in mid if r["count"] == 6}
    assert six[("raw", "transfer")]["drop"] != 0.0
    for metric in ("raw", "centred"):
        drops = seed_drops(result, metric, 6)
        assert six[(metric, "random")]["seed_drop_mean"] == pytest.approx(drops.mean())
    assert len(per_layer) == 2 * 2 * 4 * 4  # counts x metrics x conditions x layers


def test_cli_writes_files(tmp_path, lm):
    save_model(lm, tmp_path / "model")
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"en": e, "nl": n}) + "\n" for e, n in zip(EN, NL)), encoding="utf-8")
    common = ["--model", str(tmp_path / "model"), "--batch-size", "2"]
    assert main(["detect", "--type", "type1", "--lang", "nl", "--centroid-data", str(data), "--score-data", str(data),
                 "--top-n", "3", "--out", str(tmp_path / "det"), *common]) == 0
    out = tmp_path / "dose"
    assert main(["dose", "--detection", str(tmp_path / "det"), "--data", str(data), "--counts", "2,3,10,500",
                 "--seeds", "2", "--out", str(out), *common]) == 0
    doc = json.loads((out / "dose.json").read_text())
    assert doc["meta"]["counts"] == [2, 3, 10] and doc["meta"]["counts_skipped"] == [500]
    assert doc["meta"]["ranking_matches_neurons_json"]
    assert doc["meta"]["mid_layers"] == list(middle_layers(4, "type1", doc["meta"]["candidate_layers"]))
    assert {r["count"] for r in doc["mid_layers"]} == {2, 3, 10}
    assert (out / "dose.png").stat().st_size > 0 and (out / "dose.csv").read_text().startswith("count,")
