"""Reading data files safely: UTF-8 decoding, gzip, JSONL / TSV / CSV / text records, row-problem accounting."""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import zlib
from pathlib import Path
from types import TracebackType
from typing import Any

from transfer_neurons.errors import DataError

Record = tuple[str, Any]
"""A parsed row and where it came from ("line 3", "test index 17"), for error messages."""

LOG = logging.getLogger("transfer_neurons")


class RowIssues:
    """Collects row problems and repeats: raises at the first bad row, or counts everything and gives one notice."""

    def __init__(self, source: str, skip_invalid: bool) -> None:
        self.source = source
        self.skip_invalid = skip_invalid
        self.skipped = 0
        self.first = ""
        self.kept_first = 0  # rows dropped under strict pairs: another translation of an earlier hub sentence
        self.retranslated = 0  # rows kept that translate an earlier hub sentence differently
        self.repeated = 0  # rows identical to an earlier row (kept, or dropped when deduplicating)
        self.deduped = False
        self.hub_lang = ""
        self.languages: tuple[str, ...] = ()  # the languages read from each row
        self.other_languages = 0  # rows left out: they lack a requested language and pair others
        self.counted = (0, 0)  # (rows counted, rows available) when a limit stopped the count early

    def report(self, where: str, message: str) -> None:
        """Raise a DataError for a bad row, or count it when skipping is allowed."""
        if not self.skip_invalid:
            raise DataError(f"{self.source}, {where}: {message}")
        self.skipped += 1
        self.first = self.first or f"{where}: {message}"

    def __enter__(self) -> RowIssues:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Log one notice summarising what was skipped, dropped or repeated, unless loading failed anyway."""
        if exc_type is None and self.summary():
            LOG.warning("%s: %s", self.source, self.summary())

    def summary(self) -> str:
        """The notice text: every count that is not zero, or "" when there is nothing to say."""
        hub = f"{self.hub_lang} " if self.hub_lang else ""
        parts = []
        if self.skipped:
            parts.append(f"skipped {self.skipped} invalid row(s) (first: {self.first})")
        if self.other_languages:
            parts.append(f"left out {self.other_languages} row(s) of other languages (without all of "
                         f"{', '.join(self.languages)})")
        if self.kept_first:
            parts.append(
                f"dropped {self.kept_first} row(s) giving an earlier {hub}sentence a different translation "
                "(--strict-pairs with --skip-invalid keeps the first)"
            )
        if self.retranslated:
            parts.append(
                f"{self.retranslated} row(s) give an earlier {hub}sentence another translation "
                "(kept: each pair counts; --strict-pairs refuses them)"
            )
        if self.repeated and self.deduped:
            parts.append(f"dropped {self.repeated} row(s) repeating an earlier row exactly (--dedupe)")
        elif self.repeated:
            parts.append(
                f"{self.repeated} row(s) repeat an earlier row exactly (kept: a centroid is the mean over "
                "the rows given; --dedupe keeps one)"
            )
        if self.counted[0] and (self.retranslated or self.repeated):
            parts.append(f"counted in the first {self.counted[0]} of {self.counted[1]} rows (--limit)")
        return "; ".join(parts)


def read_text(path: Path) -> str:
    """Whole file as text: must exist, be UTF-8 (a BOM is fine), and is gunzipped when named *.gz."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    if path.name.endswith(".gz"):
        data = _gunzip(data, str(path))
    return decode(data, str(path))


def _gunzip(data: bytes, source: str) -> bytes:
    """Decompress gzip bytes, turning corrupt archives into a DataError."""
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{source}: not a valid gzip file ({exc})") from None


def decode(data: bytes, source: str) -> str:
    """Decode UTF-8 (optionally with BOM); any other encoding is an error naming the file and line."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"{source}, line {line}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "re-save the file as UTF-8"
        ) from None


def text_lines(text: str) -> list[Record]:
    """Lines split on newline only (sentences may hold other Unicode separators), final terminator ignored."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [(f"line {number}", line.rstrip("\r")) for number, line in enumerate(lines, start=1)]


def jsonl_records(text: str, issues: RowIssues) -> list[Record]:
    """JSON objects, one per non-blank line; malformed lines and non-objects are reported."""
    records = []
    for where, line in text_lines(text):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except (ValueError, RecursionError) as exc:
            issues.report(where, f"malformed JSON ({exc}); expected one JSON object per line")
            continue
        if not isinstance(value, dict):
            issues.report(where, f"expected a JSON object, got {type(value).__name__}")
            continue
        records.append((where, value))
    return records


def delimited_records(text: str, delimiter: str, issues: RowIssues, source: str) -> list[Record]:
    """Rows of a TSV/CSV file with a header row, as {column: field}; wrong field counts are reported."""
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, quoting=quoting)
    header = _header(reader, source)
    records = []
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return records
        except csv.Error as exc:
            issues.report(f"line {reader.line_num}", f"cannot parse the row ({exc})")
            continue
        if not row:
            continue
        if len(row) != len(header):
            issues.report(f"line {reader.line_num}", f"{len(row)} fields, expected {len(header)} like the header")
            continue
        records.append((f"line {reader.line_num}", dict(zip(header, row))))


def _header(reader: Any, source: str) -> list[str]:
    """The header row: non-empty, unique column names."""
    try:
        header = [column.strip() for column in next(reader)]
    except StopIteration:
        raise DataError(f"{source}: empty file; expected a header row of language codes") from None
    except csv.Error as exc:
        raise DataError(f"{source}, line 1: cannot parse the header row ({exc})") from None
    if any(not column for column in header) or len(set(header)) != len(header):
        raise DataError(f"{source}, line 1: header columns must be non-empty and unique, got {header}")
    return header
