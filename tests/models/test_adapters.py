"""Every adapter locates h, m, a and v so that h[l] = m[l] + sum_i eff_a_i eff_v_i (+ bias)."""

import pytest
import torch
from tiny import ARCHITECTURES, SANDWICH, SENTENCES, tiny_lm

from transfer_neurons.capture import capture
from transfer_neurons.errors import ModelLoadError
from transfer_neurons.models.adapters import ModelView, adapter_for


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_decomposition_holds_at_last_token(arch):
    lm = tiny_lm(arch)
    got = capture(lm, SENTENCES, want=("h", "m", "a"), batch_size=3, progress=None)
    view = lm.view
    for layer in range(view.num_layers):
        mlp_part = got.a[:, layer] @ view.value_vectors(layer)  # [n, d_model]
        bias = view.out_bias(layer)
        if bias is not None:
            mlp_part = mlp_part + bias
        torch.testing.assert_close(got.m[:, layer] + mlp_part, got.h[:, layer], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_last_layer_output_matches_hidden_states(arch):
    """h[l] is the raw layer output: hidden_states[l+1] for all but the final-normed last entry."""
    lm = tiny_lm(arch, padding_side="left")
    got = capture(lm, SENTENCES[:2], want=("h", "embed"), batch_size=2, progress=None)
    batch = lm.tokenizer(list(SENTENCES[:2]), return_tensors="pt", padding=True)
    positions = (batch["attention_mask"].cumsum(1) - 1).clamp(min=0)
    hidden = lm.model(**batch, position_ids=positions, output_hidden_states=True).hidden_states
    torch.testing.assert_close(got.embed, hidden[0][:, -1], atol=1e-5, rtol=1e-5)
    for layer in range(lm.view.num_layers - 1):
        torch.testing.assert_close(got.h[:, layer], hidden[layer + 1][:, -1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_sandwich_flag(arch):
    assert (adapter_for(tiny_lm(arch).model).mlp_out_norm is not None) == (arch in SANDWICH)


def test_unknown_architecture_names_type_and_supported():
    lm = tiny_lm("llama")
    lm.model.config.model_type = "mamba"
    with pytest.raises(ModelLoadError, match=r"'mamba'.*supported: .*llama"):
        ModelView(lm.model)


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gemma3_text"])
def test_dot_values_equals_explicit_product(arch):
    view = tiny_lm(arch).view
    x = torch.randn(5, view.d_model)
    torch.testing.assert_close(view.dot_values(1, x), x @ view.value_vectors(1).T, atol=1e-5, rtol=1e-5)
