"""Model loading: sources, errors that name what was given, atomic GGUF cache."""

import os

import pytest
import torch
from tiny import byte_tokenizer, save_model, tiny_lm
from transformers import AutoConfig, AutoModelForCausalLM

from transfer_neurons.errors import ModelLoadError
from transfer_neurons.models import loading
from transfer_neurons.models.loading import load_model


def test_local_folder_loads_with_adapter_and_float32(tmp_path):
    lm = tiny_lm("qwen2")
    save_model(lm, tmp_path)
    loaded = load_model(str(tmp_path))
    assert loaded.view.num_layers == 4 and loaded.model.dtype == torch.float32
    assert not loaded.model.training and loaded.name == str(tmp_path.resolve())
    ids = lm.tokenizer("hello", return_tensors="pt")
    torch.testing.assert_close(loaded.model(**ids).logits, lm.model(**ids).logits)


def test_bfloat16_option(tmp_path):
    lm = tiny_lm("llama")
    save_model(lm, tmp_path)
    assert load_model(str(tmp_path), dtype="bfloat16").model.dtype == torch.bfloat16


def test_missing_path_is_named(tmp_path):
    with pytest.raises(ModelLoadError, match="no such file"):
        load_model(str(tmp_path / "nothing.gguf"))


def test_unsupported_file_is_named(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"\0")
    with pytest.raises(ModelLoadError, match=r"weights\.bin.*not a GGUF"):
        load_model(str(path))


def test_bad_device_and_dtype():
    with pytest.raises(ModelLoadError, match="--device 'tpu'"):
        load_model("embedded", device="tpu")
    with pytest.raises(ModelLoadError, match="--dtype 'int8'"):
        load_model("embedded", dtype="int8")


def test_unsupported_architecture_lists_supported(tmp_path):
    config = AutoConfig.for_model("opt", vocab_size=300, hidden_size=16, ffn_dim=32, num_hidden_layers=1,
                                  num_attention_heads=2, word_embed_proj_dim=16)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path)
    byte_tokenizer().save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match=r"model type 'opt'.*supported: .*gemma3_text.*llama"):
        load_model(str(tmp_path))


def test_interrupted_gguf_conversion_leaves_no_loadable_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFER_NEURONS_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(loading.AutoTokenizer, "from_pretrained", interrupted)
    with pytest.raises(KeyboardInterrupt):
        loading.convert_gguf(gguf)
    models = tmp_path / "cache" / "models"
    assert not models.exists() or os.listdir(models) == []


def test_gguf_cache_entry_is_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFER_NEURONS_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    entry = loading._gguf_cache_entry(gguf)
    entry.mkdir(parents=True)
    assert loading.convert_gguf(gguf) == entry  # no conversion attempted: the entry exists
