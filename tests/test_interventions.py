"""Deactivation zeroes exactly the chosen activations at the chosen positions."""

import numpy as np
import pytest
import torch
from tiny import ARCHITECTURES, SENTENCES, tiny_lm

from transfer_neurons.capture import capture, last_token_index
from transfer_neurons.errors import TransferNeuronsError
from transfer_neurons.interventions import deactivated, neurons_by_layer

NEURONS = np.array([[0, 3], [0, 10], [2, 5], [3, 63]])


def full_activations(lm, texts):
    """Run a padded batch and keep a[l] at every position: {layer: [batch, seq, d_ff]}, mask."""
    batch = lm.tokenizer(list(texts), return_tensors="pt", padding=True)
    kept, handles = {}, []
    for layer in range(lm.view.num_layers):
        def hook(module, args, layer=layer):
            kept[layer] = args[0].detach().clone()
        handles.append(lm.view.out_proj(layer).register_forward_pre_hook(hook))
    positions = (batch["attention_mask"].cumsum(1) - 1).clamp(min=0)
    lm.view.decoder(**batch, position_ids=positions)
    for handle in handles:
        handle.remove()
    return kept, batch["attention_mask"]


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("mode", ["last", "all"])
def test_zeroes_chosen_neurons_at_chosen_positions_only(arch, side, mode):
    lm = tiny_lm(arch, padding_side=side)
    base, mask = full_activations(lm, SENTENCES[:3])
    with deactivated(lm, NEURONS, mode=mode):
        off, _ = full_activations(lm, SENTENCES[:3])
    last = last_token_index(mask)
    hit = torch.zeros_like(mask, dtype=torch.bool)
    if mode == "all":
        hit = mask.bool()
    else:
        hit[torch.arange(3), last] = True
    chosen = neurons_by_layer(NEURONS, 4, 64)
    # layer 0 is upstream of everything: untouched entries must equal the baseline exactly
    idx = chosen[0]
    assert torch.all(off[0][..., idx][hit] == 0)
    assert torch.equal(off[0][..., idx][~hit], base[0][..., idx][~hit])
    others = torch.ones(64, dtype=torch.bool)
    others[idx] = False
    assert torch.equal(off[0][..., others], base[0][..., others])
    for layer, index in chosen.items():
        assert torch.all(off[layer][..., index][hit] == 0)


def test_last_mode_leaves_earlier_positions_of_later_layers_unchanged():
    lm = tiny_lm("llama", padding_side="right")
    base, mask = full_activations(lm, SENTENCES[:3])
    with deactivated(lm, NEURONS, mode="last"):
        off, _ = full_activations(lm, SENTENCES[:3])
    last = last_token_index(mask)
    for row in range(3):  # causal attention: positions before the last token cannot change
        torch.testing.assert_close(off[3][row, : last[row]], base[3][row, : last[row]])


def test_capture_under_deactivation_changes_states_and_hooks_are_removed():
    lm = tiny_lm("gemma3_text")
    before = capture(lm, SENTENCES, want=("h", "a"), progress=None)
    with deactivated(lm, NEURONS, mode="last"):
        during = capture(lm, SENTENCES, want=("h", "a"), progress=None)
    after = capture(lm, SENTENCES, want=("h", "a"), progress=None)
    assert torch.all(during.a[:, 0, 3] == 0) and not torch.allclose(during.h[:, 3], before.h[:, 3])
    torch.testing.assert_close(after.h, before.h)


def test_prompt_last_and_all_spare_generated_tokens():
    lm = tiny_lm("llama", padding_side="left")
    batch = lm.tokenizer(list(SENTENCES[:2]), return_tensors="pt", padding=True)
    for mode in ("prompt_last", "all"):
        seen = []
        with deactivated(lm, NEURONS, mode=mode):  # registered after the zeroing hook: sees its result
            hook = lm.view.out_proj(0).register_forward_pre_hook(lambda m, a: seen.append(a[0][..., 3].clone()))
            lm.model.generate(**batch, max_new_tokens=3, do_sample=False, pad_token_id=0)
            hook.remove()
        assert torch.all(seen[0][:, -1] == 0)
        assert (mode == "all") == bool(torch.all(seen[0][1:, :] == 0))  # row 1 has no padding
        assert all(torch.all(step != 0) for step in seen[1:])


def test_out_of_range_neuron_is_a_clear_error():
    with pytest.raises(TransferNeuronsError, match="layer 9"):
        neurons_by_layer(np.array([[9, 0]]), 4, 64)
