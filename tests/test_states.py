"""StateProvider: one capture per (sentences, neurons, mode), every declared quantity kept, bounded memory."""

import numpy as np
import torch
from tiny import SENTENCES, tiny_lm

from transfer_neurons.capture import capture
from transfer_neurons.interventions import capture_under
from transfer_neurons.states import StateProvider

NEURONS = np.array([[1, 3], [2, 5]])


def test_repeated_requests_reuse_one_capture_with_every_declared_quantity():
    lm = tiny_lm("llama")
    states = StateProvider(lm, batch_size=4, want=("h", "a"))
    first = states.get(SENTENCES, None, want=("h",))
    again = states.get(list(SENTENCES), None, want=("a",))  # another list, same sentences: same states
    assert again is first and states.captures == 1 and first.a is not None
    direct = capture(lm, SENTENCES, ("h", "a"), batch_size=2)
    torch.testing.assert_close(first.h, direct.h, rtol=1e-5, atol=1e-5)  # batching changes float sums slightly


def test_conditions_and_modes_are_separate_captures_equal_to_direct_deactivation():
    lm = tiny_lm("gemma3_text")
    states = StateProvider(lm, batch_size=3)
    none = states.get(SENTENCES).h
    last = states.get(SENTENCES, NEURONS, "last").h
    every = states.get(SENTENCES, NEURONS, "all").h
    assert states.captures == 3
    want = capture_under(lm, SENTENCES, NEURONS, ("h",), 3, "last", progress=None).h
    # mode last runs only the last tokens against the shared prefixes: the same states up to float rounding
    torch.testing.assert_close(last, want, rtol=1e-5, atol=1e-5)
    every_want = capture_under(lm, SENTENCES, NEURONS, ("h",), 3, "all", progress=None).h
    torch.testing.assert_close(every, every_want, rtol=0, atol=0)  # mode all: whole sentences, same batches
    assert not torch.allclose(none, last) and not torch.allclose(last, every)


def test_undeactivated_and_last_token_conditions_share_one_prefix_pass():
    lm = tiny_lm("llama")
    states = StateProvider(lm, batch_size=4, want=("h", "a"))
    tokens = []
    handle = lm.view.decoder.register_forward_pre_hook(
        lambda module, args, kwargs: tokens.append(kwargs["input_ids"].shape[1]), with_kwargs=True)
    states.get(SENTENCES)
    calls = len(tokens)
    for seed in range(3):
        states.get(SENTENCES, NEURONS + [0, seed], "last")
    handle.remove()
    assert states.prefix_runs == 1 and states.captures == 4
    # the prefixes ran once (whole sentences but one token); every capture after them runs one token a sentence
    assert max(tokens[calls // 2 :]) == 1 and tokens[: calls // 2] == [t for t in tokens[: calls // 2] if t > 1]
    assert len(tokens) == calls // 2 * 5


def test_memory_bound_forgets_the_least_recently_used():
    lm = tiny_lm("llama")
    one = capture(lm, SENTENCES, ("h",)).h
    states = StateProvider(lm, want=("h",), max_bytes=int(one.numel() * 4 * 1.5))  # room for one state set
    states.get(SENTENCES)
    states.get(SENTENCES, NEURONS)
    states.get(SENTENCES)  # forgotten, so captured again
    assert states.captures == 3


def test_each_intervention_is_its_own_capture():
    from transfer_neurons.interventions import Scale, applying

    lm = tiny_lm("llama")
    states = StateProvider(lm, batch_size=4)
    zeroed = states.get(SENTENCES, NEURONS).h
    with applying(Scale(2.0)):
        doubled = states.get(SENTENCES, NEURONS).h
        assert states.get(SENTENCES, NEURONS).h is doubled
    assert states.captures == 2 and not torch.allclose(zeroed, doubled)
    assert states.get(SENTENCES, NEURONS).h is zeroed  # back to zeroing: the first capture again
