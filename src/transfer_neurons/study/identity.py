"""What names a study's inputs for its cache keys: the model's weights and each data set's content."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..data.catalog import BUNDLED_KINDS, bundled_text
from ..data.hub import data_fingerprint
from ..fingerprints import file_sha256
from ..models.loading import model_fingerprint


def model_identity(cfg: dict) -> dict:
    """What names the model's weights without loading it (hub commit or content hash), and how it is run."""
    return {"model": model_fingerprint(cfg["model"], cfg["revision"]), "adapter": cfg["adapter"] and file_sha256(cfg["adapter"]),
            "device": cfg["device"], "dtype": cfg["dtype"], "max_tokens": cfg["max_tokens"]}


def data_identity(spec: str) -> str | dict:
    """A content checksum of a bundled set or local file; an hf: dataset's fingerprint or commit."""
    if spec in BUNDLED_KINDS:
        return "bundled:" + hashlib.sha256(bundled_text(spec).encode("utf-8")).hexdigest()
    if spec.startswith("hf:"):
        return data_fingerprint(spec)
    return "file:" + file_sha256(Path(spec).expanduser())


def digest(obj: Any) -> str:
    """sha256 of an object's canonical JSON."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode("utf-8")).hexdigest()

