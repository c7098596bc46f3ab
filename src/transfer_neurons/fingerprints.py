"""Content identities that cache keys and meta.json record: file hashes and hub commits.

A local file is named by the SHA-256 of its bytes. Hashing a 16 GB model folder takes
minutes, so each file's hash is cached under `$TRANSFER_NEURONS_CACHE/hashes/`, keyed by
its resolved path, size and modification time: an unchanged file is never re-read, an
edited one is. A hub repository is named by the commit its revision resolves to: asked
of the hub when online, read from the local Hugging Face cache (`refs/<revision>`) when
offline or unreachable. Whether the hub can be asked at all is checked once per process, so
models and datasets that are not cached fail at once offline instead of after the client's retries.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import socket
from pathlib import Path
from urllib.parse import urlsplit

from .errors import TransferNeuronsError
from .outputs import write_bytes

COMMIT = re.compile(r"[0-9a-f]{40}")
_CHUNK = 1 << 24  # 16 MiB per read


def cache_root() -> Path:
    """The user cache folder (`$TRANSFER_NEURONS_CACHE`, default ~/.cache/transfer-neurons)."""
    root = os.environ.get("TRANSFER_NEURONS_CACHE") or Path.home() / ".cache" / "transfer-neurons"
    return Path(root)


def _hash_cache_entry(path: Path) -> Path:
    """Where the hash of one file version (resolved path, size, mtime) is kept."""
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
    return cache_root() / "hashes" / key


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, cached by resolved path + size + mtime."""
    path = Path(path)
    entry = _hash_cache_entry(path)
    if entry.is_file():
        cached = entry.read_text(encoding="ascii").strip()
        if re.fullmatch(r"[0-9a-f]{64}", cached):
            return cached
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    value = digest.hexdigest()
    try:
        write_bytes(entry, value.encode("ascii"))
    except OSError:
        pass  # a read-only cache only costs a re-hash next time
    return value


def tree_sha256(folder: str | Path) -> str:
    """SHA-256 over a folder's files: their relative paths and content hashes, in sorted order."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.relative_to(folder).as_posix()}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()


def cached_commit(repo_id: str, revision: str | None, repo_type: str = "model") -> str | None:
    """The commit a revision pointed at when the repository was last downloaded, from the local HF cache."""
    from huggingface_hub import constants

    folder = Path(constants.HF_HUB_CACHE) / f"{repo_type}s--{repo_id.replace('/', '--')}"
    ref = folder / "refs" / (revision or "main")
    if ref.is_file():
        commit = ref.read_text(encoding="ascii").strip()
        return commit if COMMIT.fullmatch(commit) else None
    if revision and COMMIT.fullmatch(revision) and (folder / "snapshots" / revision).is_dir():
        return revision
    return None


def resolve_hub_commit(repo_id: str, revision: str | None = None, repo_type: str = "model") -> dict:
    """{"commit", "resolved_from"}: the commit hash a hub revision (default main) names now.

    A full 40-hex revision is already a commit. Otherwise the hub is asked (unless
    HF_HUB_OFFLINE is set); offline or unreachable, the local cache's ref is used.
    """
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    if revision and COMMIT.fullmatch(revision):
        return {"commit": revision, "resolved_from": "pinned"}
    failure = "HF_HUB_OFFLINE is set"
    if not constants.HF_HUB_OFFLINE:
        try:
            info = HfApi().repo_info(repo_id, revision=revision, repo_type=repo_type, timeout=10)
            return {"commit": info.sha, "resolved_from": "hub"}
        except (RepositoryNotFoundError, RevisionNotFoundError) as err:
            raise TransferNeuronsError(
                f"{repo_type} {repo_id!r} revision {revision or 'main'!r} not found on the hub ({type(err).__name__})"
            ) from None
        except Exception as err:  # network down, gated, rate-limited: the cache may still know the commit
            failure = f"the hub did not answer ({type(err).__name__})"
    commit = cached_commit(repo_id, revision, repo_type)
    if commit is None:
        raise TransferNeuronsError(
            f"cannot resolve {repo_type} {repo_id!r} revision {revision or 'main'!r}: {failure} and the local "
            f"Hugging Face cache ({constants.HF_HUB_CACHE}) holds no copy of it"
        )
    return {"commit": commit, "resolved_from": "cache"}


_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def _is_true(value: str | None) -> bool:
    """An environment flag as huggingface_hub reads it."""
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


@functools.lru_cache(maxsize=1)
def _hub_unreachable() -> str | None:
    """Why the hub's host takes no connection within 3 s, or None (also None behind a proxy, which decides)."""
    from huggingface_hub import constants

    if any(os.environ.get(name) for name in _PROXY_VARIABLES):
        return None
    url = urlsplit(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=3).close()
    except OSError as err:
        return f"{url.hostname} is unreachable: {err.strerror or err}"
    return None


def hub_offline_reason() -> str | None:
    """Why the Hugging Face hub cannot be asked now (HF_HUB_OFFLINE, or no connection), or None.

    Checked once per process, so an offline machine answers at once instead of spending
    the hub client's retries (about a minute) before it says the model is not cached.
    """
    if _is_true(os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")):
        return "HF_HUB_OFFLINE is set"
    return _hub_unreachable()


def in_hub_cache(repo_id: str, kind: str = "model") -> bool:
    """Whether the local Hugging Face cache holds a download of this repository (kind "model": its
    config.json; "dataset": any file)."""
    from huggingface_hub import constants

    folder = Path(constants.HF_HUB_CACHE) / f"{kind}s--{repo_id.replace('/', '--')}" / "snapshots"
    return any(folder.glob("*/config.json" if kind == "model" else "*/*"))
