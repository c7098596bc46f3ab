"""The study's language check before the model loads: only the study's languages are read from each row."""

import importlib

import pytest
from tiny import write_jsonl

from transfer_neurons.errors import TransferNeuronsError
from transfer_neurons.preflight import check_study_languages, study_languages
from transfer_neurons.study.config import resolve_config
from transfer_neurons.study.plan import corpus, plan

ROWS = [
    {"en": "Good morning.", "ja": "おはよう。", "ko": "좋은 아침."},
    {"en": "Thank you.", "ja": "ありがとう。"},  # no ko: a study of ja alone still reads it
    {"en": "See you.", "ja": "またね。", "fr": "À plus."},
]


def config(tmp_path, **options) -> dict:
    """A resolved study config over the rows above."""
    data = write_jsonl(tmp_path / "pairs.jsonl", ROWS)
    return resolve_config({"model": "gpt2", "data": {"parallel": str(data)}, **options})


def test_a_study_reads_only_its_languages_from_rows_that_carry_others(tmp_path) -> None:
    cfg = config(tmp_path, langs=["ja"])
    assert study_languages(cfg) == ["en", "ja"]
    check_study_languages(cfg)
    assert corpus(cfg, "train").texts["ja"] == ("おはよう。", "ありがとう。", "またね。")


def test_specificity_languages_are_read_too(tmp_path) -> None:
    cfg = config(tmp_path, langs=["ja"], specificity_langs=["en", "ja", "ko"])
    assert study_languages(cfg) == ["en", "ja", "ko"]
    with pytest.raises(TransferNeuronsError, match=r"line 2: missing language key 'ko'"):
        check_study_languages(cfg)  # row 2 lacks a language the study reads


@pytest.mark.parametrize("options, key", [({"langs": ["ja", "xx"]}, "langs"),
                                          ({"langs": ["ja"], "specificity_langs": ["en", "it"]}, "specificity_langs"),
                                          ({"langs": ["ja"], "hub_lang": "de"}, "hub_lang")])
def test_a_language_in_no_row_is_refused_naming_its_key(tmp_path, options, key) -> None:
    with pytest.raises(TransferNeuronsError, match=rf"^config\.{key}: .* no '\w+' sentences; it has en, ja, ko, fr$"):
        check_study_languages(config(tmp_path, **options))


def test_with_dedupe_the_languages_read_enter_every_stage_key(tmp_path) -> None:
    """Deduplicated rows depend on every language read (a row repeats only if all its sentences do)."""
    complete = write_jsonl(tmp_path / "complete.jsonl", ROWS[:1])  # every row holds every language

    def detect_options(**options):
        cfg = resolve_config({"data": {"parallel": str(complete)}, **options})
        return next(s.options for s in plan(cfg) if s.name == "detect/type1-ja")

    assert detect_options(langs=["ja"]) == detect_options(langs=["ja", "ko"])  # without dedupe: the same rows
    assert detect_options(langs=["ja"], dedupe=True) != detect_options(langs=["ja", "ko"], dedupe=True)


def test_the_paper_reasoning_key_records_whether_lm_eval_is_installed(tmp_path, monkeypatch) -> None:
    """A study that fell back to built-in reasoning runs lm-eval once it is installed, not the cached fallback."""
    plan_module = importlib.import_module("transfer_neurons.study.plan")  # the package exports a function `plan`

    def reasoning_options():
        cfg = config(tmp_path, langs=["ja"], protocol="paper", stages=["reasoning"])
        return next(s.options for s in plan(cfg) if s.name.startswith("reasoning/"))

    monkeypatch.setattr(plan_module, "installed_lm_eval", lambda: None)
    without = reasoning_options()
    monkeypatch.setattr(plan_module, "installed_lm_eval", lambda: "0.4.13")
    assert reasoning_options() != without


def test_a_local_hf_dataset_without_a_study_language_is_refused_before_the_model_loads(tmp_path) -> None:
    datasets = pytest.importorskip("datasets")
    rows = {"translation": [{"en": "Hi.", "ja": "やあ。"}, {"en": "Bye.", "ja": "じゃあね。"}]}
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows)}).save_to_disk(str(tmp_path / "saved"))
    check_study_languages(resolve_config({"data": {"parallel": f"hf:{tmp_path / 'saved'}"}, "langs": ["ja"]}))
    with pytest.raises(TransferNeuronsError, match=r"no 'ko' sentences; it has en, ja"):
        check_study_languages(resolve_config({"data": {"parallel": f"hf:{tmp_path / 'saved'}"}, "langs": ["ja", "ko"]}))


def test_languages_that_leave_rows_out_enter_the_stage_keys(tmp_path) -> None:
    """Adding ko drops the en–ja–fr row from every stage's data, so the ja stages are recomputed."""
    ja = {s.name: s for s in plan(config(tmp_path, langs=["ja"], stages=["similarity"]))}
    both = {s.name: s for s in plan(config(tmp_path, langs=["ja", "ko"], stages=["similarity"]))}
    assert ja["detect/type1-ja"].options != both["detect/type1-ja"].options
    complete = write_jsonl(tmp_path / "complete.jsonl", ROWS[:1])  # every row holds every language
    keys = [{s.name: s.options for s in plan(resolve_config({"data": {"parallel": str(complete)}, "langs": langs}))}
            for langs in (["ja"], ["ja", "ko"])]
    assert keys[0]["detect/type1-ja"] == keys[1]["detect/type1-ja"]  # nothing left out: the ja stages are kept


def test_seeds_enter_only_the_keys_of_stages_whose_controls_take_them(tmp_path) -> None:
    def options(seeds: int) -> dict:
        return {s.name: s.options for s in plan(config(tmp_path, langs=["ja"], seeds=seeds, stages=["similarity", "qa"]))}

    two, three = options(2), options(3)
    assert two["similarity/type1-ja"] != three["similarity/type1-ja"]  # random without a count takes `seeds`
    assert two["qa/type1-ja"] == three["qa/type1-ja"]  # item_controls random:3 carries its own
