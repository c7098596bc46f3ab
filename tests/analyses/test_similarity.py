"""Hidden-state similarity: centred cosine, shared centring mean, non-parallel pairing, zero-drop identity."""

import numpy as np
import pytest
import torch
from tiny import SENTENCES, tiny_lm

from transfer_neurons.analyses.similarity import (
    compare_conditions,
    condition_cosines,
    effect_tables,
    hidden_similarity,
    magnitude_ratios,
    middle_layers,
    nonparallel_index,
    pair_similarity,
)
from transfer_neurons.capture import capture
from transfer_neurons.conditions import Condition
from transfer_neurons.data import ParallelPairs
from transfer_neurons.runs.common import effects_text

PAIRS = ParallelPairs("tiny", "en", "xx", SENTENCES, SENTENCES[1:] + SENTENCES[:1])
OFFSET = torch.tensor([1000.0, 1000.0, 1000.0])


def states(*rows):
    """[n, 1 layer, d] from row vectors, all sharing the huge OFFSET."""
    return torch.stack([OFFSET + torch.tensor(r, dtype=torch.float32) for r in rows])[:, None, :]


def test_centred_cosine_removes_a_shared_huge_offset():
    hub = states([1, 0, 0], [-1, 0, 0])
    l2 = states([1, 1, 0], [-1, -1, 0])  # mean of all four states is exactly OFFSET
    cos = condition_cosines(hub, l2, [("none", l2)], partner=np.array([1, 0]))
    raw, centred = cos.values["raw_parallel"]["none"], cos.values["centred_parallel"]["none"]
    assert raw.shape == (2, 1) and np.all(raw > 0.999)
    np.testing.assert_allclose(centred[:, 0], [1 / np.sqrt(2)] * 2, atol=1e-9)
    np.testing.assert_allclose(cos.values["centred_nonparallel"]["none"][:, 0], [-1 / np.sqrt(2)] * 2, atol=1e-9)
    np.testing.assert_allclose(cos.values["centred_gap"]["none"][:, 0], [np.sqrt(2)] * 2, atol=1e-9)
    np.testing.assert_allclose(cos.mean[0].numpy(), OFFSET.numpy())


def test_centring_mean_is_shared_whatever_the_deactivation():
    hub, none = states([1, 0, 0], [-1, 0, 0]), states([1, 1, 0], [-1, -1, 0])
    mild, wild = states([1, 1, 1], [0, -1, 0]), states([500, -900, 30], [7, 7, -400])
    a = condition_cosines(hub, none, [("none", none), ("transfer", mild)], np.array([1, 0]))
    b = condition_cosines(hub, none, [("none", none), ("transfer", wild), ("random#0", mild)], np.array([1, 0]))
    assert torch.equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.values["centred_parallel"]["transfer"], b.values["centred_parallel"]["random#0"])
    # the transfer condition is centred with the undeactivated mean (OFFSET), not its own: cos([1,0,0], [1,1,1])
    assert a.values["centred_parallel"]["transfer"][0, 0] == pytest.approx(1 / np.sqrt(3))


def test_model_run_centres_on_undeactivated_states_of_both_sides():
    lm = tiny_lm("llama")
    layer0 = np.stack([np.zeros(64, int), np.arange(64)], axis=1)
    conditions = [Condition("none", None), Condition("transfer", layer0)]
    cos = compare_conditions(lm, PAIRS, conditions, "h", batch_size=4, progress=False)
    hub = capture(lm, PAIRS.hub, ("h",), 4, progress=None).h
    l2 = capture(lm, PAIRS.l2, ("h",), 4, progress=None).h
    torch.testing.assert_close(cos.mean, torch.cat([hub, l2]).double().mean(0))
    assert not np.allclose(cos.values["raw_parallel"]["transfer"], cos.values["raw_parallel"]["none"])
    # the old single-condition API agrees with the new one
    old = pair_similarity(lm, PAIRS.hub, PAIRS.l2, layer0, batch_size=4)
    np.testing.assert_allclose(old.centred, cos.values["centred_parallel"]["transfer"], atol=1e-6)


def test_deactivating_no_neurons_gives_zero_drop():
    lm = tiny_lm("gemma3_text", padding_side="left")
    conditions = [Condition("none", None), Condition("transfer", np.zeros((0, 2), dtype=np.int64))]
    cos = hidden_similarity(lm, PAIRS, conditions, batch_size=4, progress=False)
    per_layer, mid = effect_tables(cos, conditions, (1, 2))
    transfer = [r for r in per_layer + mid if r["condition"] == "transfer"]
    assert len(transfer) == 2 * 3 * 4 + 2 * 3  # metrics x (parallel, non-parallel, gap) x layers, plus the mid rows
    assert all(r["drop"] == 0 and r["drop_low"] == 0 and r["p_vs_none"] == 1 for r in transfer)


@pytest.mark.parametrize("seed", range(5))
def test_nonparallel_pairing_has_no_fixed_points(seed):
    l2 = ("a", "b", "c", "a", "d", "e", "f", "g")  # a duplicate must not meet its twin either
    pairs = ParallelPairs("p", "en", "xx", tuple(str(i) for i in range(8)), l2)
    partner = nonparallel_index(pairs, seed)
    assert sorted(partner.tolist()) != [] and np.all(partner != np.arange(8))
    assert all(l2[j] != l2[i] for i, j in enumerate(partner))


def test_middle_layers_rule():
    assert middle_layers(18, "type1", range(11)) == tuple(range(6, 12))  # the model's middle third
    assert middle_layers(4) == (2,)
    assert middle_layers(18, "type2", (11, 12, 13)) == (11, 12, 13)
    assert middle_layers(18, "type2") == tuple(range(11, 18))  # default Type-2 candidates


def test_magnitude_ratios_and_text_table():
    mags = np.array([[4.0, 1.0, 2.0, 0.0]])
    conditions = [Condition("none", None), Condition("transfer", np.array([[0, 0]])),
                  Condition("random", np.array([[0, 1]]), seed=0), Condition("random", np.array([[0, 2]]), seed=1)]
    assert magnitude_ratios(conditions, mags) == {"transfer": 1.0, "random": pytest.approx(0.375)}
    values = {"none": np.ones((5, 1)), "transfer": np.full((5, 1), 0.5), "random#0": np.ones((5, 1)), "random#1": np.ones((5, 1))}
    from transfer_neurons.analyses.effects import summarise
    rows = [{"pairs": "parallel", **r} for r in summarise(values, conditions, "raw")]
    lines = effects_text(rows, "raw cosine").splitlines()[1:]
    assert len(lines) == 4 and len({len(line) for line in lines}) == 1  # aligned columns
    assert "+0.5000" in lines[2]
