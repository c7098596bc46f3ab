"""Hugging Face `datasets` sources ("hf:<id>[:<config>]"): Tatoeba-style translation pairs and MMLU-ProX."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transfer_neurons.data.files import Record, RowIssues
from transfer_neurons.data.parallel import assemble_parallel, clean_text, is_language_key
from transfer_neurons.data.questions import build_items
from transfer_neurons.data.types import MCItem, MCSet, ParallelCorpus
from transfer_neurons.errors import DataError, TransferNeuronsError
from transfer_neurons.fingerprints import hub_offline_reason, in_hub_cache, resolve_hub_commit, tree_sha256

HF_PREFIX = "hf:"
_MC_SPLITS = ("test", "validation", "train")  # evaluation data first
_ISO639_3 = {
    "ara": "ar", "cmn": "zh", "dan": "da", "deu": "de", "eng": "en", "fin": "fi", "fra": "fr", "hin": "hi",
    "ita": "it", "jpn": "ja", "kor": "ko", "nld": "nl", "pol": "pl", "por": "pt", "rus": "ru", "spa": "es",
    "swe": "sv", "tur": "tr", "vie": "vi", "zho": "zh",
}  # Tatoeba's three-letter codes -> the two-letter codes used everywhere else


def parse_hf_spec(spec: str) -> tuple[str, str | None]:
    """Split "hf:<id>[:<config>]" into dataset id and optional config name."""
    dataset_id, _, config = spec[len(HF_PREFIX):].partition(":")
    if not dataset_id:
        raise DataError(f"{spec!r}: expected hf:<dataset id>[:<config>]")
    return dataset_id, config or None


def _is_saved_dataset(folder: Path) -> bool:
    """Whether a folder was written by datasets' save_to_disk (a Dataset or a DatasetDict)."""
    return (folder / "state.json").is_file() or (folder / "dataset_dict.json").is_file()


def data_fingerprint(spec: str) -> dict:
    """What names an hf: dataset's rows, for cache keys: datasets' own fingerprints, a content hash or a commit.

    A save_to_disk folder gives each split's `_fingerprint` (datasets changes it with
    every transformation); another local folder, the SHA-256 of its files; a hub id,
    the commit its main branch resolves to (hub when online, local cache offline).
    """
    dataset_id, config = parse_hf_spec(spec)
    folder = Path(dataset_id).expanduser()
    if _is_saved_dataset(folder):
        states = sorted(folder.glob("state.json")) + sorted(folder.glob("*/state.json"))
        prints = {str(p.parent.relative_to(folder)): json.loads(p.read_text(encoding="utf-8")).get("_fingerprint")
                  for p in states}
        return {"kind": "hf-saved", "path": str(folder.resolve()), "fingerprints": prints}
    if folder.is_dir():
        return {"kind": "hf-folder", "path": str(folder.resolve()), "config": config, "sha256": tree_sha256(folder)}
    try:
        commit = resolve_hub_commit(dataset_id, None, "dataset")["commit"]
    except TransferNeuronsError as err:
        raise DataError(f"{spec}: {err}") from None
    return {"kind": "hf-hub", "id": dataset_id, "config": config, "commit": commit}


def _open(dataset_id: str, config: str | None, spec: str) -> dict[str, Any]:
    """Every split of a hub dataset (or a local save_to_disk folder), by split name; never runs remote code."""
    try:
        import datasets
    except ImportError:
        raise DataError(f"{spec}: reading hf: data needs the `datasets` package (pip install datasets)") from None
    folder = Path(dataset_id)
    offline = None if folder.exists() else hub_offline_reason()
    if offline is not None and not in_hub_cache(dataset_id, "dataset"):  # else the hub client retries for a minute
        raise DataError(f"{spec}: cannot load the dataset: the local Hugging Face cache holds no copy, and the hub "
                        f"cannot be asked ({offline})")
    try:
        if _is_saved_dataset(folder):
            loaded = datasets.load_from_disk(str(folder))
        else:
            loaded = datasets.load_dataset(dataset_id, config)
    except (OSError, ValueError, RuntimeError) as exc:  # RuntimeError: script datasets, which are never run
        raise DataError(f"{spec}: cannot load the dataset ({type(exc).__name__}: {exc})") from None
    return dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"data": loaded}


def _language(code: Any) -> str:
    """A language code as used in this project (three-letter Tatoeba codes mapped to two letters)."""
    return _ISO639_3.get(str(code), str(code))


def _pair_languages(columns: dict[str, str], row: dict[str, Any], config: str | None) -> tuple[str, str]:
    """Source and target language of a sourceString/targetString row: from its columns or a "src-tgt" config."""
    if "sourcelang" in columns and "targetlang" in columns:
        return _language(row[columns["sourcelang"]]), _language(row[columns["targetlang"]])
    source, _, target = (config or "").partition("-")
    if not source or not target:
        raise ValueError("sourceString/targetString data needs language columns or a config like 'eng-jpn'")
    return _language(source), _language(target)


def _translation_row(row: dict[str, Any], columns: dict[str, str], config: str | None) -> dict[str, Any]:
    """One dataset row as {language: text}, whichever of the three Tatoeba-style layouts it uses."""
    if isinstance(row.get("translation"), dict):
        return {_language(lang): text for lang, text in row["translation"].items()}
    if "sourcestring" in columns and "targetstring" in columns:
        source, target = _pair_languages(columns, row, config)
        return {source: row[columns["sourcestring"]], target: row[columns["targetstring"]]}
    return {_language(k): v for k, v in row.items() if is_language_key(_language(k))}


def _parallel_records(splits: dict[str, Any], config: str | None, spec: str) -> list[Record]:
    """Rows of every split (in split-name order), mapped to {language: text}."""
    records = []
    for split in sorted(splits):
        columns = {name.lower(): name for name in splits[split].column_names}
        for index, row in enumerate(splits[split]):
            try:
                records.append((f"{split} index {index}", _translation_row(row, columns, config)))
            except ValueError as exc:
                raise DataError(f"{spec}, {split} index {index}: {exc}") from None
    return records


def hf_parallel(
    spec: str, languages: Sequence[str] | None, issues: RowIssues, strict_pairs: bool = False
) -> ParallelCorpus:
    """A parallel corpus from a hub translation dataset, every row kept as for files (see assemble_parallel)."""
    dataset_id, config = parse_hf_spec(spec)
    records = _parallel_records(_open(dataset_id, config, spec), config, spec)
    return assemble_parallel(spec, records, languages, issues, strict_pairs)


def _answer_position(value: Any) -> int:
    """An answer given as a letter A-J, a digit string or an int, as a 0-based index."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdecimal():
        return int(value)
    if isinstance(value, str) and len(value.strip()) == 1 and "A" <= value.strip().upper() <= "J":
        return ord(value.strip().upper()) - ord("A")
    raise ValueError(f"expected 'answer' to be a letter A-J or an index, got {value!r}")


def _raw_options(row: dict[str, Any]) -> list[Any]:
    """Options as an "options" list (MMLU-Pro) or option_0, option_1, ... columns (MMLU-ProX)."""
    if "options" in row:
        return list(row["options"] or [])
    return [row[f"option_{i}"] for i in itertools.takewhile(lambda i: f"option_{i}" in row, itertools.count())]


def _mmlu_item(row: dict[str, Any]) -> MCItem:
    """One MMLU-ProX row; empty options are dropped and the answer index re-pointed to match."""
    question = clean_text(row.get("question"), "question")
    kept = [(i, o.strip()) for i, o in enumerate(_raw_options(row)) if isinstance(o, str) and o.strip()]
    positions = [i for i, _ in kept]
    answer = row.get("answer_index")
    original = _answer_position(row.get("answer") if answer is None else answer)
    if original not in positions or len(kept) < 2:
        raise ValueError(f"answer {original} does not point at one of at least 2 non-empty options")
    return MCItem(question, tuple(o for _, o in kept), positions.index(original))


def hf_mc(spec: str, lang: str, issues: RowIssues) -> MCSet:
    """An MC set from MMLU-ProX (config = language, default `lang`), preferring its test split; a config that
    names another language is refused, so one language's questions are never scored as another's."""
    dataset_id, config = parse_hf_spec(spec)
    if config and is_language_key(config) and config != lang:
        raise DataError(f"{spec}: its config {config!r} is the {config} questions, not {lang}; give "
                        f"{HF_PREFIX}{dataset_id} to read each language's own config")
    config = config or lang
    splits = _open(dataset_id, config, spec)
    split = next((name for name in _MC_SPLITS if name in splits), sorted(splits)[0])
    source = f"{HF_PREFIX}{dataset_id}:{config}"
    records = [(f"{split} index {i}", row) for i, row in enumerate(splits[split])]
    issues.source = source
    return MCSet(source, lang, build_items(source, records, _mmlu_item, issues))
