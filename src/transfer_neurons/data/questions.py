"""QA and multiple-choice sets in the project's own JSONL format (bundled qa.jsonl / mc.jsonl)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from transfer_neurons.data.files import Record, RowIssues
from transfer_neurons.data.parallel import clean_text
from transfer_neurons.data.types import MCItem, MCSet, QAItem, QASet
from transfer_neurons.errors import DataError

T = TypeVar("T")

ANSWER_CUES: dict[str, str] = {
    "en": "Answer:", "ja": "答え:", "ko": "답:", "zh": "答案:", "nl": "Antwoord:", "it": "Risposta:",
    "de": "Antwort:", "fr": "Réponse :", "es": "Respuesta:",
}
"""The word that cues an answer after a question, per bundled language (QA's paper prompt, reasoning's prompt)."""


def answer_cue(lang: str) -> str:
    """The language's answer cue; English for languages without one."""
    return ANSWER_CUES.get(lang, ANSWER_CUES["en"])


def localized(row: dict[str, Any], field: str, lang: str) -> Any:
    """row[field][lang], or a ValueError saying the field must map language codes to values."""
    value = row.get(field)
    if not isinstance(value, dict):
        raise ValueError(f"expected {field!r} to be an object of language code -> value")
    if lang not in value:
        raise ValueError(f"missing language key {lang!r} in {field!r} (has: {', '.join(map(str, value))})")
    return value[lang]


def text_list(value: Any, field: str, minimum: int) -> tuple[str, ...]:
    """A list of at least `minimum` non-empty strings, stripped."""
    if not isinstance(value, list) or len(value) < minimum:
        raise ValueError(f"expected {field!r} to be a list of at least {minimum} strings")
    return tuple(clean_text(item, field) for item in value)


def question_languages(records: Sequence[Record]) -> list[str]:
    """Languages that every row has a question in, in the first row's order (for describing a set)."""
    questions = [row.get("question") for _, row in records]
    if not questions or not all(isinstance(q, dict) for q in questions):
        return []
    return [lang for lang in questions[0] if all(lang in q for q in questions)]


def build_items(
    source: str, records: Sequence[Record], build: Callable[[dict[str, Any]], T | None], issues: RowIssues
) -> tuple[T, ...]:
    """Build one item per row (None = a row the format says to skip); a bad row is a DataError naming its line,
    or is skipped and counted when the issues allow it."""
    items = []
    for where, row in records:
        try:
            item = build(row)
        except ValueError as exc:
            issues.report(where, str(exc))
            continue
        if item is not None:
            items.append(item)
    if not items:
        raise DataError(f"{source}: no usable questions")
    return tuple(items)


def _qa_item(row: dict[str, Any], lang: str) -> QAItem:
    """One bundled-format QA row in one language."""
    question = clean_text(localized(row, "question", lang), "question")
    answers = text_list(localized(row, "answers", lang), "answers", 1)
    return QAItem(question, tuple(dict.fromkeys(answers)))


def qa_set(source: str, lang: str, records: Sequence[Record], issues: RowIssues) -> QASet:
    """A QA set from rows {"question": {lang: str}, "answers": {lang: [canonical, alias, ...]}}."""
    return QASet(source, lang, build_items(source, records, lambda row: _qa_item(row, lang), issues))


def _answer_index(value: Any, n_options: int) -> int:
    """A 0-based answer index within range (booleans are not indices)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < n_options:
        raise ValueError(f"expected 'answer' to be an integer 0..{n_options - 1}, got {value!r}")
    return value


def _mc_item(row: dict[str, Any], lang: str) -> MCItem:
    """One bundled-format MC row in one language."""
    question = clean_text(localized(row, "question", lang), "question")
    options = text_list(localized(row, "options", lang), "options", 2)
    return MCItem(question, options, _answer_index(row.get("answer"), len(options)))


def mc_set(source: str, lang: str, records: Sequence[Record], issues: RowIssues) -> MCSet:
    """An MC set from rows {"question": {lang: str}, "options": {lang: [str, ...]}, "answer": int}."""
    return MCSet(source, lang, build_items(source, records, lambda row: _mc_item(row, lang), issues))
