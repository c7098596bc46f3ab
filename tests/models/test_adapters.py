"""Every adapter locates h, m, a and v so that h[l] = m[l] + sum_i eff_a_i eff_v_i (+ bias)."""

import json

import numpy as np
import pytest
import torch
from tiny import ARCHITECTURES, SANDWICH, SENTENCES, save_model, tiny_lm, write_jsonl

from transfer_neurons.cli import main
from transfer_neurons.outputs import load_npy

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
def test_dot_values_equals_explicit_product_for_each_layer(arch):
    view = tiny_lm(arch).view
    layers = range(1, 3)
    x = torch.randn(len(layers), 5, view.d_model)  # [g, n, d_model]
    got = view.dot_values(layers, x, view.value_gains(layers))
    assert got.shape == (len(layers), 5, view.d_ff)
    for i, layer in enumerate(layers):
        torch.testing.assert_close(got[i], x[i] @ view.value_vectors(layer).T, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_head_of_last_layer_output_gives_the_models_logits(arch):
    """final norm -> unembedding -> logit scale / softcap on h[last] reproduces the model's own output."""
    from transfer_neurons.analyses.logit_lens import lens_log_probs

    lm = tiny_lm(arch)
    got = capture(lm, SENTENCES[:1], want=("h",), batch_size=1, progress=None)
    batch = lm.tokenizer(list(SENTENCES[:1]), return_tensors="pt")
    with torch.no_grad():
        logits = lm.model(**batch).logits[:, -1].float()
    want = torch.log_softmax(logits, dim=-1)
    torch.testing.assert_close(lens_log_probs(lm, got.h[:, -1]), want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("arch", ["cohere", "cohere2", "bloom"])
def test_detect_command_runs_on_a_saved_model(arch, tmp_path):
    save_model(tiny_lm(arch), tmp_path / "model")
    data = write_jsonl(tmp_path / "pairs.jsonl", [{"en": e, "ja": j} for e, j in zip(SENTENCES, SENTENCES[::-1])])
    assert main(["detect", "--type", "type2", "--lang", "ja", "--model", str(tmp_path / "model"),
                 "--centroid-data", str(data), "--score-data", str(data), "--top-n", "5",
                 "--batch-size", "2", "--out", str(tmp_path / "det")]) == 0
    neurons = json.loads((tmp_path / "det/neurons.json").read_text())["neurons"]
    scores = load_npy(tmp_path / "det/scores.npy")  # [layer, d_ff]
    assert len(neurons) == 5 and {n["layer"] for n in neurons} <= {3}  # type2: the last 37.5 % of 4 layers
    assert np.isfinite(scores).all() and neurons[0]["score"] == pytest.approx(float(scores[3].max()))


def test_precision_names_dtype_and_quantisation():
    view = tiny_lm("llama").view
    assert view.precision("tiny") == {"dtype": "float32", "quantisation": "none"}
    assert view.precision("embedded:gemma-3-270m-it-Q4_K_M.gguf")["quantisation"] == "GGUF Q4_K_M, de-quantised to float32 on load"
    view.model.config.quantization_config = {"quant_method": "bitsandbytes", "bits": 4}
    assert view.precision("x")["quantisation"] == "bitsandbytes 4-bit"
    view.model.config.quantization_config = {"quant_method": "gguf"}  # what a folder converted from GGUF records
    assert view.precision("embedded:gemma-3-270m-q4_k_m.gguf")["quantisation"] == "GGUF Q4_K_M, de-quantised to float32 on load"
