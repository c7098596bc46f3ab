"""MKQA (mkqa.jsonl[.gz]) as published by Apple: open questions with typed answers in 26 languages."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from transfer_neurons.data.files import Record, RowIssues
from transfer_neurons.data.parallel import clean_text
from transfer_neurons.data.questions import build_items, localized
from transfer_neurons.data.types import QAItem, QASet

_MKQA_CODES = {"zh": "zh_cn"}
"""Project language code -> MKQA's code where they differ (MKQA splits Chinese into zh_cn / zh_hk / zh_tw)."""

_SKIPPED_TYPES = frozenset({"unanswerable", "long_answer"})


def is_mkqa(records: Sequence[Record]) -> bool:
    """Whether rows look like MKQA's format (a "queries" object) rather than the bundled QA format."""
    return bool(records) and "queries" in records[0][1]


def _answer_texts(answer: Any) -> list[str]:
    """An answer's text then its aliases; nothing for unanswerable or long answers."""
    if not isinstance(answer, dict):
        raise ValueError("expected each answer to be an object with 'type', 'text' and 'aliases'")
    text, kind = answer.get("text"), answer.get("type")
    if (isinstance(kind, str) and kind in _SKIPPED_TYPES) or not isinstance(text, str) or not text.strip():
        return []
    aliases = answer.get("aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(alias, str) for alias in aliases):
        raise ValueError("expected an answer's 'aliases' to be a list of strings")
    return [text.strip()] + [alias.strip() for alias in aliases if alias.strip()]


def _mkqa_item(row: dict[str, Any], code: str) -> QAItem | None:
    """One MKQA example in one language, or None when it has no short answer there."""
    answers = localized(row, "answers", code)
    if not isinstance(answers, list):
        raise ValueError(f"expected 'answers'[{code!r}] to be a list of answer objects")
    texts = [text for answer in answers for text in _answer_texts(answer)]
    if not texts:
        return None
    return QAItem(clean_text(localized(row, "queries", code), "queries"), tuple(dict.fromkeys(texts)))


def mkqa_set(source: str, lang: str, records: Sequence[Record], issues: RowIssues) -> QASet:
    """Answerable MKQA questions in one language; answers[0] is the first short answer, the rest aliases."""
    code = _MKQA_CODES.get(lang, lang)
    return QASet(source, lang, build_items(source, records, lambda row: _mkqa_item(row, code), issues))
