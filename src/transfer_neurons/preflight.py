"""Checks that run before a model loads, so a bad path or device fails in a second, not after the work.

Every check raises a TransferNeuronsError whose one line names the option (a parameter such
as `out`, which the CLI shows as its flag, or a config key) and the path. Writability is
tested by creating (and removing) an empty file where the output will go: it answers for
read-only file systems, permissions and ACLs alike, also for root, whom permission bits do
not stop.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from .data import load_parallel, parallel_languages
from .data.catalog import BUNDLED_KINDS
from .data.hub import HF_PREFIX, parse_hf_spec
from .errors import TransferNeuronsError
from .models.loading import check_model_spec, parse_device
from .outputs import blocking_file

STUDY_DATA = {"parallel": None, "qa": "qa", "mc": "reasoning"}
"""Each `config.data` entry and the analysis that reads it (None: detection, always run)."""


def nearest_existing(path: Path) -> Path:
    """The path itself or its nearest ancestor that exists (where a new folder would be created)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(path.anchor or ".")


def _check_creatable(folder: Path, shown: Path, option: str) -> None:
    """`folder` exists and takes new files, or can be created; errors name the option and `shown`."""
    blocker = blocking_file(folder)
    if blocker is not None:
        where = "it is" if blocker == shown else f"{blocker} is"
        raise TransferNeuronsError(f"{option} {shown}: cannot write results there ({where} a file, not a folder)",
                                   option=option)
    base = nearest_existing(folder)
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=base)
    except OSError as err:
        raise TransferNeuronsError(f"{option} {shown}: cannot write in {base} ({err.strerror or err})",
                                   option=option) from None
    os.close(fd)
    os.unlink(probe)


def check_writable_dir(path: str | Path, option: str) -> Path:
    """An output folder that exists and takes new files, or can be created (no file in the way, not read-only)."""
    path = Path(path).expanduser()
    _check_creatable(path, path, option)
    return path


def check_writable_file(path: str | Path, option: str) -> Path:
    """An output file whose folder takes new files (or can be created) and that is not itself a folder."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise TransferNeuronsError(f"{option} {path}: is a folder; expected a file name", option=option)
    _check_creatable(path.parent, path, option)
    return path


def _readable_file(path: Path, option: str, what: str) -> None:
    """An existing, readable file (not a folder)."""
    if not path.exists():
        raise TransferNeuronsError(f"{option} {path}: no such {what}", option=option)
    if path.is_dir():
        raise TransferNeuronsError(f"{option} {path}: is a folder; expected a {what}", option=option)
    try:
        with path.open("rb"):
            pass
    except OSError as err:
        raise TransferNeuronsError(f"{option} {path}: cannot read ({err.strerror or err})", option=option) from None


def check_input_file(path: str | Path, option: str) -> None:
    """A file the command reads (a config, a centroids.npy) exists and can be read."""
    _readable_file(Path(path).expanduser(), option, "file")


def check_data_spec(spec: str, option: str) -> None:
    """A data spec that names a file (not a bundled set or hf:ID) names a readable one."""
    if spec in BUNDLED_KINDS or spec.startswith(HF_PREFIX):
        return
    path = Path(spec).expanduser()
    if not path.exists():
        raise TransferNeuronsError(
            f"{option} {spec}: no such file, and not a bundled set ({', '.join(BUNDLED_KINDS)}) or {HF_PREFIX}DATASET",
            option=option,
        )
    _readable_file(path, option, "data file")


def check_detection_dir(path: str | Path, option: str) -> None:
    """A detection folder written by `detect` (it holds meta.json)."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise TransferNeuronsError(f"{option} {path}: {'no such folder' if not path.exists() else 'not a folder'}; "
                                   "expected a detection folder written by `detect`", option=option)
    if not (path / "meta.json").is_file():
        raise TransferNeuronsError(f"{option} {path}: not a detection folder (no meta.json); run `transfer-neurons detect`",
                                   option=option)


def check_neurons_source(path: str | Path, option: str) -> None:
    """A neurons.json file or a detection folder holding one."""
    path = Path(path).expanduser()
    if path.is_dir():
        if not (path / "neurons.json").is_file():
            raise TransferNeuronsError(f"{option} {path}: folder has no neurons.json; expected a detection folder",
                                       option=option)
        return
    _readable_file(path, option, "neurons.json file")


def check_model(spec: str, device: str, names: Mapping[str, str] | None = None) -> None:
    """The device is present on this machine and the model source exists (or the hub can be asked).

    The loader's messages name the parameters `device` and `model`; `names` renames them (a config's keys).
    """
    try:
        parse_device(device)
        check_model_spec(spec)
    except TransferNeuronsError as err:
        if names is None:
            raise
        raise TransferNeuronsError(err.shown_as(lambda name: names.get(name, name))) from None


def check_study(cfg: Mapping, out: str | Path) -> None:
    """Everything `run` needs before it loads a model: a writable study folder, data files, device, model."""
    check_writable_dir(out, "out")
    for name, spec in cfg["data"].items():
        analysis = STUDY_DATA.get(name)
        if analysis is None or analysis in cfg["stages"]:
            check_data_spec(spec, f"config.data.{name}")
    check_study_languages(cfg)
    check_model(cfg["model"], cfg["device"], {"model": "config.model", "device": "config.device"})


def check_study_languages(cfg: Mapping) -> None:
    """Every language the study reads has valid sentences in the parallel data (read here unless it is an
    hf: dataset on the hub, which would mean a download): else every stage would fail after the model loaded."""
    spec = cfg["data"]["parallel"]
    if spec.startswith(HF_PREFIX):
        if Path(parse_hf_spec(spec)[0]).expanduser().exists():  # a local dataset folder reads without a download
            load_parallel(spec, study_languages(cfg), strict_pairs=cfg["strict_pairs"])
        return
    have = parallel_languages(spec)
    wanted = {"hub_lang": [cfg["hub_lang"]], "langs": cfg["langs"], "specificity_langs": cfg["specificity_langs"] or []}
    for key, langs in wanted.items():
        missing = [lang for lang in langs if lang not in have]
        if missing:
            raise TransferNeuronsError(f"config.{key}: the parallel data {spec} has no "
                                       f"{', '.join(map(repr, missing))} sentences; it has {', '.join(have)}")
    load_parallel(spec, study_languages(cfg), strict_pairs=cfg["strict_pairs"])  # its rows are valid


def study_languages(cfg: Mapping) -> list[str]:
    """The hub, every L2 and the specificity languages: the keys a study reads from each parallel row."""
    return list(dict.fromkeys([cfg["hub_lang"], *cfg["langs"], *(cfg["specificity_langs"] or [])]))
