"""A user-declared adapter: read from YAML/JSON, trusted only after it reconstructs the model."""

import json

import pytest
from tiny import byte_tokenizer, save_model, tiny_lm
from transformers import AutoModelForCausalLM, OPTConfig

from transfer_neurons.capture import capture
from transfer_neurons.errors import ModelLoadError
from transfer_neurons.models.loading import load_model, prepare
from transfer_neurons.models.user_adapter import check_adapter, read_adapter

GEMMA_ADAPTER = "out_proj: mlp.down_proj\nmlp_out_norm: post_feedforward_layernorm\nnorm_gain_offset: 1.0\n"


def renamed(arch: str):
    """A tiny model whose model_type no registered adapter knows."""
    lm = tiny_lm(arch)
    lm.model.config.model_type = "mystery"
    return lm


def declared(arch: str, text: str, tmp_path, suffix: str = ".yaml"):
    """The renamed model prepared with the adapter file holding `text`, and that file's path."""
    path = tmp_path / f"adapter{suffix}"
    path.write_text(text, encoding="utf-8")
    lm = renamed(arch)
    return prepare(lm.model, lm.tokenizer, "mystery", read_adapter(path), str(path)), path


def test_unknown_type_without_adapter_points_to_the_option():
    lm = renamed("llama")
    with pytest.raises(ModelLoadError, match=r"'mystery'.*adapter=FILE"):
        prepare(lm.model, lm.tokenizer, "mystery")


@pytest.mark.parametrize("arch, text", [("llama", "decoder: model\nlayers: layers\nout_proj: mlp.down_proj\n"),
                                        ("gemma3_text", GEMMA_ADAPTER)])
def test_correct_adapter_reconstructs_and_matches_the_registered_one(arch, text, tmp_path):
    lm, path = declared(arch, text, tmp_path)
    worst = check_adapter(lm, str(path))
    assert max(worst.values()) < 1e-4  # float32 sums of 64 neurons: ~1e-6 here, far inside the 1e-3 bound
    # the declared adapter captures what the registered one does
    got = capture(lm, ["The cat sleeps."], want=("a", "m"), progress=None)
    want = capture(tiny_lm(arch), ["The cat sleeps."], want=("a", "m"), progress=None)
    assert (got.a - want.a).abs().max() < 1e-6 and (got.m - want.m).abs().max() < 1e-6  # same model, same ops


@pytest.mark.parametrize("text, what", [
    ("out_proj: mlp.down_proj\n", "Σ a_i v_i fails"),  # forgot the norm on the MLP output
    ("out_proj: mlp.down_proj\nmlp_out_norm: post_feedforward_layernorm\n", "Σ a_i v_i fails"),  # gain offset 0
])
def test_wrong_adapter_fails_with_the_measured_error(text, what, tmp_path):
    lm, path = declared("gemma3_text", text, tmp_path)
    with pytest.raises(ModelLoadError, match=rf"adapter\.yaml does not reconstruct.*{what} with relative error "
                                             r"(\d[\d.e+-]*) at layer \d") as info:
        check_adapter(lm, str(path))
    measured = float(info.value.args[0].split("relative error ")[1].split()[0])
    assert measured > 1e-2  # a wrong norm is off by a visible fraction, not rounding


def test_wrong_projection_shape_is_named(tmp_path):
    lm, path = declared("llama", json.dumps({"out_proj": "mlp.up_proj"}), tmp_path, ".json")
    with pytest.raises(ModelLoadError, match="out_proj or value_vectors_are_rows is wrong"):
        check_adapter(lm, str(path))


def test_an_mlp_of_flattened_tokens_fails_in_one_error(tmp_path):
    """OPT's MLP sees [batch * seq, d]: capture through it fails, and the adapter check says which modules to check."""
    config = OPTConfig(vocab_size=300, hidden_size=32, num_hidden_layers=2, ffn_dim=64, num_attention_heads=4,
                       max_position_embeddings=128, word_embed_proj_dim=32, pad_token_id=0, bos_token_id=1,
                       eos_token_id=2)
    path = tmp_path / "adapter.yaml"
    path.write_text("decoder: model.decoder\nlayers: layers\nout_proj: fc2\nfinal_norm: final_layer_norm\n")
    lm = prepare(AutoModelForCausalLM.from_config(config).eval(), byte_tokenizer(), "opt", read_adapter(path), str(path))
    with pytest.raises(ModelLoadError, match=r"adapter\.yaml: capturing through its modules failed \(IndexError"):
        check_adapter(lm, str(path))


def test_missing_module_path_is_named(tmp_path):
    with pytest.raises(ModelLoadError, match=r"adapter\.yaml: a module path does not exist"):
        declared("llama", "out_proj: mlp.nonexistent_proj\n", tmp_path)


@pytest.mark.parametrize("text, message", [
    ("out_proj: mlp.down_proj\nnorm: rms\n", r"unknown field\(s\) norm; known: decoder"),
    ("norm_gain_offset: one\n", r"'norm_gain_offset' must be a float"),
    ("value_vectors_are_rows: 1\n", r"'value_vectors_are_rows' must be a bool"),
    ("out_proj: null\n", r"'out_proj' must be a str, got None"),
    ("- out_proj\n", "expected a mapping"),
    ("out_proj: [\n", "not valid YAML"),
])
def test_bad_adapter_files_are_named(text, message, tmp_path):
    path = tmp_path / "adapter.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ModelLoadError, match=message):
        read_adapter(path)


def remote_code_folder(tmp_path):
    """A saved tiny Llama re-declared as model_type 'mystery' with its own (trivial) modelling code."""
    folder = save_model(tiny_lm("llama"), tmp_path / "mystery")
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="mystery", architectures=["MysteryForCausalLM"], auto_map={
        "AutoConfig": "configuration_mystery.MysteryConfig",
        "AutoModelForCausalLM": "modeling_mystery.MysteryForCausalLM"})
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "configuration_mystery.py").write_text(
        "from transformers import LlamaConfig\n\n\nclass MysteryConfig(LlamaConfig):\n    model_type = 'mystery'\n")
    (folder / "modeling_mystery.py").write_text(
        "from transformers import LlamaForCausalLM\n\nfrom .configuration_mystery import MysteryConfig\n\n\n"
        "class MysteryForCausalLM(LlamaForCausalLM):\n    config_class = MysteryConfig\n")
    return folder


def test_unknown_architecture_loads_with_trust_remote_code_and_adapter(tmp_path):
    folder = remote_code_folder(tmp_path)
    with pytest.raises(ModelLoadError, match="ships its own modelling code; pass trust_remote_code=True"):
        load_model(str(folder))
    with pytest.raises(ModelLoadError, match="'mystery'.*adapter=FILE"):
        load_model(str(folder), trust_remote_code=True)
    (tmp_path / "wrong.yaml").write_text("out_proj: mlp.down_proj\nmlp_out_norm: post_attention_layernorm\n")
    with pytest.raises(ModelLoadError, match=r"wrong\.yaml does not reconstruct the model.*relative error"):
        load_model(str(folder), trust_remote_code=True, adapter=tmp_path / "wrong.yaml")
    (tmp_path / "right.yaml").write_text("out_proj: mlp.down_proj\n")
    lm = load_model(str(folder), trust_remote_code=True, adapter=tmp_path / "right.yaml")
    assert type(lm.model).__name__ == "MysteryForCausalLM" and lm.view.num_layers == 4 and lm.view.d_ff == 64


def test_cli_adapter_option_loads_or_fails_in_one_line(tmp_path, capsys):
    from tiny import SENTENCES, write_jsonl

    from transfer_neurons.cli import main

    folder = remote_code_folder(tmp_path)
    data = write_jsonl(tmp_path / "pairs.jsonl", [{"en": e, "ja": j} for e, j in zip(SENTENCES, SENTENCES[::-1])])
    common = ["detect", "--type", "type2", "--lang", "ja", "--model", str(folder), "--trust-remote-code",
              "--centroid-data", str(data), "--score-data", str(data), "--top-n", "3", "--batch-size", "2"]
    (tmp_path / "wrong.json").write_text(json.dumps({"mlp_out_norm": "post_attention_layernorm"}))
    capsys.readouterr()  # drop the save's progress bar
    assert main([*common, "--adapter", str(tmp_path / "wrong.json"), "--out", str(tmp_path / "bad")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("transfer-neurons")]
    assert len(err) == 1 and "wrong.json does not reconstruct the model" in err[0] and "relative error" in err[0]
    (tmp_path / "right.json").write_text(json.dumps({"out_proj": "mlp.down_proj"}))
    assert main([*common, "--adapter", str(tmp_path / "right.json"), "--out", str(tmp_path / "det")]) == 0
    doc = json.loads((tmp_path / "det/neurons.json").read_text())
    assert doc["model"]["type"] == "mystery" and doc["count"] == 3
