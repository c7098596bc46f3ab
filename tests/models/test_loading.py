"""Model loading: sources, errors that name what was given, atomic GGUF cache, identity."""

import hashlib
import os
import time

import pytest
import torch
from tiny import byte_tokenizer, save_model, tiny_lm
from transformers import AutoConfig, AutoModelForCausalLM

from transfer_neurons.errors import ModelLoadError
from transfer_neurons import fingerprints
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
    loaded = load_model(tmp_path, device=torch.device("cpu"), dtype=torch.bfloat16)  # a notebook's spellings
    assert loaded.model.dtype == torch.bfloat16
    with pytest.raises(ModelLoadError, match="model: expected a hub id, a folder"):
        load_model(None)


def test_missing_path_is_named(tmp_path):
    with pytest.raises(ModelLoadError, match="no such file"):
        load_model(str(tmp_path / "nothing.gguf"))


def test_unsupported_file_is_named(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"\0")
    with pytest.raises(ModelLoadError, match=r"weights\.bin.*not a GGUF"):
        load_model(str(path))


def test_bad_device_and_dtype():
    with pytest.raises(ModelLoadError, match="^device 'tpu'"):
        load_model("embedded", device="tpu")
    with pytest.raises(ModelLoadError, match="^dtype 'int8'"):
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


def test_device_parse_accepts_cuda_index_and_names_missing_cuda(monkeypatch):
    assert loading.parse_device("cpu") == "cpu"
    with pytest.raises(ModelLoadError, match=r"^device 'cuda:x' is not supported; choose cpu, cuda, cuda:N or auto"):
        loading.parse_device("cuda:x")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ModelLoadError, match=r"^device cuda:1: CUDA is not available here .*; use device='cpu'"):
        load_model("embedded", device="cuda:1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert loading.parse_device("cuda:1") == "cuda:1"
    with pytest.raises(ModelLoadError, match=r"^device cuda:2: there is no such GPU; this machine has 2"):
        loading.parse_device("cuda:2")


def test_revision_and_trust_remote_code_reach_from_pretrained(monkeypatch):
    """A hub id's --revision and --trust-remote-code go to tokenizer and model; the loaded commit is recorded."""
    tiny, calls = tiny_lm("llama"), []

    def tokenizer(source, **kwargs):
        calls.append(("tokenizer", source, kwargs))
        return tiny.tokenizer

    def model(source, **kwargs):
        calls.append(("model", source, kwargs))
        tiny.model.config._commit_hash = "c" * 40
        return tiny.model

    monkeypatch.setattr(loading.AutoTokenizer, "from_pretrained", tokenizer)
    monkeypatch.setattr(loading.AutoModelForCausalLM, "from_pretrained", model)
    monkeypatch.setattr(loading, "hub_offline_reason", lambda: None)  # as if the hub answered
    lm = load_model("org/tiny", revision="v1.0", trust_remote_code=True)
    assert [(kind, src, kw["revision"], kw["trust_remote_code"]) for kind, src, kw in calls] == [
        ("tokenizer", "org/tiny", "v1.0", True), ("model", "org/tiny", "v1.0", True)]
    assert lm.fingerprint() == {"kind": "hub", "id": "org/tiny", "revision": "v1.0", "commit": "c" * 40}
    calls.clear()
    load_model("org/tiny")
    assert all(kw["revision"] is None and kw["trust_remote_code"] is False for _, _, kw in calls)  # off by default


def test_revision_of_a_local_folder_is_refused(tmp_path):
    save_model(tiny_lm("llama"), tmp_path)
    with pytest.raises(ModelLoadError, match=r"^revision 'main' applies to hub ids only; model='"):
        load_model(str(tmp_path), revision="main")
    with pytest.raises(ModelLoadError, match=r"^revision 'main' applies to hub ids only; model='"):
        loading.model_fingerprint(str(tmp_path), revision="main")


def test_hub_fingerprint_follows_the_revision(monkeypatch):
    commits = {None: "a" * 40, "main": "a" * 40, "v2": "b" * 40}
    monkeypatch.setattr(loading, "resolve_hub_commit",
                        lambda repo, revision, repo_type: {"commit": commits[revision], "resolved_from": "hub"})
    main, v2 = loading.model_fingerprint("org/m"), loading.model_fingerprint("org/m", "v2")
    assert main == loading.model_fingerprint("org/m", "main") | {"revision": "main"}
    assert main["commit"] == "a" * 40 and v2["commit"] == "b" * 40 and main != v2
    commits[None] = commits["main"] = "d" * 40  # the hub's main moved: the fingerprint moves with it
    assert loading.model_fingerprint("org/m")["commit"] == "d" * 40


def test_local_fingerprint_is_a_content_hash(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFER_NEURONS_CACHE", str(tmp_path / "cache"))
    folder = save_model(tiny_lm("llama"), tmp_path / "model")
    first = loading.model_fingerprint(str(folder))
    assert first["kind"] == "folder" and first == loading.model_fingerprint(str(folder))
    with open(folder / "config.json", "a") as handle:
        handle.write("\n")
    assert loading.model_fingerprint(str(folder))["sha256"] != first["sha256"]
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF one")
    assert loading.model_fingerprint(str(gguf)) == {
        "kind": "file", "path": str(gguf.resolve()), "sha256": hashlib.sha256(b"GGUF one").hexdigest()}


def test_text_file_named_gguf_is_refused_by_its_bytes(tmp_path):
    fake = tmp_path / "notes.gguf"
    fake.write_text("just some text\n")
    with pytest.raises(ModelLoadError, match=r"notes\.gguf.*not a GGUF file"):
        load_model(str(fake))


def test_damaged_gguf_is_named_and_leaves_no_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFER_NEURONS_CACHE", str(tmp_path / "cache"))
    damaged = tmp_path / "damaged.gguf"
    damaged.write_bytes(b"GGUF" + bytes(range(60)))  # the magic, then garbage
    with pytest.raises(ModelLoadError, match=r"damaged\.gguf.*cannot convert this GGUF file"):
        load_model(str(damaged))
    assert os.listdir(tmp_path / "cache" / "models") == []


def test_folder_without_config_is_named(tmp_path):
    with pytest.raises(ModelLoadError, match="folder has no config.json"):
        load_model(str(tmp_path))


def test_unknown_hub_id_answers_at_once_offline(tmp_path, monkeypatch):
    """HF_HUB_OFFLINE: no hub client retries (a minute), an error naming the model in well under a second."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(loading.AutoTokenizer, "from_pretrained", lambda *a, **k: pytest.fail("hub asked"))
    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match=r"'no-such-model-xyz'.*not in the Hugging Face cache.*HF_HUB_OFFLINE"):
        load_model("no-such-model-xyz")
    assert time.perf_counter() - start < 1.0  # a local check only; generous for a busy machine


def test_unreachable_hub_loads_a_cached_model_from_local_files_only(monkeypatch):
    """Hub unreachable: a model in the HF cache loads with local_files_only, so the hub client never retries."""
    tiny, calls = tiny_lm("llama"), []
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(fingerprints, "_hub_unreachable", lambda: "huggingface.co is unreachable: test")
    monkeypatch.setattr(loading, "in_hub_cache", lambda repo_id: repo_id == "org/cached")
    monkeypatch.setattr(loading.AutoTokenizer, "from_pretrained", lambda src, **kw: calls.append(kw) or tiny.tokenizer)
    monkeypatch.setattr(loading.AutoModelForCausalLM, "from_pretrained", lambda src, **kw: calls.append(kw) or tiny.model)
    load_model("org/cached")
    assert [kw.get("local_files_only") for kw in calls] == [True, True]
    with pytest.raises(ModelLoadError, match=r"'org/absent'.*the hub cannot be asked \(huggingface.co is unreachable"):
        load_model("org/absent")


def test_cli_device_cuda_index_without_cuda_is_one_line(tmp_path, capsys, monkeypatch):
    from transfer_neurons.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    save_model(tiny_lm("llama"), tmp_path / "model")
    capsys.readouterr()  # drop the save's progress bar
    code = main(["detect", "--type", "type2", "--lang", "ja", "--model", str(tmp_path / "model"), "--device", "cuda:1",
                 "--out", str(tmp_path / "det")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("transfer-neurons detect: error: --device cuda:1: CUDA is not available here")
    assert "\n" not in err


def test_detect_meta_records_revision_and_fingerprint(tmp_path, monkeypatch):
    import json

    from tiny import SENTENCES, write_jsonl

    from transfer_neurons.cli import main

    monkeypatch.setenv("TRANSFER_NEURONS_CACHE", str(tmp_path / "cache"))
    folder = save_model(tiny_lm("llama"), tmp_path / "model")
    data = write_jsonl(tmp_path / "pairs.jsonl", [{"en": e, "ja": j} for e, j in zip(SENTENCES, SENTENCES[::-1])])
    assert main(["detect", "--type", "type2", "--lang", "ja", "--model", str(folder), "--centroid-data", str(data),
                 "--score-data", str(data), "--top-n", "3", "--batch-size", "2", "--out", str(tmp_path / "det")]) == 0
    meta = json.loads((tmp_path / "det/meta.json").read_text())
    assert meta["model_revision"] is None and meta["model_fingerprint"] == loading.model_fingerprint(str(folder))
    assert meta["model_fingerprint"]["kind"] == "folder" and meta["neuron_module"] == "model.layers.{layer}.mlp.down_proj"
    neurons = json.loads((tmp_path / "det/neurons.json").read_text())
    assert neurons["model"]["fingerprint"] == meta["model_fingerprint"]
