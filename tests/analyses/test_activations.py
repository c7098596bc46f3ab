"""Activation-pattern similarity: cosines of a[l] against a hand computation on small arrays."""

import numpy as np
import pytest
import torch
from tiny import SENTENCES, tiny_lm

from transfer_neurons.analyses.activations import activation_similarity
from transfer_neurons.analyses.similarity import condition_cosines
from transfer_neurons.capture import capture
from transfer_neurons.conditions import Condition
from transfer_neurons.data import ParallelPairs
from transfer_neurons.interventions import capture_under

PAIRS = ParallelPairs("tiny", "en", "xx", SENTENCES, SENTENCES[2:] + SENTENCES[:2])


def hand_cosine(x: np.ndarray, y: np.ndarray) -> float:
    return float(x @ y / np.sqrt((x @ x) * (y @ y)))


def test_activation_cosine_on_a_constructed_case():
    hub = torch.tensor([[[1.0, 0.0, 2.0, 0.0]], [[0.0, 3.0, 0.0, 0.0]]])  # [pair, layer, d_ff]
    l2 = torch.tensor([[[0.0, 0.0, 2.0, 1.0]], [[0.0, 1.0, 0.0, 1.0]]])
    cos = condition_cosines(hub, l2, [("none", l2)], np.array([1, 0]))
    np.testing.assert_allclose(cos.values["raw_parallel"]["none"][:, 0], [0.8, 1 / np.sqrt(2)])
    np.testing.assert_allclose(cos.values["raw_nonparallel"]["none"][:, 0], [0.0, 0.0])
    mean = np.array([0.25, 1.0, 1.0, 0.5])
    expected = hand_cosine(hub[0, 0].numpy() - mean, l2[0, 0].numpy() - mean)
    assert cos.values["centred_parallel"]["none"][0, 0] == pytest.approx(expected)


@pytest.mark.parametrize("arch", ["llama", "gemma3_text"])
def test_activation_similarity_matches_hand_computation(arch):
    lm = tiny_lm(arch)
    neurons = np.array([[1, 3], [1, 40], [2, 7]])
    conditions = [Condition("none", None), Condition("transfer", neurons)]
    cos = activation_similarity(lm, PAIRS, conditions, seed=0, batch_size=4, progress=False)
    hub = capture(lm, PAIRS.hub, ("a",), 4, progress=None).a.double().numpy()  # [pair, layer, d_ff]
    l2 = capture(lm, PAIRS.l2, ("a",), 4, progress=None).a.double().numpy()
    off = capture_under(lm, PAIRS.l2, neurons, ("a",), 4, progress=None).a.double().numpy()
    assert np.all(off[:, 1, [3, 40]] == 0) and np.all(off[:, 2, 7] == 0)
    mean = np.concatenate([hub, l2]).mean(axis=0)  # [layer, d_ff]
    for i in (0, 4):
        for layer in (0, 2, 3):
            got = {name: cos.values[name] for name in ("raw_parallel", "centred_parallel", "raw_nonparallel")}
            assert got["raw_parallel"]["none"][i, layer] == pytest.approx(hand_cosine(hub[i, layer], l2[i, layer]), abs=1e-6)
            assert got["raw_parallel"]["transfer"][i, layer] == pytest.approx(hand_cosine(hub[i, layer], off[i, layer]), abs=1e-6)
            assert got["centred_parallel"]["transfer"][i, layer] == pytest.approx(
                hand_cosine(hub[i, layer] - mean[layer], off[i, layer] - mean[layer]), abs=1e-6)
            j = cos.partner[i]
            assert got["raw_nonparallel"]["none"][i, layer] == pytest.approx(hand_cosine(hub[i, layer], l2[j, layer]), abs=1e-6)
    # neurons deactivated from layer 1 on cannot change layer 0
    np.testing.assert_allclose(cos.values["raw_parallel"]["transfer"][:, 0], cos.values["raw_parallel"]["none"][:, 0])
