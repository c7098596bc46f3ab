"""Component counts, centroid cosines and merge numbers on constructed arrays; latent_spaces and the `latent` CLI on a tiny model."""

import json

import numpy as np
import pytest
from sklearn.decomposition import PCA
from tiny import save_model, tiny_lm, write_jsonl

from transfer_neurons.analyses.latent_spaces import (
    centred_cosine_to,
    centroid_cosines,
    components_for_variance,
    l2_rows,
    latent_protocol,
    latent_spaces,
    merge_numbers,
    merge_rows,
    own_nearest,
)
from transfer_neurons.cli import main
from transfer_neurons.conditions import Condition
from transfer_neurons.errors import TransferNeuronsError
from transfer_neurons.states import StateProvider


def with_variances(shares, n=50, d=9, seed=0):
    """n rows in d dimensions whose centred variance along orthogonal directions has exactly these shares."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, len(shares)))
    z -= z.mean(axis=0)
    q, _ = np.linalg.qr(z)  # orthonormal, centred columns
    rotation, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return 5.0 + q * np.sqrt(shares) @ rotation[: len(shares)]


def test_component_counts_on_known_variance_shares():
    x = with_variances([0.7, 0.22, 0.06, 0.02])  # cumulative 0.70, 0.92, 0.98, 1.00
    assert components_for_variance(x).tolist() == [2, 3, 4]
    assert components_for_variance(x, (0.5,)).tolist() == [1]


def test_uncentred_counts_let_a_common_offset_fill_the_first_component():
    x = with_variances([0.7, 0.22, 0.06, 0.02])  # every row offset by 5 in all 9 dimensions
    assert components_for_variance(x, centred=True).tolist() == [2, 3, 4]
    # about zero, the offset (50 rows x 9 x 25 = 11250) dwarfs the spread (1): one component holds > 99 %
    assert components_for_variance(x, centred=False).tolist() == [1, 1, 1]
    # without the offset the rows are already centred, so both spectra agree
    assert components_for_variance(x - 5.0, centred=False).tolist() == [2, 3, 4]
    assert components_for_variance(np.ones((5, 4)), centred=False).tolist() == [1, 1, 1]  # rank one about zero


def test_component_counts_on_clusters_of_known_rank():
    rng = np.random.default_rng(1)
    within = np.linalg.qr(rng.normal(size=(20, 2)))[0].T  # every cluster spreads in one 2-D plane, equally per axis
    centres = rng.normal(size=(3, 20))  # three centres span 2 more directions after centring
    clusters = [c + rng.normal(size=(40, 2)) @ within for c in centres]
    assert all(components_for_variance(c).tolist() == [2, 2, 2] for c in clusters)
    assert components_for_variance(np.concatenate(clusters)).tolist()[-1] == 4
    assert components_for_variance(np.ones((5, 4))).tolist() == [0, 0, 0]


def test_centroid_cosines_symmetric_with_unit_diagonal():
    rng = np.random.default_rng(2)
    centroids = rng.normal(size=(4, 3, 6))  # [lang, layer, d]
    for mean in (None, centroids.mean(axis=0)):
        cos = centroid_cosines(centroids, mean)
        assert cos.shape == (3, 4, 4)
        assert np.allclose(cos, cos.transpose(0, 2, 1)) and np.allclose(np.diagonal(cos, axis1=1, axis2=2), 1)
    two = np.array([[[1.0, 0.0]], [[1.0, 1.0]]])
    assert centroid_cosines(two)[0, 0, 1] == pytest.approx(np.sqrt(0.5))
    assert centroid_cosines(two, np.array([[1.0, 0.5]]))[0, 0, 1] == pytest.approx(-1.0)


def test_merge_numbers_hand_computed():
    a = np.array([[0.0, 0.0], [2.0, 0.0]])[:, None, :]  # centroid (1, 0), mean squared spread 1
    b = np.array([[1.0, 4.0], [1.0, 6.0]])[:, None, :]  # centroid (1, 5), mean squared spread 1
    distance, separation = merge_numbers([a, b], [np.ones((1, 2)), np.ones((1, 2))])
    assert distance[0, 0] == pytest.approx(5.0) and separation[0, 0] == pytest.approx(5.0)
    distance, separation = merge_numbers([a, b], [np.array([[2, 0]]), np.array([[1, 1]])])  # A resampled to (0,0) twice
    assert distance[0, 0] == pytest.approx(np.hypot(1, 5)) and separation[0, 0] == pytest.approx(np.hypot(1, 5) / np.sqrt(0.5))


def test_own_nearest_on_constructed_states():
    mean = np.zeros((1, 3))  # one layer, d = 3; centroids of hub, L2 and a third language on the axes
    centroids = np.eye(3)[:, None, :]  # [lang, layer, d]
    states = np.array([[0.1, 0.9, 0.0], [0.9, 0.1, 0.0], [0.2, 0.5, 0.6], [0.0, 3.0, 2.9]])[:, None, :]
    assert own_nearest(states, centroids, 1, mean)[:, 0].tolist() == [1.0, 0.0, 0.0, 1.0]
    # centring changes the answer: subtract a mean near the L2 centroid and the first state points to the hub side
    assert own_nearest(states[:1], centroids, 1, np.array([[0.0, 0.95, 0.0]]))[0, 0] == 0.0
    tie = np.array([[1.0, 1.0, 0.0]])[:, None, :]
    assert own_nearest(tie, centroids, 1, mean)[0, 0] == 0.0  # a tie is not "own"


def test_centred_cosine_to_a_centroid_hand_computed():
    states = np.array([[2.0, 1.0], [1.0, 3.0]])[:, None, :]  # [n, layer, d]
    mean = np.array([[1.0, 1.0]])
    cos = centred_cosine_to(states, np.array([[3.0, 1.0]]), mean)  # centred: (1, 0), (0, 2) vs (2, 0)
    np.testing.assert_allclose(cos[:, 0], [1.0, 0.0], atol=1e-12)  # exact up to float rounding


TEXTS = {
    "en": ["The cat sleeps.", "I like green tea.", "Where is the station?", "It is raining today.", "My brother is a doctor."],
    "ja": ["猫が寝ている。", "緑茶が好きです。", "駅はどこですか。", "今日は雨が降っています。", "兄は医者です。"],
    "ko": ["고양이가 잔다.", "나는 녹차를 좋아한다.", "역이 어디예요?", "오늘은 비가 온다.", "형은 의사이다."],
}


def test_latent_spaces_hub_untouched_and_empty_sets_change_nothing():
    lm = tiny_lm("qwen2")
    conditions = [Condition("none", None), Condition("transfer", np.array([[3, 0]])), Condition("anti", np.array([[3, 1]]))]
    neurons = {"transfer": {"ja": np.array([[3, 0], [3, 5]]), "ko": np.array([[3, 2]])}, "anti": {"ja": None, "ko": None}}
    ls = latent_spaces(lm, TEXTS, "en", conditions, neurons, n_boot=20, batch_size=2, progress=False)
    none, transfer, anti = ls.spaces["none"], ls.spaces["transfer"], ls.spaces["anti"]
    assert ls.langs == ("en", "ja", "ko") and none.centroids.shape == (3, 4, 32)
    assert np.array_equal(none.centroids[0], transfer.centroids[0])  # hub never deactivated
    assert not np.allclose(none.centroids[1, 3], transfer.centroids[1, 3]) and np.allclose(none.centroids[:, :3], transfer.centroids[:, :3])
    assert np.array_equal(none.centroids, anti.centroids) and anti.projection is None
    assert none.projection[1].shape == (5, 4, 2) and ls.explained.shape == (4, 2)
    rows = [r for r in merge_rows(ls) if r["condition"] == "anti"]
    assert all(r["drop"] == 0 and r["p_vs_none"] == 1 for r in rows)
    claim2 = l2_rows(ls, (2, 3))
    assert {(r["lang"], r["metric"]) for r in claim2} == {(l, m) for l in ("ja", "ko") for m in ("own_nearest", "hub_cosine")}
    assert all(r["drop"] == 0 for r in claim2 if r["condition"] == "anti")  # empty sets change nothing
    assert all(r["layer"] == "2-3" and r["items"] == 5 for r in claim2)
    moved = [r for r in claim2 if r["condition"] == "transfer" and r["metric"] == "hub_cosine"]
    assert all(abs(r["drop"]) > 0 for r in moved)  # layer 3 states moved, so their cosine to en moved
    shares = [r["mean"] for r in claim2 if r["metric"] == "own_nearest"]
    assert all(0.0 <= v <= 1.0 for v in shares)
    with pytest.raises(TransferNeuronsError):
        latent_spaces(lm, {"ja": TEXTS["ja"]}, "en", conditions, neurons, progress=False)


def test_paper_protocol_refits_the_frame_per_condition_and_takes_uncentred_spectra():
    lm = tiny_lm("qwen2")
    provider = StateProvider(lm, 2)  # one cache, so both protocols and the checks below see the same states
    conditions = [Condition("none", None), Condition("transfer", np.array([[3, 0]]))]
    neurons = {"transfer": {"ja": np.array([[3, 0], [3, 5]]), "ko": np.array([[3, 2]])}}
    runs = {name: latent_spaces(provider, TEXTS, "en", conditions, neurons, n_boot=10, progress=False, protocol=name)
            for name in ("default", "paper")}
    default, paper = runs["default"], runs["paper"]
    assert default.protocol.name == "default" and paper.protocol.name == "paper"
    # default: one frame, so the hub (never deactivated) lands on the same points under every condition
    for l in range(4):
        np.testing.assert_array_equal(default.spaces["transfer"].projection[0][:, l], default.spaces["none"].projection[0][:, l])
    np.testing.assert_array_equal(default.spaces["transfer"].explained, default.explained)
    # paper: the undeactivated panel is the same frame; the transfer panel is refitted, which matters only at
    # layer 3, the one layer whose states the deactivation changed (tolerance: float32 states under hooks may
    # differ in the last bits below layer 3, and a refit moves the projection by as little)
    for i in range(3):
        np.testing.assert_allclose(paper.spaces["none"].projection[i], default.spaces["none"].projection[i], atol=1e-5)
        np.testing.assert_allclose(paper.spaces["transfer"].projection[i][:, :3], default.spaces["none"].projection[i][:, :3],
                                   atol=1e-5)
    assert not np.allclose(paper.spaces["transfer"].projection[0][:, 3], default.spaces["transfer"].projection[0][:, 3])
    # ... and that frame is a PCA of the transfer condition's own layer-3 states of all languages (tolerance:
    # the same float64 fit repeated, so only rounding differs)
    states = [provider.get(TEXTS["en"]).h, provider.get(TEXTS["ja"], neurons["transfer"]["ja"]).h,
              provider.get(TEXTS["ko"], neurons["transfer"]["ko"]).h]  # [n, layer, d] each
    layer3 = [s[:, 3].double().numpy() for s in states]
    own = PCA(n_components=2, random_state=0).fit(np.concatenate(layer3))
    for i, x in enumerate(layer3):
        np.testing.assert_allclose(paper.spaces["transfer"].projection[i][:, 3], own.transform(x), atol=1e-9)
    np.testing.assert_allclose(paper.spaces["transfer"].explained[3], own.explained_variance_ratio_, atol=1e-9)
    # spectra: centred under default, uncentred under paper, for every language, layer and condition
    for label in ("none", "transfer"):
        for i, s in enumerate(states if label == "transfer" else [provider.get(TEXTS[lang]).h for lang in TEXTS]):
            x = s.double().numpy()
            for l in range(4):
                assert default.spaces[label].components[i, l].tolist() == components_for_variance(x[:, l]).tolist()
                assert paper.spaces[label].components[i, l].tolist() == components_for_variance(x[:, l], centred=False).tolist()
    # nothing else changes: centroids, merge numbers and claim 2's statistics are the same under both protocols
    for label in ("none", "transfer"):
        np.testing.assert_array_equal(paper.spaces[label].centroids, default.spaces[label].centroids)
        for metric in default.spaces[label].merge:
            np.testing.assert_array_equal(paper.spaces[label].merge[metric], default.spaces[label].merge[metric])
    assert l2_rows(paper, (2, 3)) == l2_rows(default, (2, 3))
    with pytest.raises(TransferNeuronsError, match="latent-space protocol"):
        latent_protocol("papers")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny saved model, a small parallel JSONL file and Type-2 detections for ja and ko made by the CLI."""
    root = tmp_path_factory.mktemp("latent")
    lm = tiny_lm("gemma3_text")
    save_model(lm, root / "model")
    data = root / "pairs.jsonl"
    rows = [dict(zip(TEXTS, texts)) for texts in zip(*TEXTS.values())]
    write_jsonl(data, rows)
    model = ["--model", str(root / "model"), "--batch-size", "5"]
    for lang in ("ja", "ko"):
        assert main(["detect", "--type", "type2", "--lang", lang, "--centroid-data", str(data), "--score-data", str(data),
                     "--top-n", "4", "--out", str(root / f"det-{lang}"), *model]) == 0
    return root, data, model


def test_latent_cli_writes_tables_and_figures(saved, capsys):
    root, data, model = saved
    out = root / "out"
    assert main(["latent", "--detections", str(root / "det-ja"), str(root / "det-ko"), "--langs", "ja,ko", "--data", str(data),
                 "--controls", "random:2", "--n-boot", "20", "--out", str(out), *model]) == 0
    record = json.loads((out / "latent.json").read_text())
    assert record["langs"] == ["en", "ja", "ko"] and record["type"] == "type2" and record["intervention"] == "zero"
    assert {r["condition"] for r in record["merge_rows"]} == {"none", "transfer", "random"}
    assert {(r["lang_a"], r["lang_b"]) for r in record["centroid_pairs"]} == {("en", "ja"), ("en", "ko"), ("ja", "ko")}
    assert {(r["lang"], r["metric"]) for r in record["l2_rows"]} == {(l, m) for l in ("ja", "ko") for m in ("own_nearest", "hub_cosine")}
    for name in ("latent_pca_none", "latent_pca_transfer", "latent_centroids_raw_none", "latent_centroids_centred_transfer",
                 "latent_components", "latent_merge"):
        assert (out / f"{name}.png").stat().st_size > 10_000
    assert "centroid distance" in capsys.readouterr().out
    assert record["protocol"] == "default" and "uncentred" not in record["spectra"] and "undeactivated" in record["pca_frame"]
    assert main(["latent", "--detections", str(root / "det-ja"), str(root / "det-ko"), "--langs", "ja,ko", "--data", str(data),
                 "--controls", "", "--n-boot", "10", "--protocol", "paper", "--out", str(root / "paper"), *model]) == 0
    paper = json.loads((root / "paper/latent.json").read_text())
    assert paper["protocol"] == "paper" and "uncentred" in paper["spectra"] and "own PCA" in paper["pca_frame"]
    assert "protocol paper" in capsys.readouterr().out
    shared = [r for r in record["centroid_pairs"] if r["condition"] in ("none", "transfer")]
    assert paper["centroid_pairs"] == shared  # the frame and spectra change, the centroids do not
    assert main(["latent", "--langs", "ja", "--type", "none", "--data", str(data), "--n-boot", "10",
                 "--out", str(root / "plain"), *model]) == 0
    plain = json.loads((root / "plain/latent.json").read_text())
    assert {r["condition"] for r in plain["merge_rows"]} == {"none"} and plain["l2_rows"] == []  # nothing to compare
    assert main(["latent", "--detections", str(root / "det-ja"), "--langs", "ja,ko", "--data", str(data),
                 "--out", str(root / "bad"), *model]) == 2
    assert "no type2 detection folder for ko" in capsys.readouterr().err
