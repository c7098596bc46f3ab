"""Turning parsed rows into validated parallel corpora and monolingual sentence sets."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from transfer_neurons.data.files import Record, RowIssues
from transfer_neurons.data.types import ParallelCorpus, Sentences
from transfer_neurons.errors import DataError

_LANGUAGE_CODE = re.compile(r"[a-z]{2,3}(?:[_-][A-Za-z0-9]{2,8})*")
_NOT_LANGUAGES = frozenset({"id"})  # row identifiers, not Indonesian; pass languages=["id"] to read Indonesian


def is_language_key(key: str) -> bool:
    """Whether a row key or column names a language (ISO-style code such as en, zh_cn, pt-BR)."""
    return key not in _NOT_LANGUAGES and _LANGUAGE_CODE.fullmatch(key) is not None


def hub_language(languages: Sequence[str]) -> str:
    """The language whose text identifies a row: English when present, else the first language."""
    return "en" if "en" in languages else languages[0]


def clean_text(value: Any, key: str) -> str:
    """A stripped, non-empty sentence, or a ValueError explaining what was expected."""
    if not isinstance(value, str):
        raise ValueError(f"{key!r} must be a string, got {type(value).__name__}")
    text = value.strip()
    if not text:
        raise ValueError(f"{key!r} is empty or whitespace-only; expected a sentence")
    return text


def detect_languages(records: Iterable[Record], source: str) -> list[str]:
    """Every language key seen in the rows, in first-seen order; none at all is an error."""
    languages = list(dict.fromkeys(key for _, row in records for key in row if is_language_key(key)))
    if not languages:
        raise DataError(f"{source}: no language-code keys or columns found (expected e.g. 'en', 'ja')")
    return languages


def _row_texts(row: dict[str, Any], languages: Sequence[str]) -> tuple[str, ...]:
    """One row's sentences in the given language order, or a ValueError naming the bad key."""
    texts = []
    for lang in languages:
        if lang not in row:
            raise ValueError(f"missing language key {lang!r} (expected keys: {', '.join(languages)})")
        texts.append(clean_text(row[lang], lang))
    return tuple(texts)


def assemble_parallel(
    source: str,
    records: Sequence[Record],
    languages: Sequence[str] | None,
    issues: RowIssues,
    keep_first: bool = False,
) -> ParallelCorpus:
    """Validate rows and merge duplicates; a hub sentence with two translations is an error (or kept first)."""
    langs = detect_languages(records, source) if languages is None else list(dict.fromkeys(languages))
    if not langs:
        raise DataError(f"{source}: no languages requested")
    hub_index = langs.index(hub_language(langs))
    seen: dict[str, tuple[str, tuple[str, ...]]] = {}
    for where, row in records:
        try:
            texts = _row_texts(row, langs)
        except ValueError as exc:
            issues.report(where, str(exc))
            continue
        hub = texts[hub_index]
        if hub not in seen:
            seen[hub] = (where, texts)
        elif seen[hub][1] != texts and keep_first:
            issues.kept_first += 1
        elif seen[hub][1] != texts:
            raise DataError(
                f"{source}, {where}: {langs[hub_index]} sentence {hub!r} also appears at {seen[hub][0]} "
                "with a different translation; keep one row per sentence, or load with skip_invalid=True "
                "to keep the first"
            )
    if not seen:
        raise DataError(f"{source}: no valid rows with languages {', '.join(langs)}")
    rows = [texts for _, texts in seen.values()]
    return ParallelCorpus(source, {lang: tuple(row[i] for row in rows) for i, lang in enumerate(langs)})


def assemble_sentences(
    source: str, lang: str, records: Sequence[Record], key: str | None, issues: RowIssues
) -> Sentences:
    """Validate monolingual rows (the field `key` of objects, or whole lines when key is None), merging duplicates."""
    texts: dict[str, None] = {}
    for where, row in records:
        try:
            texts[_sentence(row, key)] = None
        except ValueError as exc:
            issues.report(where, str(exc))
    if not texts:
        raise DataError(f"{source}: no valid sentences")
    return Sentences(source, lang, tuple(texts))


def _sentence(row: Any, key: str | None) -> str:
    """One monolingual sentence from a line or an object's field."""
    if key is None:
        return clean_text(row, "line")
    if key not in row:
        raise ValueError(f"missing key {key!r}")
    return clean_text(row[key], key)
