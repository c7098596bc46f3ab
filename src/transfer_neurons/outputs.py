"""Result files written atomically (temp file in the same folder, then rename).

An interrupted run never leaves a half-written JSON, CSV, array or figure behind, and a
file-system fault (read-only, not a folder, disk full) is an OutputError naming the path.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import sys
import tempfile
import tokenize
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import numpy as np

from .distributed import is_main
from .errors import DataError, OutputError, TransferNeuronsError


def output_error(path: str | Path, action: str, err: OSError) -> OutputError:
    """One line naming the path and the system's reason, e.g. `out/x.json: cannot write (No space left on device)`."""
    error = OutputError(f"{path}: cannot {action} ({err.strerror or err})")
    error.errno = err.errno
    return error


def blocking_file(path: Path) -> Path | None:
    """The path itself or the nearest ancestor that exists as a non-folder (which blocks creating `path`)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return None if candidate.is_dir() else candidate
    return None


def make_folder(path: str | Path) -> Path:
    """Create a folder and its parents; an OutputError names it when a file is in the way or it is read-only."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as err:
        blocker = blocking_file(path)
        if blocker is None:
            raise output_error(path, "create the folder", err) from None
        where = "it is" if blocker == path else f"{blocker} is"
        raise OutputError(f"{path}: cannot create the folder ({where} a file, not a folder)") from None
    except OSError as err:
        raise output_error(path, "create the folder", err) from None
    return path


def _creation_mode(kind: int) -> int:
    """The mode a plain open() or mkdir() would give under the current umask (kind 0o666 or 0o777):
    temp files and folders are private (0600, 0700), so results would stay unreadable to others."""
    umask = os.umask(0)
    os.umask(umask)
    return kind & ~umask


def publish(path: str | Path) -> None:
    """Give a temp file or folder the mode an ordinary one gets (a study on a shared file system stays readable)."""
    os.chmod(path, _creation_mode(0o777 if Path(path).is_dir() else 0o666))


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write bytes to path atomically; parent folders are created; the temp file never outlives a failure."""
    path = Path(path)
    make_folder(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise output_error(path, "write", err) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        publish(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise output_error(path, "write", err) from None
        raise
    return path


WRITTEN = ".transfer-neurons-files.json"
"""In an output folder: the files each command last wrote there ({command: [relative path, ...]})."""


@contextmanager
def staged_folder(out: str | Path, owner: str | None = None) -> Iterator[Path]:
    """A temporary folder inside `out` whose files move into `out` only if the block succeeds.

    A failure (disk full, an error, Ctrl-C) leaves `out` as it was: never a partial set of results.
    Renames need no space, so once every file is written the move cannot fail for lack of it. With
    an `owner` (the command), files its previous run wrote there and this one did not are removed,
    so a rerun with other options leaves no stale results beside the new ones. Under torchrun only
    rank 0 writes: the other ranks' files go to a throwaway folder.
    """
    if not is_main():
        with tempfile.TemporaryDirectory(prefix="transfer-neurons-rank") as folder:
            yield Path(folder)
        return
    out = Path(out)
    created = [p for p in (out, *out.parents) if not p.exists()]  # innermost first
    make_folder(out)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=".staged-", dir=out))
    except OSError as err:
        _remove_empty(created)
        raise output_error(out, "write", err) from None
    try:
        yield tmp
        files = sorted(p.relative_to(tmp) for p in tmp.rglob("*") if p.is_file())
        for file in files:
            final = out / file
            make_folder(final.parent)
            try:
                os.replace(tmp / file, final)
            except OSError as err:
                raise output_error(final, "write", err) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(created)
        raise
    shutil.rmtree(tmp, ignore_errors=True)
    if owner is not None:
        _replace_owned(out, owner, [file.as_posix() for file in files])


def _replace_owned(out: Path, owner: str, files: list[str]) -> None:
    """Record `files` as the owner's in out's WRITTEN record and remove what its previous run left behind
    (never a file another command's record lists, nor anything outside `out`)."""
    try:
        record = json.loads((out / WRITTEN).read_text(encoding="utf-8"))
        record = record if isinstance(record, dict) else {}
    except (OSError, ValueError):
        record = {}
    before = record.get(owner) if isinstance(record.get(owner), list) else []
    record[owner] = files
    kept = {f for listed in record.values() if isinstance(listed, list) for f in listed}
    write_json(out / WRITTEN, record)
    root = out.resolve()
    for name in sorted(set(map(str, before)) - kept):
        stale = (out / name).resolve()
        if root in stale.parents and stale.is_file():
            stale.unlink()
            _remove_empty([p for p in stale.parents if root in p.parents])


def _remove_empty(folders: Sequence[Path]) -> None:
    """Remove folders this call created (innermost first) while they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _plain(value: Any) -> Any:
    """Make numpy scalars and arrays JSON-serialisable."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def write_json(path: str | Path, obj: Any) -> Path:
    """Write JSON (UTF-8, indented) atomically."""
    text = json.dumps(obj, indent=2, ensure_ascii=False, default=_plain) + "\n"
    return write_bytes(path, text.encode("utf-8"))


def write_csv(path: str | Path, rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None) -> Path:
    """Write a list of dicts as CSV with a header atomically."""
    rows = list(rows)
    columns = list(columns or (rows[0].keys() if rows else []))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _plain(v) if isinstance(v, (np.generic, np.ndarray)) else v for key, v in row.items()})
    return write_bytes(path, buffer.getvalue().encode("utf-8"))


def save_npy(path: str | Path, array: np.ndarray) -> Path:
    """Save a NumPy array (no pickle) atomically."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return write_bytes(path, buffer.getvalue())


def load_npy(path: str | Path) -> np.ndarray:
    """Load a NumPy array written by save_npy; a missing, corrupt or pickled file is a DataError naming it."""
    try:
        array = np.load(Path(path), allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder; expected a .npy array file") from None
    except OSError as exc:
        if exc.strerror:
            raise DataError(f"{path}: cannot read the file ({exc.strerror})") from None
        array = None
    except (ValueError, EOFError, SyntaxError, TypeError, MemoryError, tokenize.TokenError):  # numpy's header parser
        array = None
    if not isinstance(array, np.ndarray) or array.dtype.hasobject:
        raise DataError(f"{path}: not a readable .npy array (corrupt, truncated or of another format); write it again")
    return array


FIGURE_FORMATS = ("png", "svg", "pdf")
_FIGURE_FORMAT: ContextVar[str] = ContextVar("transfer_neurons_figure_format", default="png")
_UNDATED = {"svg": {"Date": None}, "pdf": {"CreationDate": None}}  # same figure, same bytes


def _check_figure_format(fmt: str) -> str:
    """One of FIGURE_FORMATS, or a TransferNeuronsError naming the choices."""
    if fmt not in FIGURE_FORMATS:
        raise TransferNeuronsError(f"figure format must be one of {', '.join(FIGURE_FORMATS)}, got {fmt!r}")
    return fmt


@contextmanager
def figure_format(fmt: str) -> Iterator[str]:
    """Within the block, save_figure also writes `fmt` (svg or pdf) beside each PNG."""
    token = _FIGURE_FORMAT.set(_check_figure_format(fmt))
    try:
        yield fmt
    finally:
        _FIGURE_FORMAT.reset(token)


def save_figure(path: str | Path, figure, fmt: str | None = None) -> Path:
    """Save a matplotlib figure atomically (closing it if pyplot made it): always the PNG at `path` (the report embeds
    PNGs), and for fmt svg or pdf (default: the current figure format) the same figure beside it
    with that suffix. Returns the file in the chosen format."""
    import matplotlib

    fmt = _check_figure_format(fmt or _FIGURE_FORMAT.get())
    path = Path(path)
    written = path
    try:
        for kind in dict.fromkeys(("png", fmt)):
            buffer = io.BytesIO()
            with matplotlib.rc_context({"svg.hashsalt": "transfer-neurons"}):  # fixed SVG ids, not random ones
                figure.savefig(buffer, format=kind, dpi=120, bbox_inches="tight", metadata=_UNDATED.get(kind))
            target = path if kind == "png" else path.with_suffix(f".{kind}")
            written = write_bytes(target, buffer.getvalue())
    finally:
        pyplot = sys.modules.get("matplotlib.pyplot")  # only a figure made through pyplot has something to close
        if pyplot is not None:
            pyplot.close(figure)
    return written


def read_manifest(folder: str | Path) -> dict | None:
    """A finished stage's manifest.json (written last), or None if absent, unfinished or unreadable, or if
    a file it lists is gone or no longer has the size it recorded (a deleted or truncated result is not a
    finished stage)."""
    try:
        manifest = json.loads((Path(folder) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or "key" not in manifest or not isinstance(manifest.get("files"), list):
        return None
    sizes = manifest.get("sizes") if isinstance(manifest.get("sizes"), dict) else {}  # older manifests have none
    for name in manifest["files"]:
        path = Path(folder) / name if isinstance(name, str) else None
        if path is None or not path.is_file() or sizes.get(name, path.stat().st_size) != path.stat().st_size:
            return None
    return manifest
