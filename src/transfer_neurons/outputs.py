"""Result files written atomically (temp file in the same folder, then rename).

An interrupted run never leaves a half-written JSON, CSV, array or figure behind.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write bytes to path atomically; parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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
    except (ValueError, EOFError, SyntaxError, TypeError, MemoryError):
        array = None
    if not isinstance(array, np.ndarray) or array.dtype.hasobject:
        raise DataError(f"{path}: not a readable .npy array (corrupt, truncated or of another format); write it again")
    return array


def save_figure(path: str | Path, figure) -> Path:
    """Save a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    return write_bytes(path, buffer.getvalue())
