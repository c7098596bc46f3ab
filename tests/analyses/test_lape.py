"""LAPE (Tang et al. 2024) on constructed activation-probability tables, and overlaps vs chance."""

import numpy as np
import pytest
from scipy import stats as sps

from transfer_neurons.analyses.lape import activation_probability, lape_entropy, overlap_row, select_lape
from transfer_neurons.analyses.specificity import LanguageStats


def test_entropy_of_normalised_probabilities():
    table = np.array([[0.9, 0.5, 0.0, 0.3], [0.0, 0.5, 0.0, 0.3], [0.0, 0.5, 0.0, 0.0]])  # [lang, neuron]
    np.testing.assert_allclose(lape_entropy(table), [0.0, np.log(3), 0.0, np.log(2)])


def constructed_table() -> np.ndarray:
    """[lang=3, layer=2, d_ff=100]: background 0.5 everywhere (so the 95th percentile is 0.5), plus
    L1/7 ja-only, L0/11 ja+ko, L1/13 weakly ja-only (below the threshold) and L0/20 never active."""
    prob = np.full((3, 2, 100), 0.5)
    prob[:, 1, 7] = [0.9, 0.0, 0.0]  # entropy 0, above threshold -> specific to ja
    prob[:, 0, 11] = [0.95, 0.0, 0.8]  # low entropy, above threshold for ja and ko
    prob[:, 1, 13] = [0.05, 0.0, 0.0]  # entropy 0 but never frequent -> not a candidate
    prob[:, 0, 20] = 0.0  # never active -> not a candidate
    return prob


def test_lape_selects_the_known_specific_neurons():
    lape = select_lape(constructed_table(), ["ja", "en", "ko"], top_share=0.01, quantile=0.95)
    assert lape.threshold == 0.5  # the 570th smallest of 600 probabilities
    assert lape.neurons.tolist() == [[1, 7], [0, 11]]  # round(1 % of 200) = 2, lowest entropy first
    assert lape.assigned.tolist() == [[True, False, False], [True, False, True]]
    assert lape.of_language("ko").tolist() == [[0, 11]] and lape.of_language("en").size == 0
    assert lape.entropy[1, 13] == 0.0  # low entropy alone does not select a neuron


def test_lape_keeps_only_candidates_even_if_the_share_asks_for_more():
    lape = select_lape(constructed_table(), ["ja", "en", "ko"], top_share=0.1)
    assert lape.neurons.tolist() == [[1, 7], [0, 11]]


def test_saturated_probabilities_select_nothing_and_say_so(caplog):
    table = np.ones((3, 2, 10))  # every neuron active on every sentence: the quantile is 1 and nothing exceeds it
    with caplog.at_level("WARNING", logger="transfer_neurons"):
        lape = select_lape(table, ["ja", "en", "ko"])
    assert len(lape.neurons) == 0 and lape.threshold == 1.0
    assert any("LAPE selected no neurons" in r.getMessage() for r in caplog.records)


def test_activation_probability_from_streamed_counts():
    stats = LanguageStats.empty(["ja", "en"], 1, 3)
    stats.add(0, np.array([[[1.0, -1.0, 0.0]], [[2.0, 1.0, 0.0]]]))
    stats.add(1, np.array([[[-1.0, 1.0, 3.0]]]))
    np.testing.assert_allclose(activation_probability(stats)[:, 0], [[1.0, 0.5, 0.0], [0.0, 1.0, 1.0]])


def test_overlap_with_transfer_neurons_against_chance():
    transfer = np.array([[1, 0], [1, 1], [2, 5]])
    specific = np.array([[1, 0], [0, 3], [2, 5], [2, 9]])  # [0, 3] lies outside the candidate layers
    row = overlap_row(transfer, specific, (1, 2), 10, {"type": "type2"})
    assert (row["overlap"], row["transfer"], row["lape_in_layers"], row["population"]) == (2, 3, 3, 20)
    assert row["expected"] == pytest.approx(3 * 3 / 20)
    assert row["p_overlap"] == pytest.approx(sps.hypergeom.sf(1, 20, 3, 3))
    assert row["share_of_transfer"] == pytest.approx(2 / 3)
