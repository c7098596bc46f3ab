"""η², ANOVA from sufficient statistics, streaming, share tables vs base rate, and the `specificity` CLI."""

import json

import numpy as np
import pytest
from host_copies import HostCopies
from scipy import stats as sps
from tiny import SENTENCES, save_model, tiny_lm, write_jsonl

from transfer_neurons.analyses.specificity import (
    LanguageStats, anova_from_sums, collect_language_stats, compare_types, group_anova, labels_for, share_rows,
    specificity_protocol, specificity_shares,
)
from transfer_neurons.capture import capture
from transfer_neurons.cli import main
from transfer_neurons.detection import Detection
from transfer_neurons.errors import TransferNeuronsError
from transfer_neurons.outputs import load_npy


def stats_of(groups: dict[str, list[list[float]]]) -> LanguageStats:
    """LanguageStats of hand-written activations: lang -> [sentence][neuron] for a one-layer model."""
    langs = list(groups)
    stats = LanguageStats.empty(langs, 1, len(next(iter(groups.values()))[0]))
    for j, lang in enumerate(langs):
        stats.add(j, np.array(groups[lang], dtype=np.float64)[:, None, :])
    return stats


def test_eta2_is_one_when_the_label_explains_everything():
    # activations [1, 1, 3, 3], label [1, 1, 0, 0]
    result = anova_from_sums([2, 2], [2.0, 6.0], [2.0, 18.0])
    assert result.eta2 == pytest.approx(1.0)
    assert np.isinf(result.f) and result.p == 0.0


def test_eta2_f_and_p_on_a_mixed_case_by_hand():
    # ja [4, 6] vs rest (en [1, 1], ko [0, 2]): means 5 and 1, grand 7/3;
    # SS_between = 2 (8/3)^2 + 4 (4/3)^2 = 64/3, SS_within = 2 + 2 = 4 -> η² = 16/19, F = 64/3 on (1, 4)
    stats = stats_of({"ja": [[4.0], [6.0]], "en": [[1.0], [1.0]], "ko": [[0.0], [2.0]]})
    result = group_anova(stats, ("ja",))
    assert result.eta2[0, 0] == pytest.approx(16 / 19)
    assert result.f[0, 0] == pytest.approx(64 / 3)
    assert (result.dfn, result.dfd) == (1, 4)
    assert result.p[0, 0] == pytest.approx(sps.f.sf(64 / 3, 1, 4))
    # ko [0, 4] vs rest: same means (2 and 2) -> no separation at all
    other = stats_of({"ja": [[1.0], [3.0]], "en": [[2.0], [2.0]], "ko": [[0.0], [4.0]]})
    assert group_anova(other, ("ko",)).eta2[0, 0] == pytest.approx(0.0)


@pytest.mark.parametrize("groups", [2, 3])
def test_f_and_p_match_scipy_f_oneway(groups):
    rng = np.random.default_rng(groups)
    samples = [rng.normal(loc=g * 0.5, size=(4 + g, 5)) for g in range(groups)]  # [sentence, neuron] per group
    result = anova_from_sums(
        [len(s) for s in samples], np.stack([s.sum(0) for s in samples]), np.stack([(s**2).sum(0) for s in samples])
    )
    reference = sps.f_oneway(*samples, axis=0)
    np.testing.assert_allclose(result.f, reference.statistic, rtol=1e-9)
    np.testing.assert_allclose(result.p, reference.pvalue, rtol=1e-9)
    pooled = np.concatenate(samples)
    ss_total = ((pooled - pooled.mean(0)) ** 2).sum(0)
    ss_between = sum(len(s) * (s.mean(0) - pooled.mean(0)) ** 2 for s in samples)
    np.testing.assert_allclose(result.eta2, ss_between / ss_total, rtol=1e-9)


def test_constant_activation_gives_eta2_zero_and_p_one():
    result = anova_from_sums([2, 3], [[0.0, 4.0], [0.0, 6.0]], [[0.0, 8.0], [0.0, 12.0]])
    assert result.eta2.tolist() == [0.0, 0.0] and result.p.tolist() == [1.0, 1.0]
    with pytest.raises(TransferNeuronsError):
        anova_from_sums([2, 0], [1.0, 0.0], [1.0, 0.0])


def test_streamed_statistics_equal_a_direct_computation():
    lm = tiny_lm("gemma3_text")
    texts = {"a": SENTENCES[:4], "b": SENTENCES[3:]}
    stats = collect_language_stats(lm, texts, batch_size=3, progress=False)
    assert stats.langs == ("a", "b") and stats.count.tolist() == [4, 3]
    for j, lang in enumerate(texts):
        a = capture(lm, texts[lang], want=("a",), batch_size=3, progress=None).a.double().numpy()  # [n, layer, d_ff]
        np.testing.assert_allclose(stats.total[j], a.sum(0), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(stats.sumsq[j], (a**2).sum(0), rtol=1e-10, atol=1e-10)
        np.testing.assert_array_equal(stats.positive[j], (a > 0).sum(0))
    assert stats.total.shape == (2, 4, 64) and stats.total.dtype == np.float64


def test_statistics_are_reduced_before_they_reach_the_host():
    """Only [layer, d_ff] sums leave the model's device, never a batch's [batch, layer, d_ff] activations."""
    lm = tiny_lm("llama")
    with HostCopies() as seen:
        collect_language_stats(lm, {"a": SENTENCES, "b": SENTENCES[:3]}, batch_size=3, progress=False)
    assert len(seen.calls) == 3 * 2 * 2  # 3 batches: `.cpu().numpy()` of the float sums of a and a²
    assert set(seen.sizes) == {lm.view.num_layers * lm.view.d_ff}


def test_labels_use_a_family_only_when_it_has_other_members_and_a_rest():
    assert labels_for("ja", ["ja", "en", "ko", "nl", "it"]) == {
        "language": (("ja",), ("en", "ko", "nl", "it")), "family:east-asian": (("ja", "ko"), ("en", "nl", "it"))}
    assert labels_for("nl", ["ja", "en", "nl", "de"]) == {
        "language": (("nl",), ("ja", "en", "de")), "family:germanic": (("en", "nl", "de"), ("ja",))}
    assert labels_for("it", ["it", "en", "ja"]) == {"language": (("it",), ("en", "ja"))}  # Romance has only the target
    assert labels_for("ja", ["ja", "ko"]) == {"language": (("ja",), ("ko",))}  # the family would cover everything
    assert labels_for("nl", ["ja", "en", "nl", "de"], "default") == labels_for("nl", ["ja", "en", "nl", "de"])


def test_paper_labels_group_ja_with_ko_against_nl_it_en_only():
    five = ["ja", "ko", "nl", "it", "en"]
    assert labels_for("ko", five, "paper") == {
        "language": (("ko",), ("ja", "nl", "it", "en")), "family:east-asian": (("ja", "ko"), ("nl", "it", "en"))}
    # en joins nl and it (the default would pair it with nl only, as Germanic, against ja, ko and it)
    assert labels_for("en", five, "paper")["family:european"] == (("nl", "it", "en"), ("ja", "ko"))
    assert labels_for("en", five)["family:germanic"] == (("nl", "en"), ("ja", "ko", "it"))
    # a language in neither group is left out of the family label but stays in the language label's rest
    assert labels_for("ja", ["ja", "ko", "en", "de"], "paper") == {
        "language": (("ja",), ("ko", "en", "de")), "family:east-asian": (("ja", "ko"), ("en",))}
    assert labels_for("de", ["de", "en", "nl", "ja"], "paper") == {"language": (("de",), ("en", "nl", "ja"))}
    assert labels_for("ja", ["ja", "ko", "de"], "paper") == {"language": (("ja",), ("ko", "de"))}  # no other family
    with pytest.raises(TransferNeuronsError, match="specificity protocol"):
        specificity_protocol("Paper")


def test_group_anova_leaves_out_languages_on_neither_side():
    groups = {"ja": [[4.0, 1.0], [6.0, 2.0]], "ko": [[5.0, 0.0]], "en": [[1.0, 3.0], [2.0, 1.0]], "de": [[9.0, 7.0]]}
    stats = stats_of(groups)
    paper = group_anova(stats, ("ja", "ko"), ("en",))
    without_de = group_anova(stats_of({k: v for k, v in groups.items() if k != "de"}), ("ja", "ko"))
    np.testing.assert_allclose(paper.eta2, without_de.eta2, rtol=1e-12)  # as if de was never measured
    np.testing.assert_allclose(paper.p, without_de.p, rtol=1e-12)
    assert (paper.dfn, paper.dfd) == (1, 3)
    # ja+ko [4, 6, 5] vs en [1, 2]: means 5 and 1.5, grand 3.6; SS_between = 3 (1.4)^2 + 2 (2.1)^2 = 14.7,
    # SS_within = 2 + 0.5 = 2.5 -> η² = 14.7 / 17.2
    assert paper.eta2[0, 0] == pytest.approx(14.7 / 17.2)
    assert group_anova(stats, ("ja", "ko")).eta2[0, 0] != pytest.approx(14.7 / 17.2)  # de in the rest changes it
    with pytest.raises(TransferNeuronsError, match="both sides"):
        group_anova(stats, ("ja", "ko"), ("ko",))


def test_share_and_base_rate_on_hand_made_arrays():
    passing = np.zeros((3, 10), dtype=bool)
    passing[[1, 1, 1, 2], [0, 1, 3, 5]] = True
    passing[0, :] = True  # outside the candidate layers: must not count in the base rate
    neurons = np.array([[1, 0], [1, 1], [2, 5], [2, 6]])
    row = share_rows(passing, neurons, (1, 2), {"type": "type2"})
    assert row["type"] == "type2"
    assert (row["k_pass"], row["k"], row["base_pass"], row["base_total"]) == (3, 4, 4, 20)
    assert row["share"] == 0.75 and row["base_rate"] == 0.2 and row["enrichment"] == pytest.approx(3.75)
    # P(X >= 3), X ~ hypergeometric(20 neurons, 4 passing, 4 drawn) = (C(4,3) C(16,1) + 1) / C(20,4)
    assert row["p_vs_base"] == pytest.approx(65 / 4845)
    with pytest.raises(TransferNeuronsError):
        share_rows(passing, np.array([[0, 1]]), (1, 2), {})


def detection(neuron_type: str, lang: str, layers, neurons) -> Detection:
    """A hand-built detection of a 2-layer, 4-neuron model."""
    shape = (2, 4)
    return Detection(neuron_type, lang, np.zeros(shape), np.zeros(shape), np.zeros((2, 3)), tuple(layers),
                     np.array(neurons), {})


def test_specificity_shares_and_type_comparison():
    # 2 layers x 4 neurons; neuron (1, 0) is ja [5, 6] vs rest [0, 1, 0]: means 5.5 and 1/3, grand 2.4,
    # SS_between = 2 (3.1)^2 + 3 (31/15)^2 = 961/30, SS_within = 1/2 + 2/3 = 35/30 -> η² = 961/996; (0, 3) is constant 2
    ja = np.array([[[5, 1, 0, 2], [5, 3, 1, 2]], [[6, 1, 0, 2], [6, 3, 1, 2]]], dtype=float)  # [n, layer, d_ff]
    rest = np.array([[[0, 0, 0, 2], [0, 1, 0, 2]], [[1, 2, 0, 2], [1, 2, 1, 2]], [[0, 1, 1, 2], [0, 3, 0, 2]]], float)
    stats = LanguageStats.empty(["ja", "en"], 2, 4)
    stats.add(0, ja)
    stats.add(1, rest)
    dets = [detection("type1", "ja", [0], [[0, 0], [0, 1]]), detection("type2", "ja", [1], [[1, 0], [1, 2]])]
    rows, anovas = specificity_shares(stats, dets, thresholds=(0.5,), alpha=0.05)
    assert [(r["type"], r["label"]) for r in rows] == [("type1", "language"), ("type2", "language")]
    eta2 = anovas[("ja", "language")].eta2
    assert eta2[1, 0] == pytest.approx(961 / 996) and eta2[0, 3] == 0.0
    passing = (eta2 >= 0.5) & (anovas[("ja", "language")].p < 0.05)
    expected = [int(passing[0, [0, 1]].sum()), int(passing[1, [0, 2]].sum())]
    assert [r["k_pass"] for r in rows] == expected
    assert [r["base_pass"] for r in rows] == [int(passing[0].sum()), int(passing[1].sum())]
    (cmp,) = compare_types(rows)
    assert cmp["p_type1_vs_type2"] == pytest.approx(
        sps.fisher_exact([[expected[0], 2 - expected[0]], [expected[1], 2 - expected[1]]]).pvalue
    )
    with pytest.raises(TransferNeuronsError):
        specificity_shares(stats, [detection("type1", "ko", [0], [[0, 0]])])


def test_paper_protocol_shares_use_the_paper_family_label():
    rng = np.random.default_rng(3)
    stats = LanguageStats.empty(["ja", "ko", "en", "de"], 2, 4)
    for j in range(4):
        stats.add(j, rng.normal(loc=j, size=(5, 2, 4)))
    dets = [detection("type2", "ja", [1], [[1, 0], [1, 2]])]
    default, _ = specificity_shares(stats, dets, thresholds=(0.1,))
    paper, anovas = specificity_shares(stats, dets, thresholds=(0.1,), protocol="paper")
    assert [(r["label"], r["group"], r["versus"]) for r in default] == [
        ("language", "ja", "ko+en+de"), ("family:east-asian", "ja+ko", "en+de")]
    assert [(r["label"], r["group"], r["versus"]) for r in paper] == [
        ("language", "ja", "ko+en+de"), ("family:east-asian", "ja+ko", "en")]
    assert paper[0] == default[0]  # the language label is the same under both
    np.testing.assert_array_equal(anovas[("ja", "family:east-asian")].eta2, group_anova(stats, ("ja", "ko"), ("en",)).eta2)


ROWS = [
    {"en": "The cat sleeps.", "ja": "猫が寝ている。", "ko": "고양이가 잔다.", "nl": "De kat slaapt."},
    {"en": "I like green tea.", "ja": "緑茶が好きです。", "ko": "녹차를 좋아해요.", "nl": "Ik hou van groene thee."},
    {"en": "Where is the station?", "ja": "駅はどこですか。", "ko": "역이 어디예요?", "nl": "Waar is het station?"},
    {"en": "It is raining today.", "ja": "今日は雨が降っています。", "ko": "오늘 비가 와요.", "nl": "Het regent vandaag."},
    {"en": "My brother is a doctor.", "ja": "兄は医者です。", "ko": "형은 의사예요.", "nl": "Mijn broer is dokter."},
]


@pytest.fixture(scope="module")
def cli_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("specificity")
    lm = tiny_lm("gemma3_text")
    save_model(lm, root / "model")
    data = root / "rows.jsonl"
    write_jsonl(data, ROWS)
    model = ["--model", str(root / "model"), "--batch-size", "2"]
    for kind in ("type1", "type2"):
        assert main(["detect", "--type", kind, "--lang", "ja", "--centroid-data", str(data), "--score-data", str(data),
                     "--top-n", "6", *model, "--out", str(root / kind)]) == 0
    return root, data, model


def test_cli_writes_tables_arrays_and_figures(cli_setup):
    root, data, model = cli_setup
    out = root / "out"
    code = main(["specificity", "--detections", str(root / "type1"), str(root / "type2"), "--langs", "ja,en,ko,nl",
                 "--data", str(data), "--per-lang", "4", "--lape-share", "0.05", *model, "--out", str(out)])
    assert code == 0
    result = json.loads((out / "specificity.json").read_text())
    assert result["meta"]["sentences"] == {"ja": 4, "en": 4, "ko": 4, "nl": 4}
    # 2 types x (language, family:east-asian = ja+ko) x 2 thresholds
    assert len(result["shares"]) == 8 and len(result["type_comparison"]) == 4
    assert {r["group"] for r in result["shares"]} == {"ja", "ja+ko"}
    eta2, p = load_npy(out / "eta2.npy"), load_npy(out / "anova_p.npy")
    assert eta2.shape == p.shape == (4, 4, 64)
    neurons = np.array([[n["layer"], n["neuron"]] for n in json.loads((root / "type2/neurons.json").read_text())["neurons"]])
    row = next(r for r in result["shares"] if r["type"] == "type2" and r["label"] == "language" and r["eta2_min"] == 0.1)
    passing = (eta2[0] >= 0.1) & (p[0] < 0.05)  # ja is language 0
    assert row["k_pass"] == int(passing[neurons[:, 0], neurons[:, 1]].sum())
    assert row["base_pass"] == int(passing[3].sum()) and row["base_total"] == 64
    assert len(result["lape_overlap"]) == 4 and result["meta"]["lape"]["selected"] == len(result["lape_neurons"])
    assert result["meta"]["protocol"] == "default" and "germanic" in result["meta"]["families"]
    for name in ("shares.csv", "type_comparison.csv", "lape_overlap.csv", "lape_neurons.csv", "shares.png",
                 "eta2_hist.png", "activation_probability.npy"):
        assert (out / name).stat().st_size > 0


def test_cli_paper_protocol_records_the_paper_families(cli_setup, capsys):
    root, data, model = cli_setup
    out = root / "paper"
    assert main(["specificity", "--detections", str(root / "type2"), "--langs", "ja,en,ko,nl", "--data", str(data),
                 "--per-lang", "3", "--protocol", "paper", *model, "--out", str(out)]) == 0
    result = json.loads((out / "specificity.json").read_text())
    assert result["meta"]["protocol"] == "paper"
    assert result["meta"]["families"] == {"east-asian": ["ja", "ko"], "european": ["nl", "it", "en"]}
    family = {r["versus"] for r in result["shares"] if r["label"] == "family:east-asian"}
    assert family == {"en+nl"}
    assert "protocol paper" in capsys.readouterr().out


def test_cli_refuses_a_detection_language_it_does_not_measure(cli_setup, capsys):
    root, data, model = cli_setup
    code = main(["specificity", "--detections", str(root / "type1"), "--langs", "en,ko", "--data", str(data),
                 *model, "--out", str(root / "bad")])
    assert code == 2 and "not in --langs" in capsys.readouterr().err
