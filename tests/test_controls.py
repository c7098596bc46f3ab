"""Tests for transfer_neurons.controls: random, layer-matched, magnitude-matched, anti, specs."""

import numpy as np
import pytest

from transfer_neurons.controls import (
    Control,
    ControlSpec,
    anti_neurons,
    build_controls,
    layer_matched,
    magnitude_matched,
    parse_control,
    parse_controls,
    random_control,
)
from transfer_neurons.errors import TransferNeuronsError

TRANSFER = np.array([[1, 3], [2, 7], [1, 0], [2, 49], [1, 11]], dtype=np.int64)


def _as_set(neurons: np.ndarray) -> set[tuple[int, int]]:
    return {(int(l), int(n)) for l, n in neurons}


def test_random_control_in_candidate_layers_right_count_no_transfer():
    out = random_control(TRANSFER, (1, 2), d_ff=50, seed=0)
    assert out.dtype == np.int64 and out.shape == (5, 2)
    assert set(out[:, 0].tolist()) <= {1, 2}
    assert len(_as_set(out)) == 5
    assert not _as_set(out) & _as_set(TRANSFER)
    np.testing.assert_array_equal(out, random_control(TRANSFER, (1, 2), 50, seed=0))
    assert not np.array_equal(out, random_control(TRANSFER, (1, 2), 50, seed=1))


def test_random_control_fills_exactly_the_free_neurons():
    transfer = np.array([[0, 0], [0, 1]])
    out = random_control(transfer, (0,), d_ff=4, seed=3)
    assert _as_set(out) == {(0, 2), (0, 3)}
    with pytest.raises(TransferNeuronsError, match="transfer"):
        random_control(np.array([[0, 0], [0, 1], [0, 2]]), (0,), d_ff=4, seed=0)


def test_layer_matched_counts_per_layer_and_disjoint():
    out = layer_matched(TRANSFER, d_ff=50, seed=0)
    for layer in (1, 2):
        assert (out[:, 0] == layer).sum() == (TRANSFER[:, 0] == layer).sum()
    assert set(out[:, 0].tolist()) == {1, 2}
    assert len(_as_set(out)) == len(TRANSFER)
    assert not _as_set(out) & _as_set(TRANSFER)
    np.testing.assert_array_equal(out, layer_matched(TRANSFER, 50, seed=0))
    assert not np.array_equal(out, layer_matched(TRANSFER, 50, seed=1))


def test_layer_matched_fills_exactly_the_free_neurons_of_each_layer():
    transfer = np.array([[3, 1], [0, 0], [3, 2]])
    for seed in range(5):
        out = layer_matched(transfer, d_ff=4, seed=seed)
        assert _as_set(out[out[:, 0] == 3]) == {(3, 0), (3, 3)}
        assert (out[:, 0] == 0).sum() == 1 and (0, 0) not in _as_set(out)
    with pytest.raises(TransferNeuronsError, match="layer 3"):
        layer_matched(np.array([[3, 0], [3, 1], [3, 2]]), d_ff=4, seed=0)


def test_magnitude_matched_known_greedy_pairing_and_ratio():
    mags = np.array(
        [
            [1.0, 1.1, 5.0, 1.05, 0.7, 4.0],
            [2.0, 2.0, 2.0, 2.0, 2.0, 2.0],
        ]
    )
    transfer = np.array([[0, 0], [1, 0], [0, 1]])
    matched, ratio = magnitude_matched(transfer, mags)
    # (0,0) takes 3 (|1.05-1| smallest); (0,1) would also take 3 but it is used -> 4.
    # (1,0) ties everywhere -> lowest free index 1.
    np.testing.assert_array_equal(matched, [[0, 3], [1, 1], [0, 4]])
    assert ratio == pytest.approx((1.05 + 2.0 + 0.7) / (1.0 + 2.0 + 1.1))


def test_magnitude_matched_runs_out_of_neurons():
    with pytest.raises(TransferNeuronsError, match="layer 0"):
        magnitude_matched(np.array([[0, 0], [0, 1]]), np.ones((1, 3)))


def test_anti_neurons_hand_computed():
    scores = np.array(
        [
            [-9.0, -9.0, -9.0, -9.0],  # not a candidate layer
            [0.5, -0.2, 0.1, -0.3],
            [-0.3, 0.4, -1.0, 0.0],
        ]
    )
    out = anti_neurons(scores, (1, 2), 4)
    # Stable tie between (1,3) and (2,0) at -0.3 keeps layer order.
    np.testing.assert_array_equal(out, [[2, 2], [1, 3], [2, 0], [1, 1]])
    with pytest.raises(TransferNeuronsError, match="n"):
        anti_neurons(scores, (1, 2), 9)
    with pytest.raises(TransferNeuronsError, match="candidate_layers"):
        anti_neurons(scores, (2, 1), 1)


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("random", ControlSpec("random")),
        ("random:5", ControlSpec("random", 5)),
        ("layer-matched", ControlSpec("layer-matched")),
        ("layer-matched:2", ControlSpec("layer-matched", 2)),
        ("magnitude-matched", ControlSpec("magnitude-matched")),
        ("anti", ControlSpec("anti")),
    ],
)
def test_parse_control_accepted(spec, expected):
    assert parse_control(spec) == expected


@pytest.mark.parametrize(
    "spec", ["randm", "random:0", "random:x", "random:", "anti:3", "magnitude-matched:2", ""]
)
def test_parse_control_errors_name_spec_and_accepted(spec):
    with pytest.raises(TransferNeuronsError) as err:
        parse_control(spec)
    assert repr(spec) in str(err.value)
    assert "layer-matched" in str(err.value) and "anti" in str(err.value)


def test_build_controls():
    rng = np.random.default_rng(0)
    scores, mags = rng.normal(size=(3, 50)), rng.random((3, 50))
    randoms = build_controls("random", TRANSFER, scores, mags, (1, 2), seeds_default=3)
    assert [c.seed for c in randoms] == [0, 1, 2]
    assert all(isinstance(c, Control) and c.name == "random" for c in randoms)
    np.testing.assert_array_equal(randoms[1].neurons, random_control(TRANSFER, (1, 2), 50, 1))
    assert len(build_controls("layer-matched:2", TRANSFER, scores, mags, (1, 2))) == 2
    (mag,) = build_controls("magnitude-matched", TRANSFER, scores, mags, (1, 2))
    assert mag.seed is None
    assert mag.note["magnitude_ratio"] == pytest.approx(magnitude_matched(TRANSFER, mags)[1])
    (anti,) = build_controls("anti", TRANSFER, scores, None, (1, 2))
    np.testing.assert_array_equal(anti.neurons, anti_neurons(scores, (1, 2), len(TRANSFER)))
    with pytest.raises(TransferNeuronsError, match="magnitudes"):
        build_controls("magnitude-matched", TRANSFER, scores, None, (1, 2))
    with pytest.raises(TransferNeuronsError, match="bogus"):
        build_controls("bogus", TRANSFER, scores, mags, (1, 2))


def test_a_control_kind_given_twice_is_refused():
    assert [p.kind for p in parse_controls(["random:2", "anti"])] == ["random", "anti"]
    with pytest.raises(TransferNeuronsError, match=r"'random' given more than once"):
        parse_controls(["random:1", "random:2"])  # seed 0 would count twice
    with pytest.raises(TransferNeuronsError, match=r"'anti' given more than once"):
        parse_controls(["anti", " anti"])
