"""Low-level file reading: encodings, gzip, JSONL and delimited rows, and the skipped-row warning."""

import gzip
import logging
from pathlib import Path

import numpy as np
import pytest

from transfer_neurons.data.files import RowIssues, delimited_records, jsonl_records, read_text, text_lines
from transfer_neurons.errors import DataError
from transfer_neurons.outputs import load_npy, save_npy


def test_utf8_with_and_without_bom(tmp_path: Path) -> None:
    (tmp_path / "plain.txt").write_bytes("héllo\n".encode())
    (tmp_path / "bom.txt").write_bytes("\ufeffhéllo\n".encode())
    assert read_text(tmp_path / "plain.txt") == read_text(tmp_path / "bom.txt") == "héllo\n"


def test_other_encoding_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("héllo\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1\.txt, line 1: not valid UTF-8 \(byte 0xe9 at offset 1\)"):
        read_text(path)


def test_bad_byte_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "later.txt.gz"  # the line counts in the decompressed text
    path.write_bytes(gzip.compress("one\ntwo\n".encode() + "thrée\n".encode("latin-1")))
    with pytest.raises(DataError, match=r"later\.txt\.gz, line 3: not valid UTF-8") as caught:
        read_text(path)
    assert "\n" not in str(caught.value)


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


def notices(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The project's logged notices."""
    return [r.getMessage() for r in caplog.records if r.name == "transfer_neurons" and r.levelno == logging.WARNING]


def test_skipping_gives_one_notice_with_count_and_file(caplog: pytest.LogCaptureFixture) -> None:
    with RowIssues("f.jsonl", skip_invalid=True) as issues:
        records = jsonl_records('{"en": "a"}\nbad\n[1]\n{"en": "b"}\n', issues)
    assert [row["en"] for _, row in records] == ["a", "b"]
    assert len(notices(caplog)) == 1
    assert notices(caplog)[0].startswith("f.jsonl: skipped 2 invalid row(s) (first: line 2: malformed JSON")


def test_no_notice_when_nothing_was_skipped(caplog: pytest.LogCaptureFixture) -> None:
    with RowIssues("f.jsonl", skip_invalid=True) as issues:
        jsonl_records('{"en": "a"}\n', issues)
    assert notices(caplog) == []


def test_notice_names_every_count_and_option() -> None:
    issues = RowIssues("f.jsonl", skip_invalid=False)
    issues.hub_lang, issues.retranslated, issues.repeated = "en", 3, 2
    assert issues.summary() == (
        "3 row(s) give an earlier en sentence another translation (kept: each pair counts; --strict-pairs refuses "
        "them); 2 row(s) repeat an earlier row exactly (kept: a centroid is the mean over the rows given; "
        "--dedupe keeps one)"
    )
    issues.deduped = True
    assert issues.summary().endswith("dropped 2 row(s) repeating an earlier row exactly (--dedupe)")


def test_no_notice_when_loading_fails(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(DataError), RowIssues("f.jsonl", skip_invalid=False) as issues:
        issues.repeated = 1
        jsonl_records("bad\n", issues)
    assert notices(caplog) == []


def test_load_npy_errors_name_the_file_in_one_line(tmp_path: Path) -> None:
    save_npy(tmp_path / "good.npy", np.arange(3.0))
    assert load_npy(tmp_path / "good.npy").tolist() == [0.0, 1.0, 2.0]
    (tmp_path / "corrupt.npy").write_bytes(b"\x93NUMPY\x01\x00garbage")
    (tmp_path / "text.npy").write_text("not an array")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "archive.npz", a=np.arange(2))
    (tmp_path / "archive.npz").rename(tmp_path / "archive.npy")
    for name in ("corrupt.npy", "text.npy", "objects.npy", "archive.npy"):
        with pytest.raises(DataError, match=rf"{name}: not a readable \.npy array") as caught:
            load_npy(tmp_path / name)
        assert "allow_pickle" not in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(DataError, match=r"missing\.npy: no such file"):
        load_npy(tmp_path / "missing.npy")
