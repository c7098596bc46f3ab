"""Fast closed-form scores equal a literal reading of method.md §4, batched or not."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from host_copies import HostCopies
from tiny import SENTENCES, assert_same_ranking, tiny_lm

from transfer_neurons.capture import capture, make_batches
from transfer_neurons.centroids import language_centroids, shared_centroids
from transfer_neurons import scoring
from transfer_neurons.errors import TransferNeuronsError
from transfer_neurons.scoring import (
    default_candidate_layers, default_top_n, parse_layers, rank_neurons, score_neurons,
)


def slow_scores(lm, centroids, texts):
    """Add each neuron's contribution to the pre-MLP state and take the cosine, one by one."""
    got = capture(lm, texts, want=("m", "a"), batch_size=1, progress=None)
    view = lm.view
    total = np.zeros((view.num_layers, view.d_ff))
    for layer in range(view.num_layers):
        values = view.value_vectors(layer).double()  # [d_ff, d_model]
        c = centroids[layer].double()
        for s in range(len(texts)):
            b = got.m[s, layer].double()
            shifted = b[None, :] + got.a[s, layer].double()[:, None] * values  # [d_ff, d_model]
            after = torch.nn.functional.cosine_similarity(shifted, c[None, :], dim=1)
            before = torch.nn.functional.cosine_similarity(b, c, dim=0)
            total[layer] += (after - before).numpy()
    return total / len(texts)


@pytest.mark.parametrize("arch", ["llama", "gemma3_text", "gpt2", "gpt_neox", "phi3", "olmo2"])
def test_fast_scores_equal_slow_formula(arch):
    lm = tiny_lm(arch)
    centroids = language_centroids(lm, SENTENCES, batch_size=3)
    fast = score_neurons(lm, centroids, SENTENCES, batch_size=4, progress=None)
    slow = slow_scores(lm, centroids, SENTENCES)
    assert np.abs(fast.scores - slow).max() <= 1e-5
    layers = default_candidate_layers(lm.view.num_layers, "type2")
    assert_same_ranking(rank_neurons(fast.scores, layers, 20), rank_neurons(slow, layers, 20), slow, atol=1e-5)


@pytest.mark.parametrize("arch", ["llama", "gemma2"])
def test_batched_scores_equal_single_sentence_scores(arch):
    lm = tiny_lm(arch, padding_side="left")
    centroids = shared_centroids(lm, SENTENCES[:3], SENTENCES[3:], batch_size=2)
    batched = score_neurons(lm, centroids, SENTENCES, batch_size=6, progress=None)
    single = score_neurons(lm, centroids, SENTENCES, batch_size=1, progress=None)
    assert np.abs(batched.scores - single.scores).max() <= 1e-5
    np.testing.assert_allclose(batched.magnitudes, single.magnitudes, rtol=1e-4, atol=1e-6)


def test_magnitudes_are_mean_abs_activation_times_value_norm():
    lm = tiny_lm("gemma3_text")
    centroids = language_centroids(lm, SENTENCES, batch_size=3)
    got = score_neurons(lm, centroids, SENTENCES, progress=None)
    a = capture(lm, SENTENCES, want=("a",), progress=None).a  # [n, layer, d_ff]
    norms = torch.stack([lm.view.value_vectors(l).norm(dim=1) for l in range(4)])
    np.testing.assert_allclose(got.magnitudes, (a.abs().mean(0) * norms).numpy(), rtol=1e-4, atol=1e-6)


def test_shared_centroid_is_mean_of_both_sides():
    lm = tiny_lm("llama")
    h = capture(lm, SENTENCES, want=("h",), progress=None).h
    expected = (h[:3].mean(0) + h[3:].mean(0)) / 2
    torch.testing.assert_close(shared_centroids(lm, SENTENCES[:3], SENTENCES[3:]), expected, atol=1e-5, rtol=1e-5)


def test_rank_is_descending_within_layers_with_deterministic_ties():
    scores = np.array([[9.0, 0.5, 0.5], [0.1, 0.7, 0.5], [5.0, 6.0, 7.0]], dtype=np.float32)
    ranked = rank_neurons(scores, (0, 1), 4)
    assert ranked.tolist() == [[0, 0], [1, 1], [0, 1], [0, 2]]


def test_candidate_layers_and_top_n_defaults():
    assert default_candidate_layers(32, "type1") == tuple(range(20))
    assert default_candidate_layers(32, "type2") == tuple(range(20, 32))
    assert default_candidate_layers(18, "type1") == tuple(range(11))
    assert parse_layers("2:", 6) == (2, 3, 4, 5)
    with pytest.raises(TransferNeuronsError, match="^layers '3': expected START:END"):
        parse_layers("3", 6)
    for outside in ("7:9", "0:9", "3:1", "-2:"):  # nothing silently cut to the model
        with pytest.raises(TransferNeuronsError, match=r"expected 0 <= START < END <= 6 on a 6-layer model"):
            parse_layers(outside, 6)
    with pytest.raises(TransferNeuronsError, match="^mid_layers '3:1'") as caught:
        parse_layers("3:1", 6, "mid_layers")
    assert caught.value.option == "mid_layers"


def test_default_top_n_is_the_papers_share_of_the_model_for_both_types():
    """From configs alone (no weights): 1000 of each type on LLaMA3-8B's shape, the same share below."""
    from transformers import AutoConfig

    llama3 = AutoConfig.for_model("llama", num_hidden_layers=32, intermediate_size=14_336)
    assert default_top_n(llama3.num_hidden_layers, llama3.intermediate_size)[0] == 1000
    gemma = AutoConfig.for_model("gemma3_text", num_hidden_layers=18, intermediate_size=2048)
    n, rule = default_top_n(gemma.num_hidden_layers, gemma.intermediate_size)
    assert n == round(1000 * 18 * 2048 / 458_752) == 80
    assert "458,752" in rule
    # one n for both types, although Type-2 has fewer candidate layers than Type-1
    type1, type2 = default_candidate_layers(18, "type1"), default_candidate_layers(18, "type2")
    assert len(type1) != len(type2)
    assert default_top_n(1, 1)[0] == 1  # never zero


def truncated(lm, layers: int):
    """The same tiny model cut to its first `layers` decoder layers."""
    del lm.view.layers[layers:]
    lm.model.config.num_hidden_layers = layers
    return lm


def test_scoring_copies_to_the_host_once_per_run_not_per_layer_or_batch():
    copies = {}
    for layers in (2, 4):
        lm = truncated(tiny_lm("llama"), layers)
        centroids = language_centroids(lm, SENTENCES)
        for batches in (1, 5):
            with HostCopies() as seen:
                score_neurons(lm, centroids, SENTENCES * batches, batch_size=len(SENTENCES), progress=None)
            copies[layers, batches] = sorted(seen.calls)
    assert copies[2, 1] == copies[2, 5] == copies[4, 1] == copies[4, 5], copies
    assert copies[2, 1], "the final sums must be seen reaching the host"


def test_bfloat16_weights_score_close_to_the_slow_formula():
    lm = tiny_lm("llama")
    lm.model.to(torch.bfloat16)
    centroids = language_centroids(lm, SENTENCES, batch_size=3)
    fast = score_neurons(lm, centroids, SENTENCES, batch_size=4, progress=None).scores
    slow = slow_scores(lm, centroids, SENTENCES)
    # q = V^T b is multiplied in bfloat16 (8 significant bits) like the forward: 0.2-0.6 % here, 2 % allowed
    assert np.abs(fast - slow).max() <= 2e-2 * np.abs(slow).max()
    assert np.corrcoef(fast.ravel(), slow.ravel())[0, 1] > 0.999


def test_auto_batch_size_gives_the_same_scores():
    lm = tiny_lm("gemma3_text")
    centroids = language_centroids(lm, SENTENCES, batch_size="auto")
    auto = score_neurons(lm, centroids, SENTENCES, batch_size="auto", progress=None)
    fixed = score_neurons(lm, centroids, SENTENCES, batch_size=2, progress=None)
    assert np.abs(auto.scores - fixed.scores).max() <= 1e-5  # float32 sums of other batches


def test_value_vectors_in_chunks_give_the_same_scores(monkeypatch):
    lm = tiny_lm("gemma3_text")
    centroids = language_centroids(lm, SENTENCES, batch_size=3)
    whole = score_neurons(lm, centroids, SENTENCES, batch_size=4, progress=None)
    monkeypatch.setattr(scoring, "_CHUNK", 24)  # d_ff 64: chunks of 24, 24 and 16 neurons
    chunked = score_neurons(lm, centroids, SENTENCES, batch_size=4, progress=None)
    # p and n are float64 dot products per neuron; a BLAS may order them differently by chunk
    np.testing.assert_allclose(chunked.scores, whole.scores, rtol=0, atol=1e-7)
    np.testing.assert_allclose(chunked.magnitudes, whole.magnitudes, rtol=1e-6, atol=0)


@pytest.mark.parametrize("group_bytes", [1, 2 * 8 * 4 * 64])  # one layer per group; two layers per group (batch 4, d_ff 64)
def test_scores_in_layer_groups_equal_the_whole_model_at_once(monkeypatch, group_bytes):
    lm = tiny_lm("gemma3_text")
    centroids = language_centroids(lm, SENTENCES, batch_size=3)
    whole = score_neurons(lm, centroids, SENTENCES, batch_size=4, progress=None)
    monkeypatch.setattr(scoring, "SCORE_BYTES", group_bytes)
    assert len(scoring.layer_groups(lm, 4)) == (lm.view.num_layers if group_bytes == 1 else -(-lm.view.num_layers // 2))
    grouped = score_neurons(lm, centroids, SENTENCES, batch_size=4, progress=None)
    np.testing.assert_allclose(grouped.scores, whole.scores, rtol=0, atol=1e-9)
    np.testing.assert_allclose(grouped.magnitudes, whole.magnitudes, rtol=1e-9, atol=0)


def test_layer_groups_never_span_two_devices():
    devices = ["cuda:0"] * 3 + ["cuda:1"] * 4
    out_proj = lambda layer: SimpleNamespace(weight=SimpleNamespace(device=devices[layer]))  # noqa: E731
    lm = SimpleNamespace(view=SimpleNamespace(num_layers=7, d_ff=8, out_proj=out_proj))
    assert scoring.layer_groups(lm, 1) == [range(0, 3), range(3, 7)]
    # at most 2 layers' [batch 4, d_ff 8] float64 work per group
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(scoring, "SCORE_BYTES", 2 * 8 * 4 * 8)
        assert scoring.layer_groups(lm, 4) == [range(0, 2), range(2, 3), range(3, 5), range(5, 7)]


class _Kernels(TorchDispatchMode):
    """Counts the ATen operations that compute (views excluded): on a GPU, each is a kernel launch."""

    VIEWS = {"view", "t", "transpose", "expand", "slice", "select", "unsqueeze", "squeeze", "as_strided", "detach",
             "_unsafe_view", "alias", "permute", "unbind", "split", "_reshape_alias"}

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += func.__name__.split(".")[0] not in self.VIEWS
        return func(*args, **(kwargs or {}))


def kernels_per_batch(run, batches=(1, 5)) -> float:
    """Operations one more batch adds to run(texts), so one-off set-up is left out."""
    counts = []
    for n in batches:
        with _Kernels() as seen:
            run(SENTENCES * n)
        counts.append(seen.count)
    return (counts[1] - counts[0]) / (batches[1] - batches[0])


@pytest.mark.parametrize("arch", ["llama", "gemma3_text"])
def test_scoring_adds_few_kernels_per_layer_beyond_the_forward(arch):
    # a small model's step on a GPU is bound by kernel launches: per layer and batch, scoring may add
    # its 4 last-token gathers and one q product, not the ~38 element-wise steps of scoring layer by layer
    extra = {}
    for layers in (2, 4):
        lm = truncated(tiny_lm(arch), layers)
        centroids = language_centroids(lm, SENTENCES)
        size = len(SENTENCES)
        forward = kernels_per_batch(lambda texts: [lm.view.decoder(input_ids=b.input_ids, attention_mask=b.attention_mask,
                                                                   position_ids=b.position_ids, use_cache=False)
                                                   for b in make_batches(lm, texts, size)])
        scored = kernels_per_batch(lambda texts: score_neurons(lm, centroids, texts, batch_size=size, progress=None))
        extra[layers] = scored - forward
    assert (extra[4] - extra[2]) / 2 <= 6, extra
