"""Batched capture equals one-sentence-at-a-time capture, for both padding sides."""

from contextlib import nullcontext

import numpy as np
import pytest
import torch
from host_copies import HostCopies
from tiny import ARCHITECTURES, SENTENCES, tiny_lm

from transfer_neurons.capture import QUANTITIES, capture, capture_last, iter_layer_internals, last_token_index, run_prefixes


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("side", ["left", "right"])
def test_batched_equals_single(arch, side):
    lm = tiny_lm(arch, padding_side=side)
    want = ("embed", "h", "m", "a")
    batched = capture(lm, SENTENCES, want=want, batch_size=4, progress=None)
    single = capture(lm, SENTENCES, want=want, batch_size=1, progress=None)
    for name in want:
        torch.testing.assert_close(getattr(batched, name), getattr(single, name), atol=1e-4, rtol=1e-4)


def test_only_requested_quantities_are_kept():
    lm = tiny_lm("llama")
    got = capture(lm, SENTENCES, want=("m",), progress=None)
    assert got.h is None and got.a is None and got.embed is None
    assert got.m.shape == (len(SENTENCES), 4, 32) and got.m.dtype == torch.float32


def test_results_follow_input_order_despite_length_sorting():
    lm = tiny_lm("llama")
    forward = capture(lm, SENTENCES, want=("h",), batch_size=2, progress=None).h
    backward = capture(lm, SENTENCES[::-1], want=("h",), batch_size=2, progress=None).h
    torch.testing.assert_close(forward, backward.flip(0))


def test_last_token_index_both_paddings():
    mask = torch.tensor([[1, 1, 1, 0], [0, 0, 1, 1], [1, 1, 1, 1]])
    assert last_token_index(mask).tolist() == [2, 3, 3]


def test_gpt2_sentence_longer_than_n_positions_is_cut_to_the_context(caplog):
    """Beyond n_positions GPT-2's position table has no row (IndexError); inputs keep their first 128 tokens."""
    lm = tiny_lm("gpt2")  # n_positions = 128; the byte tokenizer gives <bos> + one token per ASCII byte
    long = "The cat sleeps on the sofa all day. " * 10  # 360 bytes
    got = capture(lm, [long, "De kat slaapt."], want=("h", "a"), batch_size=2, progress=None)
    cut = capture(lm, [long[:127], "De kat slaapt."], want=("h", "a"), batch_size=2, progress=None)
    for name in ("h", "a"):  # the same tokens in the same batch shape: equal up to float rounding
        torch.testing.assert_close(getattr(got, name), getattr(cut, name), atol=1e-5, rtol=1e-5)
    assert any("1 of 2 sentence(s) are longer than 128 tokens" in r.getMessage() for r in caplog.records)


def test_kept_tensors_go_to_the_device_asked_for():
    lm = tiny_lm("gemma3_text")
    host = capture(lm, SENTENCES, want=("h", "a"), batch_size=4, progress=None)
    assert host.h.device.type == "cpu" and host.a.dtype == torch.float32
    meta = capture(lm, SENTENCES, want=("h", "a"), batch_size=4, progress=None, device="meta")
    assert meta.h.device.type == "meta" and meta.h.shape == host.h.shape and meta.a.shape == host.a.shape


def test_on_model_device_capture_makes_no_host_copies():
    lm = tiny_lm("llama")
    with HostCopies() as to_host:
        capture(lm, SENTENCES * 3, want=("h", "m", "a"), batch_size=2, progress=None)
    with HostCopies() as on_device:
        capture(lm, SENTENCES * 3, want=("h", "m", "a"), batch_size=2, progress=None, device=lm.view.device)
    assert len(to_host.calls) == 3 * 9  # one copy per quantity and batch (9 batches), none per layer
    assert on_device.calls == []


def test_layer_internals_stay_per_layer_and_stack_to_capture():
    lm = tiny_lm("gemma3_text", padding_side="left")
    stacked = capture(lm, SENTENCES, want=("embed", "m", "a"), batch_size=len(SENTENCES), sort_by_length=False,
                      progress=None)
    [(indices, layers)] = list(iter_layer_internals(lm, SENTENCES, ("embed", "m", "a"), len(SENTENCES),
                                                    sort_by_length=False, progress=None))
    assert indices == list(range(len(SENTENCES))) and layers.h is None
    assert len(layers.m) == len(layers.a) == lm.view.num_layers
    for layer in range(lm.view.num_layers):
        torch.testing.assert_close(layers.m[layer], stacked.m[:, layer])
        torch.testing.assert_close(layers.a[layer], stacked.a[:, layer])
    torch.testing.assert_close(layers.embed, stacked.embed)


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_last_tokens_against_shared_prefixes_equal_whole_sentences(model_type):
    """capture_last (prefixes run once, then one token per sentence) gives capture's internals, deactivated or not."""
    from transfer_neurons.interventions import deactivated

    lm = tiny_lm(model_type)
    texts = ["the cat sat on the mat", "a", "hello world", "one two three four five six seven", "x y"]
    prefixes = run_prefixes(lm, texts, batch_size=3)
    neurons = np.array([[0, 1], [1, 5], [2, 7], [3, 3]])
    for context in (nullcontext(), deactivated(lm, neurons, "last")):
        with context:
            whole = capture(lm, texts, QUANTITIES, batch_size=3, progress=None)
            fast = capture_last(lm, prefixes, QUANTITIES)
        for q in QUANTITIES:  # float rounding of other matrix shapes only
            torch.testing.assert_close(getattr(fast, q), getattr(whole, q), rtol=1e-5, atol=1e-5 * getattr(whole, q).abs().max().item())
