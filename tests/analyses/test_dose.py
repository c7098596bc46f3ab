"""Dose–response: counts ranked from scores, caps, conditions, zero-neuron baseline, the scale sweep, CLI."""

import json

import numpy as np
import pytest
import torch
from tiny import save_model, tiny_lm

from transfer_neurons.analyses.dose import (
    dose_conditions, dose_counts, dose_response, max_count, ranked_neurons, scale_conditions,
    scale_response, seed_drops, sweep_rows,
)
from transfer_neurons.interventions import Mean, Scale, capture_under
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
    assert dose_counts([65], det) == ([], [65])  # the caller says which option asked for them
    with pytest.raises(TransferNeuronsError, match="non-negative"):
        dose_counts([-1], det)


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
    mid, per_layer = sweep_rows(result)
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


def test_scale_sweep_matches_zeroing_at_zero_and_nothing_at_one(lm):
    det = detection(top_n=6)
    pairs = ParallelPairs("t", "en", "nl", EN, NL)
    scaled = scale_response(lm, pairs, det, [2, 0, 1, 0.5], seeds=2, mid_layers=(1, 2), batch_size=3, progress=False)
    zeroed = dose_response(lm, pairs, det, [6], seeds=2, mid_layers=(1, 2), batch_size=3, progress=False)
    assert scaled.scales == [0.0, 0.5, 1.0, 2.0]
    assert [c.label for c in scaled.conditions[0.0]] == ["none", "transfer", "random#0", "random#1"]
    for metric in ("raw", "centred"):
        for label in ("none", "transfer", "random#0", "random#1"):
            # F = 0 is zeroing: the same capture as the count sweep at the detection's top-n
            np.testing.assert_array_equal(scaled.values[metric][0.0][label], zeroed.values[metric][6][label])
            np.testing.assert_array_equal(scaled.values[metric][1.0][label], scaled.values[metric][1.0]["none"])
    mid, per_layer = sweep_rows(scaled)
    rows = {(r["scale"], r["metric"], r["condition"]): r for r in mid}
    assert rows[(1.0, "raw", "transfer")]["drop"] == 0.0 and rows[(1.0, "raw", "random")]["p_vs_none"] == 1.0
    assert rows[(2.0, "raw", "transfer")]["drop"] != 0.0 and rows[(0.5, "raw", "transfer")]["drop"] != 0.0
    assert rows[(2.0, "raw", "random")]["seed_drop_mean"] == pytest.approx(seed_drops(scaled, "raw", 2.0).mean())
    assert len(per_layer) == 4 * 2 * 3 * 4  # scales x metrics x conditions x layers


def test_scale_sweep_cosines_are_those_of_a_scaled_capture(lm):
    det = detection(top_n=6)
    pairs = ParallelPairs("t", "en", "nl", EN, NL)
    scaled = scale_response(lm, pairs, det, [1.5], seeds=1, mid_layers=(1, 2), batch_size=3, progress=False)
    hub = capture_under(lm, EN, None, progress=None).h
    l2 = capture_under(lm, NL, det.neurons, intervention=Scale(1.5), progress=None).h
    want = torch.nn.functional.cosine_similarity(hub.double(), l2.double(), dim=-1).numpy()  # [pair, layer]
    # another batch layout than the sweep's: float32 states agree to about 1e-6
    np.testing.assert_allclose(scaled.values["raw"][1.5]["transfer"], want, atol=1e-5)


def test_scale_conditions_use_the_detection_neurons():
    det = detection(top_n=5)
    conds = scale_conditions(det, 3, seeds=2)
    np.testing.assert_array_equal(conds[1].neurons, det.neurons[:3])
    assert all(len(c.neurons) == 3 for c in conds[2:])


def test_count_sweep_passes_its_intervention_through(lm):
    det = detection(top_n=4)
    pairs = ParallelPairs("t", "en", "nl", EN, NL)
    zero = dose_response(lm, pairs, det, [4], seeds=1, mid_layers=(1, 2), batch_size=3, progress=False)
    mean = dose_response(lm, pairs, det, [4], seeds=1, mid_layers=(1, 2), batch_size=3, progress=False,
                         intervention=Mean(NL))
    assert not np.allclose(zero.values["raw"][4]["transfer"], mean.values["raw"][4]["transfer"])
    np.testing.assert_array_equal(zero.values["raw"][4]["none"], mean.values["raw"][4]["none"])


def test_cli_scale_sweep_writes_numbers_and_vector_figure(tmp_path, lm):
    save_model(lm, tmp_path / "model")
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"en": e, "nl": n}) + "\n" for e, n in zip(EN, NL)), encoding="utf-8")
    common = ["--model", str(tmp_path / "model"), "--batch-size", "2"]
    assert main(["detect", "--type", "type1", "--lang", "nl", "--centroid-data", str(data), "--score-data", str(data),
                 "--top-n", "3", "--out", str(tmp_path / "det"), *common]) == 0
    out = tmp_path / "dose"
    assert main(["--quiet", "dose", "--detection", str(tmp_path / "det"), "--data", str(data), "--scales", "0,0.5,1,2",
                 "--seeds", "2", "--out", str(out), "--figure-format", "svg", *common]) == 0
    doc = json.loads((out / "dose_scale.json").read_text())
    assert doc["meta"]["scales"] == [0.0, 0.5, 1.0, 2.0] and doc["meta"]["neurons"] == 3
    assert {r["scale"] for r in doc["mid_layers"]} == {0.0, 0.5, 1.0, 2.0}
    assert all("p_vs_none_bh" in r for r in doc["per_layer"])
    assert (out / "dose_scale.csv").read_text().startswith("scale,")
    assert (out / "dose_scale.png").stat().st_size > 0 and (out / "dose_scale.svg").read_text().lstrip().startswith("<?xml")
    assert not (out / "dose.json").exists()  # only --scales given: no count sweep


def test_cli_count_sweep_with_patch_intervention(tmp_path, lm):
    save_model(lm, tmp_path / "model")
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"en": e, "nl": n}) + "\n" for e, n in zip(EN, NL)), encoding="utf-8")
    common = ["--model", str(tmp_path / "model"), "--batch-size", "2"]
    assert main(["detect", "--type", "type1", "--lang", "nl", "--centroid-data", str(data), "--score-data", str(data),
                 "--top-n", "3", "--out", str(tmp_path / "det"), *common]) == 0
    out = tmp_path / "dose"
    assert main(["dose", "--detection", str(tmp_path / "det"), "--data", str(data), "--counts", "2,3",
                 "--intervention", "patch", "--seeds", "1", "--out", str(out), *common]) == 0
    assert main(["dose", "--detection", str(tmp_path / "det"), "--data", str(data), "--counts", "2,3",
                 "--seeds", "1", "--out", str(tmp_path / "zero"), *common]) == 0
    patched, zeroed = (json.loads((folder / "dose.json").read_text()) for folder in (out, tmp_path / "zero"))
    assert (patched["meta"]["intervention"], zeroed["meta"]["intervention"]) == ("patch", "zero")
    assert {r["count"] for r in patched["mid_layers"]} == {2, 3}

    def means(doc, condition):
        return [r["mean"] for r in doc["per_layer"] if r["condition"] == condition]

    assert means(patched, "none") == means(zeroed, "none")  # the undeactivated run is the same
    assert means(patched, "transfer") != means(zeroed, "transfer")  # the intervention reached the model
