"""Low-level file reading: encodings, gzip, JSONL and delimited rows, and the skipped-row warning."""

import gzip
import warnings
from pathlib import Path

import pytest

from transfer_neurons.data.files import RowIssues, delimited_records, jsonl_records, read_text, text_lines
from transfer_neurons.errors import DataError


def test_utf8_with_and_without_bom(tmp_path: Path) -> None:
    (tmp_path / "plain.txt").write_bytes("héllo\n".encode())
    (tmp_path / "bom.txt").write_bytes("\ufeffhéllo\n".encode())
    assert read_text(tmp_path / "plain.txt") == read_text(tmp_path / "bom.txt") == "héllo\n"


def test_other_encoding_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("héllo\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1\.txt: not valid UTF-8.*offset 1"):
        read_text(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.jsonl: no such file"):
        read_text(tmp_path / "nope.jsonl")


def test_gzip_is_transparent_and_corrupt_gzip_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress('{"en": "x"}\n'.encode()))
    assert read_text(tmp_path / "a.jsonl.gz") == '{"en": "x"}\n'
    (tmp_path / "b.jsonl.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="not a valid gzip file"):
        read_text(tmp_path / "b.jsonl.gz")


def test_lines_split_on_newline_only() -> None:
    assert text_lines("a\u2028b\r\nc\n") == [("line 1", "a\u2028b"), ("line 2", "c")]


def test_jsonl_malformed_line_names_the_line() -> None:
    with pytest.raises(DataError, match=r"f\.jsonl, line 3: malformed JSON"):
        jsonl_records('{"en": "a"}\n\n{"en": \n', RowIssues("f.jsonl", skip_invalid=False))


def test_jsonl_non_object_is_rejected() -> None:
    with pytest.raises(DataError, match="line 1: expected a JSON object, got list"):
        jsonl_records('["en", "a"]\n', RowIssues("f.jsonl", skip_invalid=False))


def test_delimited_field_count_must_match_header() -> None:
    with pytest.raises(DataError, match=r"t\.tsv, line 3: 3 fields, expected 2"):
        delimited_records("en\tja\na\tあ\nb\tい\tx\n", "\t", RowIssues("t.tsv", False), "t.tsv")


def test_delimited_header_must_be_unique_and_present() -> None:
    with pytest.raises(DataError, match="empty file"):
        delimited_records("", ",", RowIssues("c.csv", False), "c.csv")
    with pytest.raises(DataError, match="non-empty and unique"):
        delimited_records("en,en\na,b\n", ",", RowIssues("c.csv", False), "c.csv")


def test_tsv_keeps_quotes_and_csv_honours_them() -> None:
    tsv = delimited_records('en\tja\n"Hi," he said\t「やあ」\n', "\t", RowIssues("t", False), "t")
    assert tsv == [("line 2", {"en": '"Hi," he said', "ja": "「やあ」"})]
    csv_rows = delimited_records('en,ja\n"Hi, you",やあ\n', ",", RowIssues("c", False), "c")
    assert csv_rows == [("line 2", {"en": "Hi, you", "ja": "やあ"})]


def test_skipping_warns_once_with_count_and_file() -> None:
    with pytest.warns(UserWarning) as caught:
        with RowIssues("f.jsonl", skip_invalid=True) as issues:
            records = jsonl_records('{"en": "a"}\nbad\n[1]\n{"en": "b"}\n', issues)
    assert [row["en"] for _, row in records] == ["a", "b"]
    assert len(caught) == 1
    assert "f.jsonl: skipped 2 invalid row(s) (first: line 2: malformed JSON" in str(caught[0].message)


def test_no_warning_when_nothing_was_skipped() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with RowIssues("f.jsonl", skip_invalid=True) as issues:
            jsonl_records('{"en": "a"}\n', issues)
