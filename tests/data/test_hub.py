"""hf: sources read through `datasets` from local folders and files only (no network)."""

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
datasets = pytest.importorskip("datasets")

from transfer_neurons import fingerprints  # noqa: E402
from transfer_neurons.data import MCItem, load_mc, load_parallel, load_sentences  # noqa: E402
from transfer_neurons.data.hub import parse_hf_spec  # noqa: E402
from transfer_neurons.errors import DataError  # noqa: E402


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep datasets' cache inside the test's temporary folder."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def test_spec_parsing() -> None:
    assert parse_hf_spec("hf:li-lab/MMLU-ProX:ja") == ("li-lab/MMLU-ProX", "ja")
    assert parse_hf_spec("hf:Helsinki-NLP/tatoeba") == ("Helsinki-NLP/tatoeba", None)
    with pytest.raises(DataError, match="expected hf:<dataset id>"):
        parse_hf_spec("hf:")


def test_translation_dicts_from_save_to_disk(tmp_path: Path) -> None:
    rows = {"id": ["1", "2", "3"], "translation": [
        {"en": "Hi.", "ja": "やあ。"}, {"en": "Bye.", "ja": "じゃあね。"}, {"en": "Hi.", "ja": "こんにちは。"}]}
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows)}).save_to_disk(str(tmp_path / "tatoeba"))
    corpus = load_parallel(f"hf:{tmp_path / 'tatoeba'}")
    assert corpus.texts == {"en": ("Hi.", "Bye.", "Hi."), "ja": ("やあ。", "じゃあね。", "こんにちは。")}
    assert load_parallel(f"hf:{tmp_path / 'tatoeba'}", strict_pairs=True, skip_invalid=True).texts == {
        "en": ("Hi.", "Bye."), "ja": ("やあ。", "じゃあね。")}
    assert corpus.name == f"hf:{tmp_path / 'tatoeba'}"


def test_source_target_columns_with_three_letter_codes(tmp_path: Path) -> None:
    folder = tmp_path / "tatoeba_mt"
    folder.mkdir()
    rows = [{"sourceLang": "eng", "targetlang": "jpn", "sourceString": f"Line {i}.", "targetString": f"行{i}。"}
            for i in range(30)]
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    corpus = load_parallel(f"hf:{folder}")
    assert corpus.languages == ("en", "ja") and len(corpus) == 30
    assert load_sentences(f"hf:{folder}", "ja", split="test").texts == load_parallel(
        f"hf:{folder}", split="test").texts["ja"]


def test_source_target_columns_take_languages_from_config(tmp_path: Path) -> None:
    folder = tmp_path / "pairs"
    (folder / "eng-kor").mkdir(parents=True)
    (folder / "eng-kor" / "test.jsonl").write_text(
        json.dumps({"sourceString": "Hi.", "targetString": "안녕."}) + "\n", encoding="utf-8")
    (folder / "README.md").write_text(
        "---\nconfigs:\n- config_name: eng-kor\n  data_files:\n  - split: test\n    path: eng-kor/test.jsonl\n---\n",
        encoding="utf-8")
    assert load_parallel(f"hf:{folder}:eng-kor").texts == {"en": ("Hi.",), "ko": ("안녕.",)}


def test_language_code_columns_from_parquet(tmp_path: Path) -> None:
    folder = tmp_path / "columns"
    folder.mkdir()
    table = {"id": [1, 2], "en": ["Hi.", "Bye."], "nl": ["Hoi.", "Doei."], "it": ["Ciao.", ""]}
    datasets.Dataset.from_dict(table).to_parquet(str(folder / "train.parquet"))
    assert load_parallel(f"hf:{folder}", languages=["en", "nl"]).texts["nl"] == ("Hoi.", "Doei.")
    with pytest.raises(DataError, match=r"train index 1: 'it' is empty"):
        load_parallel(f"hf:{folder}")
    assert len(load_parallel(f"hf:{folder}", skip_invalid=True)) == 1


def test_unloadable_dataset_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot load the dataset"):
        load_parallel(f"hf:{tmp_path / 'no-such-dataset'}")


def test_a_hub_dataset_offline_and_not_cached_is_refused_at_once(monkeypatch) -> None:
    """No hub: a dataset id not in the local cache fails at once instead of after the client's retries."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(fingerprints, "_hub_unreachable", lambda: "huggingface.co is unreachable: test")
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: pytest.fail("asked the hub"))
    with pytest.raises(DataError, match=r"^hf:org/absent: cannot load the dataset: the local Hugging Face cache holds "
                                        r"no copy, and the hub cannot be asked \(huggingface\.co is unreachable: test\)$"):
        load_parallel("hf:org/absent")


def test_script_datasets_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "scripted"
    folder.mkdir()
    (folder / "scripted.py").write_text("raise SystemExit('must never run')\n", encoding="utf-8")
    with pytest.raises(DataError, match="cannot load the dataset"):
        load_parallel(f"hf:{folder}")


def mmlu_prox(tmp_path: Path) -> Path:
    """A local MMLU-ProX look-alike: one config per language, validation and test splits."""
    folder = tmp_path / "MMLU-ProX"
    rows = {
        "test": [
            {"question_id": 1, "question": "Q1?", "option_0": "a", "option_1": "", "option_2": "c",
             "option_3": None, "option_4": "e", "answer": "C", "answer_index": 2},
            {"question_id": 2, "question": "Q2?", "option_0": "a", "option_1": "b", "option_2": None,
             "option_3": "d", "option_4": "e", "answer": "E", "answer_index": None},
        ],
        "validation": [{"question_id": 9, "question": "V?", "option_0": "x", "option_1": "y", "option_2": None,
                        "option_3": None, "option_4": None, "answer": "A", "answer_index": 0}],
    }
    config_yaml = ["---", "configs:"]
    for lang in ("ja", "en"):
        (folder / lang).mkdir(parents=True)
        config_yaml += [f"- config_name: {lang}", "  data_files:"]
        for split, split_rows in rows.items():
            path = folder / lang / f"{split}.jsonl"
            path.write_text("".join(json.dumps(dict(r, question=f"[{lang}] {r['question']}")) + "\n"
                                    for r in split_rows), encoding="utf-8")
            config_yaml += [f"  - split: {split}", f"    path: {lang}/{split}.jsonl"]
    (folder / "README.md").write_text("\n".join(config_yaml + ["---", ""]), encoding="utf-8")
    return folder


def test_mmlu_prox_maps_options_and_answers(tmp_path: Path) -> None:
    mc = load_mc(f"hf:{mmlu_prox(tmp_path)}", "ja")
    assert mc.items == (
        MCItem("[ja] Q1?", ("a", "c", "e"), 1),
        MCItem("[ja] Q2?", ("a", "b", "d", "e"), 3),
    )
    assert mc.lang == "ja" and mc.name.endswith("MMLU-ProX:ja")
    assert load_mc(f"hf:{mmlu_prox(tmp_path / 'again')}:en", "en").items[0].question == "[en] Q1?"
    with pytest.raises(DataError, match=r":en: its config 'en' is the en questions, not ja"):
        load_mc(f"hf:{tmp_path / 'again' / 'MMLU-ProX'}:en", "ja")  # never one language's questions for another


def test_mmlu_prox_answer_on_an_empty_option_is_an_error(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    row = {"question": "Q?", "option_0": "a", "option_1": "", "option_2": "c", "answer": "B"}
    (folder / "test.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"test index 0: answer 1 does not point at one of"):
        load_mc(f"hf:{folder}:default", "en")


def test_mmlu_prox_unknown_config(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot load the dataset.*'xx' not found"):
        load_mc(f"hf:{mmlu_prox(tmp_path)}", "xx")


def test_data_fingerprint_tracks_saved_datasets_folders_and_hub_commits(tmp_path: Path, monkeypatch) -> None:
    from transfer_neurons.data import hub

    monkeypatch.setenv("TRANSFER_NEURONS_CACHE", str(tmp_path / "cache"))
    rows = {"translation": [{"en": "Hi.", "ja": "やあ。"}]}
    saved = tmp_path / "saved"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows)}).save_to_disk(str(saved))
    first = hub.data_fingerprint(f"hf:{saved}")
    assert first["kind"] == "hf-saved" and set(first["fingerprints"]) == {"train"}
    changed = {"translation": [{"en": "Hi.", "ja": "こんにちは。"}]}
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(changed)}).save_to_disk(str(tmp_path / "saved2"))
    assert hub.data_fingerprint(f"hf:{tmp_path / 'saved2'}")["fingerprints"] != first["fingerprints"]

    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "test.jsonl").write_text('{"en": "Hi.", "ja": "やあ。"}\n', encoding="utf-8")
    before = hub.data_fingerprint(f"hf:{folder}")
    (folder / "test.jsonl").write_text('{"en": "Hi.", "ja": "どうも。"}\n', encoding="utf-8")
    assert hub.data_fingerprint(f"hf:{folder}")["sha256"] != before["sha256"]

    commits = iter(["a" * 40, "b" * 40])
    monkeypatch.setattr(hub, "resolve_hub_commit", lambda repo, revision, kind: {"commit": next(commits)})
    assert hub.data_fingerprint("hf:li-lab/MMLU-ProX:ja") == {
        "kind": "hf-hub", "id": "li-lab/MMLU-ProX", "config": "ja", "commit": "a" * 40}
    assert hub.data_fingerprint("hf:li-lab/MMLU-ProX:ja")["commit"] == "b" * 40  # a new hub commit, a new key
