"""File hashes cached by path+size+mtime, and hub commits resolved offline from the local HF cache."""

import hashlib
import os

import pytest
from huggingface_hub import constants

from transfer_neurons import fingerprints
from transfer_neurons.errors import TransferNeuronsError


def test_file_hash_is_cached_by_path_size_and_mtime(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFER_NEURONS_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "weights.bin"
    path.write_bytes(b"abc")
    assert fingerprints.file_sha256(path) == hashlib.sha256(b"abc").hexdigest()
    entry = fingerprints._hash_cache_entry(path)
    entry.write_text("f" * 64)  # the cached value is used as long as the file is unchanged: no re-read
    assert fingerprints.file_sha256(path) == "f" * 64
    os.utime(path, ns=(1, 1))  # touched: a new key, so the bytes are hashed again
    assert fingerprints.file_sha256(path) == hashlib.sha256(b"abc").hexdigest()


def test_tree_hash_covers_names_and_contents(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFER_NEURONS_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "a.json").write_text("1")
    first = fingerprints.tree_sha256(folder)
    (folder / "a.json").rename(folder / "b.json")
    assert fingerprints.tree_sha256(folder) != first


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    """A fake Hugging Face cache holding org/m at two refs, with the hub unreachable."""
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    refs = tmp_path / "hub" / "models--org--m" / "refs"
    refs.mkdir(parents=True)
    (refs / "main").write_text("a" * 40)
    (refs / "v2").write_text("b" * 40)
    return refs


def test_commit_resolves_offline_from_the_cache(offline_cache):
    assert fingerprints.resolve_hub_commit("org/m") == {"commit": "a" * 40, "resolved_from": "cache"}
    assert fingerprints.resolve_hub_commit("org/m", "v2")["commit"] == "b" * 40
    assert fingerprints.resolve_hub_commit("org/m", "c" * 40) == {"commit": "c" * 40, "resolved_from": "pinned"}
    (offline_cache / "main").write_text("d" * 40)  # a newer download moved main
    assert fingerprints.resolve_hub_commit("org/m")["commit"] == "d" * 40


def test_unknown_offline_repo_is_a_clear_error(offline_cache):
    with pytest.raises(TransferNeuronsError, match=r"cannot resolve model 'org/other' revision 'main': HF_HUB_OFFLINE"):
        fingerprints.resolve_hub_commit("org/other")
