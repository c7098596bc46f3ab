"""Interventions change exactly the chosen activations at the chosen positions, as each kind defines."""

import numpy as np
import pytest
import torch
from host_copies import DeviceWaits, HostCopies
from tiny import ARCHITECTURES, SENTENCES, tiny_lm

from transfer_neurons.analyses.generation import greedy_generate, prompt_token_ids
from transfer_neurons.capture import capture, last_token_index
from transfer_neurons.errors import TransferNeuronsError
from transfer_neurons.interventions import (Mean, Patch, Scale, Zero, active_intervention, applying, capture_under,
                                            deactivated, neurons_by_layer, parse_intervention)

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


# Interventions beyond zeroing. Hooks on a module run in registration order, so one hook
# registered before `deactivated` sees a as it arrives and one registered after sees what
# the intervention made of it: every layer's change can be checked exactly.

SPOT_ARCHS = ("llama", "gemma3_text", "gpt2", "gpt_neox")


def before_and_after(lm, texts, neurons, mode, intervention):
    """Run texts as one padded batch: a[l] at every position as it enters and as it leaves the intervention."""
    batch = lm.tokenizer(list(texts), return_tensors="pt", padding=True)
    seen = {"before": {}, "after": {}}

    def keeper(which, layer):
        def hook(module, args):
            seen[which][layer] = args[0].detach().clone()  # [batch, seq, d_ff]
        return hook

    handles = [lm.view.out_proj(l).register_forward_pre_hook(keeper("before", l)) for l in range(4)]
    with deactivated(lm, neurons, mode=mode, intervention=intervention):
        handles += [lm.view.out_proj(l).register_forward_pre_hook(keeper("after", l)) for l in range(4)]
        positions = (batch["attention_mask"].cumsum(1) - 1).clamp(min=0)
        lm.view.decoder(**batch, position_ids=positions)
    for handle in handles:
        handle.remove()
    mask = batch["attention_mask"].bool()
    hit = mask.clone() if mode == "all" else torch.zeros_like(mask)
    if mode == "last":
        hit[torch.arange(len(texts)), last_token_index(mask)] = True
    return seen["before"], seen["after"], hit


def assert_only_chosen_changed(before, after, hit, neurons):
    """Entries outside (chosen neurons x chosen positions) leave the hook exactly as they came in."""
    for layer, index in neurons_by_layer(neurons, 4, 64).items():
        untouched = torch.ones_like(after[layer], dtype=torch.bool)
        untouched[..., index] = ~hit[..., None]
        assert torch.equal(after[layer][untouched], before[layer][untouched])


def last_token_raw(lm, text):
    """Raw a[l] at the last token of one sentence run alone (no padding): {layer: [d_ff]}."""
    ids = lm.tokenizer([text], return_tensors="pt")
    kept = {}
    handles = [lm.view.out_proj(l).register_forward_pre_hook(
        lambda m, args, l=l: kept.__setitem__(l, args[0][0, -1].detach().clone())) for l in range(4)]
    lm.view.decoder(**ids)
    for handle in handles:
        handle.remove()
    return kept


@pytest.mark.parametrize("arch", SPOT_ARCHS)
@pytest.mark.parametrize("mode", ["last", "all"])
@pytest.mark.parametrize("factor", [0.0, 0.5, 2.0, -1.0])
def test_scale_multiplies_chosen_activations_by_f(arch, mode, factor):
    lm = tiny_lm(arch, padding_side="left")
    before, after, hit = before_and_after(lm, SENTENCES[:3], NEURONS, mode, Scale(factor))
    for layer, index in neurons_by_layer(NEURONS, 4, 64).items():
        # the hook computes a * F on the same float32 values: bit-identical to doing it here
        assert torch.equal(after[layer][..., index][hit], before[layer][..., index][hit] * factor)
    assert_only_chosen_changed(before, after, hit, NEURONS)


def test_scale_one_changes_nothing_and_scale_zero_equals_zero():
    lm = tiny_lm("llama")
    plain = capture(lm, SENTENCES, want=("h",), progress=None).h
    with deactivated(lm, NEURONS, intervention=Scale(1.0)):
        assert torch.equal(capture(lm, SENTENCES, want=("h",), progress=None).h, plain)
    with deactivated(lm, NEURONS, intervention=Scale(0.0)):
        scaled = capture(lm, SENTENCES, want=("h",), progress=None).h
    with deactivated(lm, NEURONS):
        torch.testing.assert_close(scaled, capture(lm, SENTENCES, want=("h",), progress=None).h, rtol=0, atol=0)


@pytest.mark.parametrize("arch", SPOT_ARCHS)
@pytest.mark.parametrize("mode", ["last", "all"])
def test_mean_sets_chosen_activations_to_reference_mean(arch, mode):
    lm = tiny_lm(arch, padding_side="right")
    reference = SENTENCES[3:]
    alone = [last_token_raw(lm, text) for text in reference]
    before, after, hit = before_and_after(lm, SENTENCES[:3], NEURONS, mode, Mean(reference, batch_size=2))
    for layer, index in neurons_by_layer(NEURONS, 4, 64).items():
        want = torch.stack([a[layer] for a in alone]).mean(dim=0)[index]  # [k]
        got = after[layer][..., index][hit]  # [positions, k]
        # padding and batching change float32 sums in the last bits only
        torch.testing.assert_close(got, want.expand_as(got), rtol=1e-5, atol=1e-6)
    assert_only_chosen_changed(before, after, hit, NEURONS)


@pytest.mark.parametrize("arch", SPOT_ARCHS)
@pytest.mark.parametrize("mode", ["last", "all"])
def test_patch_sets_chosen_activations_to_the_paired_source_row(arch, mode):
    lm = tiny_lm(arch, padding_side="left")
    sources, targets = SENTENCES[3:6], SENTENCES[0:3]
    patch = Patch(sources, targets, batch_size=2)
    run = targets[::-1]  # another order than the pairs: rows are found by their tokens
    before, after, hit = before_and_after(lm, run, NEURONS, mode, patch)
    hub = {text: last_token_raw(lm, text) for text in sources}
    for layer, index in neurons_by_layer(NEURONS, 4, 64).items():
        for row, text in enumerate(run):
            want = hub[sources[targets.index(text)]][layer][index]  # [k]
            got = after[layer][row][..., index][hit[row]]  # [positions, k]
            # the source ran in a padded, length-sorted batch: float32 differences in the last bits only
            torch.testing.assert_close(got, want.expand_as(got), rtol=1e-5, atol=1e-6)
    assert_only_chosen_changed(before, after, hit, NEURONS)


def test_patch_under_capture_gives_each_l2_sentence_its_hub_activation():
    lm = tiny_lm("llama")  # no norm on the MLP output: capture's effective a is the raw a
    hub, l2 = SENTENCES[:4], SENTENCES[2:6]
    hub_a = capture(lm, hub, want=("a",), progress=None).a  # [pair, layer, d_ff]
    patched = capture_under(lm, l2, NEURONS, ("a",), batch_size=3, intervention=Patch(hub, l2))
    layers, index = NEURONS[:, 0], NEURONS[:, 1]
    # different batches and padding on each side: float32 sums agree to the last bits
    torch.testing.assert_close(patched.a[:, layers, index], hub_a[:, layers, index], rtol=1e-5, atol=1e-6)


def test_patch_refuses_an_input_that_is_not_a_target():
    lm = tiny_lm("llama")
    with pytest.raises(TransferNeuronsError, match="none of the patch's target"):
        capture_under(lm, SENTENCES[4:], NEURONS, intervention=Patch(SENTENCES[:2], SENTENCES[2:4]))


def test_patch_refuses_one_target_with_two_sources():
    lm = tiny_lm("llama")
    patch = Patch(("a", "b"), ("same", "same"))
    with pytest.raises(TransferNeuronsError, match="appears twice"):
        capture_under(lm, ["same"], NEURONS, intervention=patch)


def test_applying_sets_the_intervention_deactivated_uses_by_default():
    lm = tiny_lm("llama")
    assert active_intervention() == Zero()
    with deactivated(lm, NEURONS, intervention=Scale(3.0)):
        want = capture(lm, SENTENCES, want=("h",), progress=None).h
    with applying(Scale(3.0)):
        got = capture_under(lm, SENTENCES, NEURONS)
    assert active_intervention() == Zero()
    assert torch.equal(got.h, want)


@pytest.mark.parametrize("spec, want", [("zero", Zero()), ("scale:0.5", Scale(0.5)), (" scale:2 ", Scale(2.0)),
                                        ("scale:-1e-1", Scale(-0.1))])
def test_parse_intervention_reads_specs_and_writes_them_back(spec, want):
    assert parse_intervention(spec) == want
    assert parse_intervention(want.spec) == want


def test_parse_intervention_builds_mean_and_patch_from_data():
    assert parse_intervention("mean", reference=["x", "y"]).reference == ("x", "y")
    patch = parse_intervention("patch", sources=["a"], targets=["b"])
    assert (patch.sources, patch.targets, patch.spec) == (("a",), ("b",), "patch")


@pytest.mark.parametrize("spec", ["scale", "scale:", "scale:x", "scale:nan", "zero:1", "mean", "patch", "ones", ""])
def test_bad_intervention_specs_are_clear_errors(spec):
    with pytest.raises(TransferNeuronsError, match="intervention|scale factor"):
        parse_intervention(spec)


@pytest.mark.parametrize("mode", ["last", "all", "prompt_last"])
@pytest.mark.parametrize("kind", ["zero", "mean", "patch"])
def test_decoding_under_an_intervention_waits_for_the_device_a_fixed_number_of_times(mode, kind):
    """Each pass may read its mask and token ids once, but a deactivated layer adds no wait on a GPU:
    none per layer and step (before: `hit.any()` and the index's copy in every hook)."""
    lm = tiny_lm("llama")
    prompts = prompt_token_ids(lm.tokenizer, SENTENCES[:4])
    intervention = parse_intervention(kind, reference=SENTENCES, sources=SENTENCES[2:6], targets=SENTENCES[:4])
    waits = {}
    for layers in (1, 3):
        neurons = np.array([[layer, 5] for layer in range(layers)])
        with deactivated(lm, neurons, mode, intervention):
            greedy_generate(lm, prompts, max_new_tokens=1, eos=frozenset())  # places the values once per layer
            with DeviceWaits("interventions.py") as seen:
                greedy_generate(lm, prompts, max_new_tokens=4, eos=frozenset(), batch_size=4)
        waits[layers] = sorted(seen.calls)
    assert waits[1] == waits[3], waits


def test_mean_and_patch_values_are_reduced_on_the_device():
    """The reference means reach the host once per layer, however many batches; patch values stay on the device."""
    lm = tiny_lm("llama")
    copies = {}
    for batches in (1, 3):
        with HostCopies() as seen:
            Mean(tuple(SENTENCES * batches), batch_size=len(SENTENCES)).means(lm)
        copies[batches] = seen.calls
    assert len(copies[1]) == len(copies[3]) == lm.view.num_layers
    groups = neurons_by_layer(NEURONS, lm.view.num_layers, lm.view.d_ff)
    with HostCopies() as seen:
        Patch(tuple(SENTENCES[:3]), tuple(SENTENCES[3:]), batch_size=1).bind(lm, groups)
    assert seen.calls == []
