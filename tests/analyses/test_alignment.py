"""Mutual kNN and debiased CKA on constructed arrays, the paired bootstrap table, and the `alignment` CLI."""

import json

import numpy as np
import pytest
import torch
from scipy.stats import ortho_group
from tiny import save_model, tiny_lm, write_jsonl

from transfer_neurons.analyses.alignment import (
    alignment_of,
    debiased_cka,
    gram,
    mutual_knn,
    mutual_knn_items,
    unbiased_hsic,
    weighted_hsic,
)
from transfer_neurons.cli import main
from transfer_neurons.stats import resample_counts
from transfer_neurons.errors import TransferNeuronsError


def on_circle(degrees):
    rad = np.deg2rad(degrees)
    return np.stack([np.cos(rad), np.sin(rad)], axis=1)


def test_mutual_knn_identical_representations_is_one():
    x = np.random.default_rng(0).normal(size=(20, 5))
    assert np.all(mutual_knn_items(x, x, 3) == 1.0)
    assert np.all(mutual_knn_items(x, 7 * x, 5) == 1.0)  # only directions count


def test_mutual_knn_swapped_items_hand_computed():
    # x: nearest neighbours 0->1, 1->0, 2->1, 3->4, 4->3, 5->4 (angles 0,10,25 | 90,100,115)
    x = on_circle([0, 10, 25, 90, 100, 115])
    # y: items 2 and 3 swap places: 0->1, 1->0, 2->4, 3->1, 4->2, 5->4; items 0, 1, 5 agree
    y = on_circle([0, 10, 90, 25, 100, 115])
    assert mutual_knn_items(x, y, 1) == pytest.approx([1, 1, 0, 0, 0, 1])
    # k=2: x sets {1,2},{0,2},{1,0},{4,5},{3,5},{4,3}; y sets {1,3},{0,3},{4,5},{1,0},{2,5},{4,2}
    assert mutual_knn_items(x, y, 2) == pytest.approx([0.5, 0.5, 0.0, 0.0, 0.5, 0.5])


def test_mutual_knn_per_layer_and_bad_k():
    x = on_circle([0, 10, 25, 90, 100, 115])
    y = on_circle([0, 10, 90, 25, 100, 115])
    layered = mutual_knn(np.stack([x, x], 1), np.stack([x, y], 1), 1)  # [item, layer]
    assert layered.shape == (6, 2) and layered[:, 0].mean() == 1.0 and layered[:, 1].mean() == 0.5
    with pytest.raises(TransferNeuronsError):
        mutual_knn_items(x, y, 6)


def test_debiased_cka_invariances_and_extremes():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 8)) @ rng.normal(size=(8, 8))
    assert debiased_cka(x, x) == pytest.approx(1.0)
    q = ortho_group.rvs(8, random_state=1)
    assert debiased_cka(x, x @ q * 3.7) == pytest.approx(1.0)
    y = rng.normal(size=(60, 12))
    assert debiased_cka(x, y) == pytest.approx(debiased_cka(x @ q, 0.2 * y @ ortho_group.rvs(12, random_state=2)))
    many_x, many_y = rng.normal(size=(2000, 10)), rng.normal(size=(2000, 10))
    assert abs(debiased_cka(many_x, many_y)) < 0.01  # the biased estimator gives ~d/n-ish positive values


def test_unbiased_hsic_matches_the_u_statistic_definition():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(7, 3)), rng.normal(size=(7, 2))
    k, l = gram(x), gram(y)
    n = 7
    # Song et al. 2012: HSIC = E[k_ij l_ij] + E[k_ij] E[l_qr] - 2 E[k_ij l_iq] over distinct indices
    idx = [(i, j) for i in range(n) for j in range(n) if i != j]
    t1 = np.mean([k[i, j] * l[i, j] for i, j in idx])
    t2 = np.mean([k[i, j] * l[q, r] for i, j in idx for q, r in idx if len({i, j, q, r}) == 4])
    t3 = np.mean([k[i, j] * l[i, q] for i in range(n) for j in range(n) for q in range(n) if len({i, j, q}) == 3])
    assert unbiased_hsic(k, l) == pytest.approx(t1 + t2 - 2 * t3)


def brute_weighted_hsic(k, l, w):
    """The U-statistic over distinct original items, each tuple weighted by the product of multiplicities."""
    n = len(w)
    idx = range(n)
    def mean(terms):
        num = sum(weight * value for weight, value in terms)
        return num / sum(weight for weight, _ in terms)
    t1 = mean([(w[i] * w[j], k[i, j] * l[i, j]) for i in idx for j in idx if i != j])
    t2 = mean([(w[i] * w[j] * w[q] * w[r], k[i, j] * l[q, r]) for i in idx for j in idx for q in idx for r in idx
               if len({i, j, q, r}) == 4])
    t3 = mean([(w[i] * w[j] * w[q], k[i, j] * l[i, q]) for i in idx for j in idx for q in idx if len({i, j, q}) == 3])
    return t1 + t2 - 2 * t3


def test_weighted_hsic_is_the_point_estimate_at_unit_weights_and_matches_brute_force():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(7, 4)) + 50, rng.normal(size=(7, 3))
    k, l = gram(x), gram(y)
    assert weighted_hsic(k, l, np.ones((2, 7))) == pytest.approx(np.full(2, unbiased_hsic(k, l)))
    w = np.array([[2, 0, 1, 3, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1]])
    assert weighted_hsic(k, l, w)[0] == pytest.approx(brute_weighted_hsic(k, l, w[0]))
    assert np.isnan(weighted_hsic(k, l, np.array([[4, 3, 0, 0, 0, 0, 0]])))[0]  # fewer than 4 distinct items
    counts = resample_counts(10, 5, np.random.default_rng(0))
    assert counts.shape == (5, 10) and np.all(counts.sum(axis=1) == 10)


def test_bootstrap_interval_of_cka_covers_the_point_estimate():
    rng = np.random.default_rng(6)
    shared = rng.normal(size=(80, 3))
    hub = np.stack([np.c_[shared, rng.normal(size=(80, 5))] + 100, np.c_[rng.normal(size=(80, 8))]], axis=1)
    l2 = np.stack([np.c_[shared, rng.normal(size=(80, 5))] - 40, np.c_[rng.normal(size=(80, 8))]], axis=1)
    al = alignment_of(torch.tensor(hub), {"none": torch.tensor(l2)}, torch.zeros(2, 8, dtype=torch.float64),
                      ks=(3,), n_boot=300)
    low, high = np.nanquantile(al.cka_boot["none"], [0.025, 0.975], axis=0)
    assert np.all((low <= al.cka["none"]) & (al.cka["none"] <= high))
    assert al.cka["none"][0] > 0.3 and abs(al.cka["none"][1]) < 0.1


def test_alignment_of_identical_l2_is_perfect_and_shuffled_is_not():
    rng = np.random.default_rng(5)
    hub = torch.tensor(rng.normal(size=(40, 2, 6)), dtype=torch.float32)
    mean = hub.double().mean(0)
    al = alignment_of(hub, {"none": hub, "shuffled": hub[torch.randperm(40, generator=torch.Generator().manual_seed(0))]},
                      mean, ks=(3,), n_boot=50)
    assert np.all(al.knn["mknn@3_raw"]["none"] == 1) and np.all(al.knn["mknn@3_centred"]["none"] == 1)
    assert al.cka["none"] == pytest.approx([1, 1]) and np.abs(al.cka["shuffled"]).max() < 0.3
    assert al.knn["mknn@3_raw"]["shuffled"].mean() < 0.4
    assert al.cka_boot["none"].shape == (50, 2)


ROWS = [
    {"en": "The cat sleeps.", "ja": "猫が寝ている。", "ko": "고양이가 잔다."},
    {"en": "I like green tea.", "ja": "緑茶が好きです。", "ko": "나는 녹차를 좋아한다."},
    {"en": "Where is the station?", "ja": "駅はどこですか。", "ko": "역이 어디예요?"},
    {"en": "It is raining today.", "ja": "今日は雨が降っています。", "ko": "오늘은 비가 온다."},
    {"en": "My brother is a doctor.", "ja": "兄は医者です。", "ko": "형은 의사이다."},
    {"en": "The book is on the table.", "ja": "本はテーブルの上にある。", "ko": "책은 탁자 위에 있다."},
    {"en": "We went to the sea.", "ja": "私たちは海に行った。", "ko": "우리는 바다에 갔다."},
    {"en": "Please open the window.", "ja": "窓を開けてください。", "ko": "창문을 열어 주세요."},
]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny saved model, a small parallel JSONL file and a Type-1 ja detection made by the CLI."""
    root = tmp_path_factory.mktemp("alignment")
    lm = tiny_lm("llama")
    save_model(lm, root / "model")
    data = root / "pairs.jsonl"
    write_jsonl(data, ROWS)
    model = ["--model", str(root / "model"), "--batch-size", "4"]
    assert main(["detect", "--type", "type1", "--lang", "ja", "--centroid-data", str(data), "--score-data", str(data),
                 "--top-n", "6", "--out", str(root / "det"), *model]) == 0
    return root, data, model


def test_alignment_cli_writes_tables_and_figure(saved, capsys):
    root, data, model = saved
    out = root / "out"
    assert main(["alignment", "--detection", str(root / "det"), "--data", str(data), "--k", "2,3",
                 "--controls", "random:2,anti", "--n-boot", "40", "--out", str(out), *model]) == 0
    record = json.loads((out / "alignment.json").read_text())
    metrics = {r["metric"] for r in record["per_layer"]}
    assert metrics == {"mknn@2_raw", "mknn@3_raw", "mknn@2_centred", "mknn@3_centred", "cka"}
    assert {r["condition"] for r in record["per_layer"]} == {"none", "transfer", "random", "anti"}
    assert len([r for r in record["per_layer"] if r["metric"] == "cka" and r["condition"] == "none"]) == 4
    assert (out / "alignment.csv").is_file() and (out / "alignment_mid.csv").is_file()
    assert (out / "alignment_layers.png").stat().st_size > 10_000
    assert "debiased linear CKA" in capsys.readouterr().out
    assert main(["alignment", "--detection", str(root / "det"), "--data", str(data), "--k", "8",
                 "--out", str(out), *model]) == 2


@pytest.mark.parametrize("ks", [[], (2.5,), [0], [4]])
def test_kernel_alignment_names_bad_k_before_any_model_work(ks):
    from transfer_neurons.analyses.alignment import kernel_alignment
    from transfer_neurons.data import ParallelPairs

    pairs = ParallelPairs("x", "en", "ja", ("a", "b", "c", "d"), ("e", "f", "g", "h"))
    with pytest.raises(TransferNeuronsError, match="k values must be integers between 1 and pairs − 1 = 3"):
        kernel_alignment(None, pairs, [], ks=ks)
