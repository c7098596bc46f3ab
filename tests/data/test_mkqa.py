"""MKQA in its published format: language mapping and the answer skip rules."""

import gzip
import json
from pathlib import Path

import pytest

from transfer_neurons.data import QAItem, load_qa
from transfer_neurons.errors import DataError


def example(answers: dict, queries: dict | None = None) -> dict:
    """One MKQA example with the given per-language answer lists."""
    queries = queries or {"en": "who wrote hamlet", "ja": "ハムレットの作者は", "zh_cn": "谁写了哈姆雷特"}
    return {"example_id": 1, "query": queries["en"], "queries": queries, "answers": answers}


def entity(text: str | None, aliases: list[str] | None = None, kind: str = "entity") -> dict:
    """One MKQA answer object."""
    return {"type": kind, "entity": "Q692", "text": text, "aliases": aliases or []}


def write_gz(path: Path, rows: list[dict]) -> str:
    """Write rows as gzipped JSONL, like the published mkqa.jsonl.gz."""
    path.write_bytes(gzip.compress("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()))
    return str(path)


ROWS = [
    example({"en": [entity("William Shakespeare", ["Shakespeare", "Bard"])],
             "ja": [entity("ウィリアム・シェイクスピア", ["シェイクスピア"])],
             "zh_cn": [entity("威廉·莎士比亚")]}),
    example({"en": [entity(None, kind="unanswerable")], "ja": [entity(None, kind="unanswerable")],
             "zh_cn": [entity(None, kind="unanswerable")]}),
    example({"en": [entity("A long passage.", kind="long_answer")], "ja": [entity("長い答え", kind="long_answer")],
             "zh_cn": [entity("长", kind="long_answer")]}),
    example({"en": [entity(None, kind="unanswerable"), entity("1603", kind="date"), entity("1604", kind="date")],
             "ja": [entity("1603年", kind="date")], "zh_cn": [entity("1603年", kind="date")]}),
]


def test_mkqa_keeps_short_answers_with_aliases(tmp_path: Path) -> None:
    qa = load_qa(write_gz(tmp_path / "mkqa.jsonl.gz", ROWS), "en")
    assert qa.items == (
        QAItem("who wrote hamlet", ("William Shakespeare", "Shakespeare", "Bard")),
        QAItem("who wrote hamlet", ("1603", "1604")),
    )
    assert qa.lang == "en" and qa.name.endswith("mkqa.jsonl.gz")


def test_mkqa_maps_zh_to_zh_cn(tmp_path: Path) -> None:
    qa = load_qa(write_gz(tmp_path / "mkqa.jsonl.gz", ROWS), "zh")
    assert qa.lang == "zh" and qa.items[0] == QAItem("谁写了哈姆雷特", ("威廉·莎士比亚",))


def test_mkqa_plain_jsonl_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "mkqa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    assert len(load_qa(str(path), "ja")) == 2


def test_mkqa_unknown_language(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"line 1: missing language key 'xx' in 'answers'"):
        load_qa(write_gz(tmp_path / "mkqa.jsonl.gz", ROWS), "xx")


def test_mkqa_malformed_answers(tmp_path: Path) -> None:
    bad = example({"en": ["Shakespeare"]})
    with pytest.raises(DataError, match=r"line 1: expected each answer to be an object"):
        load_qa(write_gz(tmp_path / "mkqa.jsonl.gz", [bad]), "en")


def test_mkqa_without_answerable_questions(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no usable questions"):
        load_qa(write_gz(tmp_path / "mkqa.jsonl.gz", ROWS[1:3]), "en")
