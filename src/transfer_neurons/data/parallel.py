"""Turning parsed rows into validated parallel corpora and monolingual sentence sets."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from transfer_neurons.data.files import Record, RowIssues
from transfer_neurons.data.types import ParallelCorpus, Sentences, Splittable
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
    records = list(records)
    if not records:
        raise DataError(f"{source}: no rows (an empty file, or a header alone)")
    languages = list(dict.fromkeys(key for _, row in records for key in row if is_language_key(key)))
    if not languages:
        raise DataError(f"{source}: no language-code keys or columns found (expected e.g. 'en', 'ja')")
    return languages


def check_languages_present(source: str, records: Sequence[Record], languages: Sequence[str]) -> None:
    """Refuse a requested language that no row has, naming the ones the rows do have.

    Rows may carry more languages than asked for, or different ones (one file of en–ja and en–ko rows):
    only the requested keys are read.
    """
    have = detect_languages(records, source)
    missing = [lang for lang in languages if lang not in have]
    if missing:
        raise DataError(f"{source}: no {', '.join(map(repr, missing))} sentences; it has {', '.join(have)}")


def pairs_other_languages(row: Any, languages: Sequence[str]) -> bool:
    """Whether a row lacks a requested language but has one not requested: a row of another language pair."""
    return (isinstance(row, dict) and any(lang not in row for lang in languages)
            and any(is_language_key(key) and key not in languages for key in row))


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
    strict_pairs: bool = False,
) -> ParallelCorpus:
    """Validate rows and keep every one in order; strict_pairs refuses a hub sentence with two translations.

    Under strict_pairs with skip_invalid the first translation is kept and the others dropped and counted.
    With languages given, a row of other languages (one file of en–ja and en–ko rows) is left out and counted.
    """
    langs = detect_languages(records, source) if languages is None else list(dict.fromkeys(languages))
    if not langs:
        raise DataError(f"{source}: no languages requested")
    if languages is not None:
        check_languages_present(source, records, langs)
    hub_index = langs.index(hub_language(langs))
    issues.hub_lang, issues.languages = langs[hub_index], tuple(langs)
    first: dict[str, tuple[str, tuple[str, ...]]] = {}
    rows = []
    for where, row in records:
        if pairs_other_languages(row, langs):
            issues.other_languages += 1
            continue
        try:
            texts = _row_texts(row, langs)
        except ValueError as exc:
            issues.report(where, str(exc))
            continue
        hub = texts[hub_index]
        earlier_where, earlier = first.setdefault(hub, (where, texts))
        if strict_pairs and earlier != texts and issues.skip_invalid:
            issues.kept_first += 1
            continue
        if strict_pairs and earlier != texts:
            raise DataError(
                f"{source}, {where}: {langs[hub_index]} sentence {hub!r} also appears at {earlier_where} "
                "with a different translation, which strict_pairs=True refuses; leave out strict_pairs=True to keep "
                "every translation, or add skip_invalid=True to keep the first", mentions=("strict_pairs", "skip_invalid")
            )
        rows.append(texts)
    if not rows:
        raise DataError(f"{source}: no valid rows with languages {', '.join(langs)}")
    return ParallelCorpus(source, {lang: tuple(row[i] for row in rows) for i, lang in enumerate(langs)})


def assemble_sentences(
    source: str, lang: str, records: Sequence[Record], key: str | None, issues: RowIssues
) -> Sentences:
    """Validate monolingual rows (the field `key` of objects, or whole lines when key is None), keeping repeats."""
    texts = []
    for where, row in records:
        try:
            texts.append(_sentence(row, key))
        except ValueError as exc:
            issues.report(where, str(exc))
    if not texts:
        raise DataError(f"{source}: no valid sentences")
    return Sentences(source, lang, tuple(texts))


def rows_used(data: Splittable, issues: RowIssues, dedupe: bool = False, limit: int | None = None) -> Splittable:
    """The first `limit` rows (distinct ones only when dedupe), counting repeats and retranslations for the notice.

    A row repeats when all its sentences equal an earlier row's; it retranslates when only its hub
    sentence does. Repeats are kept by default, since a centroid is the mean over the rows given.
    """
    if isinstance(data, Sentences):
        keys: list = list(data.texts)
        hubs = keys
    else:
        keys = list(zip(*data.texts.values()))
        hubs = list(data.texts[hub_language(data.languages)])
    seen_rows, seen_hubs, keep = set(), set(), []
    for index, (row, hub) in enumerate(zip(keys, hubs)):
        if limit is not None and len(keep) == limit:
            break
        if row in seen_rows:
            issues.repeated += 1
            if dedupe:
                continue
        elif hub in seen_hubs:
            issues.retranslated += 1
        seen_rows.add(row)
        seen_hubs.add(hub)
        keep.append(index)
    issues.deduped = dedupe
    if len(keep) == limit and keep[-1] + 1 < len(keys):
        issues.counted = (keep[-1] + 1, len(keys))
    if isinstance(data, Sentences):
        return Sentences(data.name, data.lang, tuple(data.texts[i] for i in keep))
    return ParallelCorpus(data.name, {lang: tuple(side[i] for i in keep) for lang, side in data.texts.items()})


def _sentence(row: Any, key: str | None) -> str:
    """One monolingual sentence from a line or an object's field."""
    if key is None:
        return clean_text(row, "line")
    if key not in row:
        raise ValueError(f"missing key {key!r}")
    return clean_text(row[key], key)
