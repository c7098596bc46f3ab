"""The notebook API refuses inputs it would otherwise misread, naming the argument, and takes the usual containers."""

import numpy as np
import pytest
import torch
from tiny import SENTENCES, tiny_lm

import transfer_neurons as tn
from transfer_neurons.errors import TransferNeuronsError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def lm():
    return tiny_lm("llama")


@pytest.fixture(scope="module")
def centroids(lm):
    return tn.compute_centroids(lm, "type2", list(SENTENCES))


def test_one_string_is_not_a_list_of_sentences(lm, centroids):
    for call in (lambda: tn.capture(lm, "猫が寝ている。"), lambda: tn.Mean("abc"),
                 lambda: tn.compute_centroids(lm, "type2", "猫が寝ている。"),
                 lambda: tn.detect(lm, "type2", "ja", "猫が寝ている。", centroids),
                 lambda: tn.StateProvider(lm).get("猫が寝ている。")):
        with pytest.raises(TransferNeuronsError, match="expected a list of sentences, got one string"):
            call()
    with pytest.raises(TransferNeuronsError, match=r"texts\[1\]: expected a string, got NoneType"):
        tn.capture(lm, ["a", None])


def test_numpy_arrays_of_sentences_work_like_lists(lm):
    texts = list(SENTENCES[:3])
    expected = tn.capture(lm, texts).h
    assert torch.equal(tn.capture(lm, np.array(texts)).h, expected)
    assert torch.equal(tn.StateProvider(lm).get(np.array(texts)).h, tn.StateProvider(lm).get(texts).h)
    assert tn.Mean(np.array(texts)).reference == tuple(texts)


def test_quantities_are_names_not_letters(lm):
    assert tn.capture(lm, list(SENTENCES[:2]), want="embed").embed is not None
    for want in ("ha", ()):
        with pytest.raises(TransferNeuronsError, match="want: expected some of embed, h, m, a"):
            tn.capture(lm, list(SENTENCES[:2]), want=want)


@pytest.mark.parametrize("neurons, shown", [(np.array([[1, 2, 3], [0, 1, 2]]), r"shape \(2, 3\)"),
                                            (np.array([1, 2, 3, 4]), r"shape \(4,\)"),
                                            ([[1.7, 2.9]], "dtype float64"), ([[True, False]], "dtype bool")])
def test_neurons_are_never_reshaped_or_rounded(lm, neurons, shown):
    with pytest.raises(TransferNeuronsError, match=f"neurons: expected an integer \\[n, 2\\] array .*{shown}"):
        with tn.deactivated(lm, neurons):
            pass


def test_a_detection_in_place_of_its_neurons_is_named(lm, centroids):
    det = tn.detect(lm, "type2", "ja", list(SENTENCES), centroids, top_n=3)
    with pytest.raises(TransferNeuronsError, match="got a Detection; pass its .neurons"):
        with tn.deactivated(lm, det):
            pass


@pytest.mark.parametrize("options, message", [
    ({"top_n": 0}, "top_n: expected an integer of at least 1"), ({"top_n": -3}, "top_n: expected an integer"),
    ({"top_n": 2.5}, "top_n: expected an integer"), ({"layers": [9]}, "layers: expected distinct layer indices"),
    ({"layers": [-1]}, "layers: expected"), ({"layers": [1, 1]}, "layers: expected distinct"),
    ({"layers": []}, "layers: expected"), ({"layers": [1.0]}, "layers: expected")])
def test_detect_checks_top_n_and_layers_before_scoring(lm, centroids, options, message, monkeypatch):
    monkeypatch.setattr(tn.detection, "score_neurons", lambda *a, **k: pytest.fail("scored before the check"))
    with pytest.raises(TransferNeuronsError, match=message):
        tn.detect(lm, "type2", "ja", list(SENTENCES), centroids, **options)
    with pytest.raises(TransferNeuronsError, match="neuron_type must be 'type1' or 'type2', got 'typeX'"):
        tn.detect(lm, "typeX", "ja", list(SENTENCES), centroids, layers=[1])


def test_scores_and_centroids_may_be_numpy_or_tensors(lm, centroids):
    scores = tn.score_neurons(lm, centroids.numpy(), list(SENTENCES), progress=None).scores
    tracked = centroids.clone().requires_grad_(True)
    assert np.array_equal(tn.score_neurons(lm, tracked, list(SENTENCES), progress=None).scores, scores)
    assert np.array_equal(tn.rank_neurons(torch.from_numpy(scores), [0], 3), tn.rank_neurons(scores, [0], 3))


def test_interventions_by_name(lm):
    texts = list(SENTENCES[:2])
    with tn.deactivated(lm, [[1, 2]], "last", tn.Scale(2.0)):
        by_object = tn.capture(lm, texts).h
    with tn.deactivated(lm, [[1, 2]], "last", "scale:2"):
        assert torch.equal(tn.capture(lm, texts).h, by_object)
    with tn.applying("scale:2"), tn.deactivated(lm, [[1, 2]]):
        assert torch.equal(tn.capture(lm, texts).h, by_object)
    with pytest.raises(TransferNeuronsError, match="scale factor must be a finite number, got '2'"):
        tn.Scale("2")


def test_paths_and_control_strings(lm, centroids, tmp_path, monkeypatch):
    from tiny import write_jsonl

    from transfer_neurons.conditions import build_conditions
    from transfer_neurons.data import load_parallel

    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"en": "Hi.", "ja": "やあ。"}, {"en": "Bye.", "ja": "じゃあね。"}])
    assert load_parallel(pairs).texts["ja"] == ("やあ。", "じゃあね。")  # a Path, not only a str
    monkeypatch.setenv("HOME", str(tmp_path))
    det = tn.detect(lm, "type2", "ja", list(SENTENCES), centroids, top_n=3)
    tn.write_detection(det, "~/det")
    assert (tmp_path / "det/meta.json").is_file() and tn.read_detection("~/det").neurons.shape == (3, 2)
    named = [(c.name, c.seed) for c in build_conditions(det, "random:2,anti")]
    assert named == [("none", None), ("transfer", None), ("random", 0), ("random", 1), ("anti", None)]
    with pytest.raises(TransferNeuronsError, match="top_k: expected an integer of at least 1, got '2'"):
        tn.read_detection(tmp_path / "det", top_k="2")
