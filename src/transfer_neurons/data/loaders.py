"""The public loaders: a SPEC (file path, bundled set name or "hf:<id>[:<config>]") -> in-memory data."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from transfer_neurons.data.catalog import BUNDLED_KINDS, bundled_of_kind, bundled_resource, bundled_text
from transfer_neurons.data.derived import SPLITS, check_split, split_of
from transfer_neurons.data.files import Record, RowIssues, delimited_records, jsonl_records, read_text, text_lines
from transfer_neurons.data.hub import HF_PREFIX, hf_mc, hf_parallel
from transfer_neurons.data.mkqa import is_mkqa, mkqa_set
from transfer_neurons.data.parallel import (
    assemble_parallel,
    assemble_sentences,
    detect_languages,
    hub_language,
    pairs_other_languages,
    rows_used,
)
from transfer_neurons.data.questions import mc_set, qa_set, question_languages
from transfer_neurons.data.types import MCSet, ParallelCorpus, QASet, Sentences
from transfer_neurons.errors import DataError

_FORMATS = {
    "parallel": (".jsonl", ".tsv", ".csv"),
    "sentences": (".jsonl", ".txt", ".tsv", ".csv"),
    "qa": (".jsonl",),
    "mc": (".jsonl",),
}
_DELIMITERS = {".tsv": "\t", ".csv": ","}


def _file_format(path: Path, kind: str) -> str:
    """The file's format from its extension (a trailing .gz is allowed), checked against what `kind` reads."""
    suffix = Path(path.name.lower().removesuffix(".gz")).suffix
    if suffix not in _FORMATS[kind]:
        raise DataError(
            f"{path}: unknown file extension {suffix or '(none)'!r} for {kind} data; "
            f"expected {', '.join(_FORMATS[kind])} (optionally gzipped as .gz)"
        )
    return suffix


def _source_text(spec: str, kind: str) -> tuple[str, str, str]:
    """(source name, decoded text, format) of a bundled set or a local file."""
    bundled_kind = "parallel" if kind == "sentences" else kind
    if bundled_of_kind(spec, bundled_kind):
        return f"bundled:{spec}", bundled_text(spec), ".jsonl"
    path = Path(spec).expanduser()
    if not path.exists() and not path.suffix and "/" not in spec and "\\" not in spec:
        raise DataError(f"{spec!r}: no such file, and not a bundled data set ({', '.join(BUNDLED_KINDS)})")
    fmt = _file_format(path, kind)
    return spec, read_text(path), fmt


def as_spec(spec: str | Path) -> str:
    """A data spec as a string (a pathlib.Path works too), or a clear error."""
    if isinstance(spec, Path):
        return str(spec)
    if not isinstance(spec, str) or not spec:
        raise DataError(f"expected a data spec (a file path, a bundled set name or hf:ID), got {spec!r}")
    return spec


def _records(source: str, text: str, fmt: str, issues: RowIssues) -> list[Record]:
    """Rows of a JSONL, TSV or CSV text."""
    if fmt == ".jsonl":
        return jsonl_records(text, issues)
    return delimited_records(text, _DELIMITERS[fmt], issues, source)


def check_limit(limit: int | None) -> None:
    """Reject a row limit that is not a positive integer."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise DataError(f"limit must be a positive integer or None, got {limit!r}")


def _parallel_corpus(spec: str, languages: Sequence[str] | None, issues: RowIssues, strict_pairs: bool) -> ParallelCorpus:
    """Every valid row of an hf: dataset, bundled set or file (its notice left to the caller's RowIssues)."""
    if spec.startswith(HF_PREFIX):
        return hf_parallel(spec, languages, issues, strict_pairs)
    source, text, fmt = _source_text(spec, "parallel")
    return assemble_parallel(source, _records(source, text, fmt, issues), languages, issues, strict_pairs)


def parallel_languages(spec: str | Path) -> list[str]:
    """The language keys of a bundled parallel set or file, in first-seen order, its rows not yet validated."""
    spec = as_spec(spec)
    source, text, fmt = _source_text(spec, "parallel")
    with RowIssues(source, skip_invalid=False) as issues:
        return detect_languages(_records(source, text, fmt, issues), source)


def rows_left_out(spec: str | Path, languages: Sequence[str]) -> list[int]:
    """Positions of the rows of a bundled parallel set or file that a reader of `languages` leaves out: rows of
    another language pair (lacking one of them, holding another language)."""
    spec = as_spec(spec)
    source, text, fmt = _source_text(spec, "parallel")
    with RowIssues(source, skip_invalid=False) as issues:
        records = _records(source, text, fmt, issues)
    return [i for i, (_, row) in enumerate(records) if pairs_other_languages(row, languages)]


def _source_name(spec: str, kind: str) -> str:
    """The name notices and data give a SPEC: bundled:NAME for bundled sets, else the SPEC itself."""
    return f"bundled:{spec}" if bundled_of_kind(spec, kind) else spec


def load_parallel(
    spec: str | Path,
    languages: Sequence[str] | None = None,
    split: str | None = None,
    skip_invalid: bool = False,
    strict_pairs: bool = False,
    dedupe: bool = False,
    limit: int | None = None,
) -> ParallelCorpus:
    """Aligned sentences from the bundled "parallel" set, a JSONL/TSV/CSV file or an hf: translation dataset.

    Every row counts: repeated rows and several translations of one hub sentence are kept, with one
    notice counting them. strict_pairs refuses the latter; dedupe keeps distinct rows only; limit keeps
    the first rows of the split.
    """
    spec = as_spec(spec)
    check_split(split)
    check_limit(limit)
    with RowIssues(_source_name(spec, "parallel"), skip_invalid) as issues:
        corpus = _parallel_corpus(spec, languages, issues, strict_pairs)
        return rows_used(split_of(corpus, split), issues, dedupe, limit)


def load_sentences(
    spec: str | Path,
    lang: str,
    split: str | None = None,
    skip_invalid: bool = False,
    strict_pairs: bool = False,
    dedupe: bool = False,
    limit: int | None = None,
) -> Sentences:
    """Monolingual sentences: a .txt (one per line), a JSONL with "text" or `lang` keys, or a parallel source's side.

    Repeated sentences are kept (each counts) with one notice; dedupe keeps distinct ones, limit the first.
    """
    spec = as_spec(spec)
    check_split(split)
    check_limit(limit)
    with RowIssues(_source_name(spec, "parallel"), skip_invalid) as issues:
        return rows_used(_split_sentences(spec, lang, split, issues, strict_pairs), issues, dedupe, limit)


def _split_sentences(spec: str, lang: str, split: str | None, issues: RowIssues, strict_pairs: bool) -> Sentences:
    """The valid sentences of one language in a split, in row order; a parallel source splits on its hub side."""
    if spec.startswith(HF_PREFIX) or spec in BUNDLED_KINDS:
        return split_of(_parallel_corpus(spec, None, issues, strict_pairs), split).sentences(lang)
    source, text, fmt = _source_text(spec, "sentences")
    if fmt == ".txt":
        return split_of(assemble_sentences(source, lang, text_lines(text), None, issues), split)
    records = _records(source, text, fmt, issues)
    if fmt == ".jsonl" and any("text" in row for _, row in records):
        return split_of(assemble_sentences(source, lang, records, "text", issues), split)
    languages = [hub_language(detect_languages(records, source)), lang]  # the hub decides the split
    return split_of(assemble_parallel(source, records, languages, issues, strict_pairs), split).sentences(lang)


def _question_records(spec: str, kind: str, issues: RowIssues) -> tuple[str, list[Record]]:
    """Source name and JSON rows of a bundled or local QA/MC file."""
    source, text, _ = _source_text(spec, kind)
    return source, jsonl_records(text, issues)


def load_qa(spec: str | Path, lang: str, skip_invalid: bool = False) -> QASet:
    """Open questions in one language from the bundled "qa" set, a qa.jsonl file or MKQA's mkqa.jsonl[.gz];
    skip_invalid skips bad rows with one notice counting them."""
    spec = as_spec(spec)
    if spec.startswith(HF_PREFIX):
        raise DataError(f"{spec}: QA data is read from files; download MKQA's mkqa.jsonl.gz and pass its path")
    with RowIssues(_source_name(spec, "qa"), skip_invalid) as issues:
        source, records = _question_records(spec, "qa", issues)
        build = mkqa_set if is_mkqa(records) else qa_set
        return build(source, lang, records, issues)


def load_mc(spec: str | Path, lang: str, skip_invalid: bool = False) -> MCSet:
    """Multiple-choice questions in one language from the bundled "mc" set, an mc.jsonl file or hf:li-lab/MMLU-ProX;
    skip_invalid skips bad rows with one notice counting them."""
    spec = as_spec(spec)
    with RowIssues(_source_name(spec, "mc"), skip_invalid) as issues:
        if spec.startswith(HF_PREFIX):
            return hf_mc(spec, lang, issues)
        source, records = _question_records(spec, "mc", issues)
        return mc_set(source, lang, records, issues)


def describe_bundled() -> list[dict]:
    """One summary per bundled set, for `data list`."""
    return [describe_bundled_set(name) for name in BUNDLED_KINDS]


def describe_bundled_set(name: str) -> dict:
    """Name, kind, languages, size, train/test sizes (parallel sets only) and file path of a bundled set."""
    summary = {"name": name, "kind": BUNDLED_KINDS.get(name), "path": str(bundled_resource(name))}
    if summary["kind"] == "parallel":
        corpus = load_parallel(name)
        train, test = (len(split_of(corpus, split)) for split in SPLITS)
        return summary | {"languages": list(corpus.languages), "size": len(corpus), "train": train, "test": test}
    with RowIssues(name, skip_invalid=False) as issues:
        _, records = _question_records(name, summary["kind"], issues)
    return summary | {"languages": question_languages(records), "size": len(records), "train": None, "test": None}
