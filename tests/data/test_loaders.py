"""The public loaders on local files and bundled sets: every format and every bad-input case."""

import gzip
import json
from pathlib import Path

import pytest

from transfer_neurons.data import (
    MCItem,
    QAItem,
    describe_bundled,
    describe_bundled_set,
    load_mc,
    load_parallel,
    load_qa,
    load_sentences,
)
from transfer_neurons.data import catalog
from transfer_neurons.errors import DataError

ROWS = [
    {"id": "p1", "en": "Good morning.", "ja": "おはよう。", "ko": "좋은 아침."},
    {"id": "p2", "en": "Thank you.", "ja": "ありがとう。", "ko": "감사합니다."},
    {"id": "p3", "en": "See you.", "ja": "またね。", "ko": "또 봐요."},
]
QA_ROWS = [
    {"id": "q001", "question": {"en": "Capital of Japan?", "ja": "日本の首都は？"},
     "answers": {"en": ["Tokyo", "Tokyo City"], "ja": ["東京", "東京都"]}},
]
MC_ROWS = [
    {"id": "m001", "question": {"en": "2+2?", "ja": "2+2は？"},
     "options": {"en": ["3", "4", "5", "6"], "ja": ["3", "4", "5", "6"]}, "answer": 1},
]


def jsonl(path: Path, rows: list) -> str:
    """Write rows (objects or raw strings) as JSONL and return the path as a SPEC string."""
    lines = [row if isinstance(row, str) else json.dumps(row, ensure_ascii=False) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def text(path: Path, content: str) -> str:
    """Write UTF-8 text and return the path as a SPEC string."""
    path.write_text(content, encoding="utf-8")
    return str(path)


# --- parallel formats -------------------------------------------------------------------------


def test_parallel_jsonl_ignores_id_and_keeps_key_order(tmp_path: Path) -> None:
    corpus = load_parallel(jsonl(tmp_path / "p.jsonl", ROWS))
    assert corpus.languages == ("en", "ja", "ko")
    assert corpus.texts["ja"] == ("おはよう。", "ありがとう。", "またね。")
    assert corpus.name == str(tmp_path / "p.jsonl")


def test_parallel_languages_restrict_in_the_given_order(tmp_path: Path) -> None:
    corpus = load_parallel(jsonl(tmp_path / "p.jsonl", ROWS), languages=["ko", "en"])
    assert corpus.languages == ("ko", "en")
    assert corpus.pairs("en", "ko").l2[1] == "감사합니다."


def test_parallel_tsv_and_csv(tmp_path: Path) -> None:
    tsv = load_parallel(text(tmp_path / "p.tsv", "en\tja\nGood morning.\tおはよう。\nThank you.\tありがとう。\n"))
    csv_ = load_parallel(text(tmp_path / "p.csv", 'id,en,ja\n1,"Hello, you.",やあ。\n2,Thank you.,ありがとう。\n'))
    assert tsv.texts == {"en": ("Good morning.", "Thank you."), "ja": ("おはよう。", "ありがとう。")}
    assert csv_.texts["en"] == ("Hello, you.", "Thank you.") and csv_.languages == ("en", "ja")


def test_parallel_gzipped_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl.gz"
    path.write_bytes(gzip.compress("\n".join(json.dumps(r) for r in ROWS).encode()))
    assert len(load_parallel(str(path))) == 3


def test_parallel_strips_whitespace_and_bom(tmp_path: Path) -> None:
    path = tmp_path / "p.tsv"
    path.write_bytes("\ufeffen\tja\n  Hi. \t やあ。\r\n".encode())
    assert load_parallel(str(path)).texts == {"en": ("Hi.",), "ja": ("やあ。",)}


def test_parallel_split(tmp_path: Path) -> None:
    rows = [{"en": f"Sentence {i}.", "ja": f"文{i}。"} for i in range(90)]
    spec = jsonl(tmp_path / "p.jsonl", rows)
    train, test = load_parallel(spec, split="train"), load_parallel(spec, split="test")
    assert len(train) + len(test) == 90 and set(train.texts["en"]).isdisjoint(test.texts["en"])
    assert train.name.endswith("#train")


# --- parallel bad input -----------------------------------------------------------------------


def test_malformed_json_names_file_and_line(tmp_path: Path) -> None:
    spec = jsonl(tmp_path / "p.jsonl", [ROWS[0], '{"en": "x", "ja": }', ROWS[1]])
    with pytest.raises(DataError, match=r"p\.jsonl, line 2: malformed JSON"):
        load_parallel(spec)


def test_missing_language_key_names_file_line_and_key(tmp_path: Path) -> None:
    spec = jsonl(tmp_path / "p.jsonl", [ROWS[0], {"en": "Thank you.", "ja": "ありがとう。"}])
    with pytest.raises(DataError, match=r"p\.jsonl, line 2: missing language key 'ko'"):
        load_parallel(spec)
    with pytest.raises(DataError, match=r"p\.jsonl: no 'fr' sentences; it has en, ja, ko$"):
        load_parallel(spec, languages=["en", "fr"])  # in no row at all
    broken = jsonl(tmp_path / "broken.jsonl", [ROWS[0], {"id": "p9", "en": "Thank you."}])
    with pytest.raises(DataError, match=r"broken\.jsonl, line 2: missing language key 'ko'"):
        load_parallel(broken, languages=["en", "ko"])  # row 2 has no other language: a broken row, not another pair


def test_requested_languages_are_read_from_rows_that_carry_more_or_other_languages(tmp_path: Path, notices) -> None:
    rows = [ROWS[0], {"en": "Thank you.", "ja": "ありがとう。"}, {"en": "See you.", "ko": "또 봐요."},
            {"en": "Good night.", "ja": "おやすみ。", "it": "Buona notte."}]
    spec = jsonl(tmp_path / "mixed.jsonl", rows)
    assert load_parallel(spec, languages=["en", "ja"]).texts["ja"] == ("おはよう。", "ありがとう。", "おやすみ。")
    assert notices()[-1].endswith("left out 1 row(s) of other languages (without all of en, ja)")
    assert load_parallel(spec, languages=["ko", "en"]).texts["ko"] == ("좋은 아침.", "또 봐요.")
    with pytest.raises(DataError, match=r"line 1: missing language key 'it'"):
        load_parallel(spec)  # every language: the rows must all have them


def test_empty_sentence(tmp_path: Path) -> None:
    spec = jsonl(tmp_path / "p.jsonl", [ROWS[0], {"en": "Thank you.", "ja": "  ", "ko": "감사합니다."}])
    with pytest.raises(DataError, match=r"line 2: 'ja' is empty or whitespace-only"):
        load_parallel(spec)


def test_non_string_sentence(tmp_path: Path) -> None:
    spec = jsonl(tmp_path / "p.jsonl", [{"en": "One.", "ja": 1}])
    with pytest.raises(DataError, match=r"line 1: 'ja' must be a string, got int"):
        load_parallel(spec)


def test_identical_rows_are_kept_and_counted_in_one_notice(tmp_path: Path, notices) -> None:
    spec = jsonl(tmp_path / "same.jsonl", [ROWS[0], ROWS[1], ROWS[0], ROWS[0]])
    corpus = load_parallel(spec)
    assert corpus.texts["en"] == ("Good morning.", "Thank you.", "Good morning.", "Good morning.")
    assert notices() == [f"{spec}: 2 row(s) repeat an earlier row exactly (kept: a centroid is the mean over "
                         "the rows given; --dedupe keeps one)"]


def test_dedupe_keeps_distinct_rows_and_says_how_many_it_dropped(tmp_path: Path, notices) -> None:
    spec = jsonl(tmp_path / "same.jsonl", [ROWS[0], ROWS[1], ROWS[0], ROWS[2]])
    assert load_parallel(spec, dedupe=True).texts["en"] == ("Good morning.", "Thank you.", "See you.")
    assert notices() == [f"{spec}: dropped 1 row(s) repeating an earlier row exactly (--dedupe)"]


def test_other_translations_are_kept_by_default_with_one_notice(tmp_path: Path, notices) -> None:
    other = dict(ROWS[0], ja="おはようございます。")
    spec = jsonl(tmp_path / "tatoeba.jsonl", [ROWS[0], ROWS[1], other, other, dict(ROWS[1], ko="고마워.")])
    corpus = load_parallel(spec, languages=["en", "ja"])
    assert corpus.texts["ja"] == ("おはよう。", "ありがとう。", "おはようございます。", "おはようございます。", "ありがとう。")
    assert notices() == [
        f"{spec}: 1 row(s) give an earlier en sentence another translation (kept: each pair counts; --strict-pairs "
        "refuses them); 2 row(s) repeat an earlier row exactly (kept: a centroid is the mean over the rows given; "
        "--dedupe keeps one)"
    ]


def test_strict_pairs_refuses_another_translation_naming_the_parameters(tmp_path: Path) -> None:
    conflict = dict(ROWS[0], ja="おはようございます。")
    spec = jsonl(tmp_path / "conflict.jsonl", [ROWS[0], ROWS[1], conflict])
    with pytest.raises(DataError) as caught:
        load_parallel(spec, strict_pairs=True)
    message = str(caught.value)
    assert message.startswith(f"{spec}, line 3: en sentence 'Good morning.' also appears at line 1 with a different")
    assert "which strict_pairs=True refuses" in message and "add skip_invalid=True" in message and "--s" not in message
    shown = caught.value.shown_as(lambda name: "--" + name.replace("_", "-"))  # as the CLI shows it
    assert "which --strict-pairs refuses; leave out --strict-pairs to keep every translation, or add --skip-invalid" in shown
    assert len(load_parallel(spec)) == 3  # accepted without strict_pairs


def test_strict_pairs_keeps_the_first_when_skipping(tmp_path: Path, notices) -> None:
    conflict = dict(ROWS[0], ja="おはようございます。")
    spec = jsonl(tmp_path / "c.jsonl", [ROWS[0], conflict])
    corpus = load_parallel(spec, skip_invalid=True, strict_pairs=True)
    assert corpus.texts["ja"] == ("おはよう。",)
    assert len(notices()) == 1 and "dropped 1 row(s) giving an earlier en sentence a different translation" in notices()[0]


def test_limit_keeps_the_first_rows_and_the_notice_counts_only_those(tmp_path: Path, notices) -> None:
    spec = jsonl(tmp_path / "p.jsonl", [ROWS[0], ROWS[0], ROWS[1], ROWS[1], ROWS[1]])
    assert load_parallel(spec, limit=3).texts["en"] == ("Good morning.", "Good morning.", "Thank you.")
    assert notices() == [f"{spec}: 1 row(s) repeat an earlier row exactly (kept: a centroid is the mean over "
                         "the rows given; --dedupe keeps one); counted in the first 3 of 5 rows (--limit)"]
    assert load_parallel(spec, dedupe=True, limit=2).texts["en"] == ("Good morning.", "Thank you.")
    with pytest.raises(DataError, match="limit must be a positive integer"):
        load_parallel(spec, limit=0)


def test_tsv_row_with_wrong_field_count(tmp_path: Path) -> None:
    spec = text(tmp_path / "p.tsv", "en\tja\nHi.\tやあ。\nBye.\n")
    with pytest.raises(DataError, match=r"p\.tsv, line 3: 1 fields, expected 2"):
        load_parallel(spec)


def test_file_without_language_keys(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no language-code keys"):
        load_parallel(jsonl(tmp_path / "p.jsonl", [{"id": "x", "sentence": "Hi."}]))


def test_a_file_without_rows_says_so(tmp_path: Path) -> None:
    for name, content in (("header.tsv", "en\tja\n"), ("empty.jsonl", "")):
        with pytest.raises(DataError, match=rf"{name}: no rows \(an empty file, or a header alone\)$"):
            load_parallel(text(tmp_path / name, content))


def test_file_with_no_valid_rows(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no valid rows"):
        load_parallel(jsonl(tmp_path / "p.jsonl", [{"en": "", "ja": "x"}]), skip_invalid=True)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "p.tsv"
    path.write_bytes("en\tja\nHi.\tやあ。\n".encode("shift_jis"))
    with pytest.raises(DataError, match=r"p\.tsv, line 2: not valid UTF-8"):
        load_parallel(str(path))


def test_missing_file_unknown_name_and_extension(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing\.jsonl: no such file"):
        load_parallel(str(tmp_path / "missing.jsonl"))
    with pytest.raises(DataError, match=r"'paralel': no such file, and not a bundled data set \(parallel, qa, mc\)"):
        load_parallel("paralel")
    with pytest.raises(DataError, match=r"unknown file extension '\.xlsx' for parallel data"):
        load_parallel(text(tmp_path / "p.xlsx", "x"))
    with pytest.raises(DataError, match=r"'qa' is qa data, not parallel; use: parallel"):
        load_parallel("qa")


def test_skip_invalid_skips_with_one_notice(tmp_path: Path, notices) -> None:
    rows = [ROWS[0], "{oops", {"en": "No ja."}, {"en": "Empty.", "ja": ""}, {"en": "Fine.", "ja": "良い。"}]
    spec = jsonl(tmp_path / "p.jsonl", rows)
    corpus = load_parallel(spec, languages=["en", "ja"], skip_invalid=True)
    assert corpus.texts["en"] == ("Good morning.", "Fine.")
    assert len(notices()) == 1 and notices()[0].startswith(f"{spec}: skipped 3 invalid row(s)")


# --- sentences --------------------------------------------------------------------------------


def test_sentences_from_text_file_keep_repeats_with_a_notice(tmp_path: Path, notices) -> None:
    spec = text(tmp_path / "ja.txt", "おはよう。\nありがとう。\nおはよう。\n")
    sentences = load_sentences(spec, "ja")
    assert (sentences.lang, sentences.texts) == ("ja", ("おはよう。", "ありがとう。", "おはよう。"))
    assert notices() == [f"{spec}: 1 row(s) repeat an earlier row exactly (kept: a centroid is the mean over "
                         "the rows given; --dedupe keeps one)"]
    assert load_sentences(spec, "ja", dedupe=True).texts == ("おはよう。", "ありがとう。")
    assert load_sentences(spec, "ja", limit=1).texts == ("おはよう。",)


def test_sentences_of_a_parallel_file_count_repeats_of_their_own_side(tmp_path: Path, notices) -> None:
    rows = [ROWS[0], dict(ROWS[0], ja="おはようございます。"), {"en": "Morning!", "ja": "おはよう。"}]
    spec = jsonl(tmp_path / "p.jsonl", rows)
    assert load_sentences(spec, "ja").texts == ("おはよう。", "おはようございます。", "おはよう。")
    assert load_sentences(spec, "en", dedupe=True).texts == ("Good morning.", "Morning!")
    assert [n.split(": ", 1)[1].split(" (")[0] for n in notices()] == [
        "1 row(s) repeat an earlier row exactly", "dropped 1 row(s) repeating an earlier row exactly"]
    with pytest.raises(DataError, match="strict_pairs=True refuses"):
        load_sentences(spec, "ja", strict_pairs=True)


def test_sentences_blank_line_is_an_empty_sentence(tmp_path: Path) -> None:
    spec = text(tmp_path / "ja.txt", "おはよう。\n \nありがとう。\n")
    with pytest.raises(DataError, match=r"ja\.txt, line 2: 'line' is empty"):
        load_sentences(spec, "ja")
    assert len(load_sentences(spec, "ja", skip_invalid=True)) == 2


def test_sentences_from_jsonl_text_key(tmp_path: Path) -> None:
    spec = jsonl(tmp_path / "ja.jsonl", [{"text": "おはよう。"}, {"text": "またね。"}])
    assert load_sentences(spec, "ja").texts == ("おはよう。", "またね。")
    with pytest.raises(DataError, match=r"line 2: missing key 'text'"):
        load_sentences(jsonl(tmp_path / "bad.jsonl", [{"text": "おはよう。"}, {"ja": "またね。"}]), "ja")


def test_sentences_from_jsonl_language_key_and_parallel_files(tmp_path: Path) -> None:
    assert load_sentences(jsonl(tmp_path / "ja.jsonl", [{"ja": "おはよう。"}]), "ja").texts == ("おはよう。",)
    assert load_sentences(jsonl(tmp_path / "p.jsonl", ROWS), "ko").texts[0] == "좋은 아침."
    tsv = text(tmp_path / "p.tsv", "en\tja\nHi.\tやあ。\n")
    assert load_sentences(tsv, "ja").texts == ("やあ。",)
    with pytest.raises(DataError, match=r"p\.tsv: no 'fr' sentences; it has en, ja"):
        load_sentences(tsv, "fr")


def test_sentences_of_a_parallel_file_ignore_other_languages(tmp_path: Path) -> None:
    spec = jsonl(tmp_path / "p.jsonl", [ROWS[0], {"en": "Thank you.", "ja": "ありがとう。"}])
    assert load_sentences(spec, "ja").texts == ("おはよう。", "ありがとう。")


def test_sentences_of_a_parallel_file_follow_the_english_split(tmp_path: Path) -> None:
    rows = [{"en": f"Sentence {i}.", "ja": f"文{i}。"} for i in range(60)]
    spec = jsonl(tmp_path / "p.jsonl", rows)
    test_pairs = load_parallel(spec, split="test")
    assert load_sentences(spec, "ja", split="test").texts == test_pairs.texts["ja"]


def test_sentences_reject_unknown_extension(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"unknown file extension '\.md' for sentences data"):
        load_sentences(text(tmp_path / "a.md", "x"), "en")


# --- QA and MC files --------------------------------------------------------------------------


def test_qa_bundled_format(tmp_path: Path) -> None:
    qa = load_qa(jsonl(tmp_path / "qa.jsonl", QA_ROWS), "ja")
    assert qa.items == (QAItem("日本の首都は？", ("東京", "東京都")),) and qa.lang == "ja"


def test_qa_bad_rows(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"line 1: missing language key 'ko' in 'question'"):
        load_qa(jsonl(tmp_path / "qa.jsonl", QA_ROWS), "ko")
    bad = dict(QA_ROWS[0], answers={"en": []})
    with pytest.raises(DataError, match=r"line 1: expected 'answers' to be a list of at least 1"):
        load_qa(jsonl(tmp_path / "bad.jsonl", [bad]), "en")
    with pytest.raises(DataError, match=r"hf:apple/mkqa: QA data is read from files.*mkqa\.jsonl\.gz"):
        load_qa("hf:apple/mkqa", "en")


def test_bad_questions_are_skipped_with_one_notice_when_asked(tmp_path: Path, notices) -> None:
    bad_answer = dict(QA_ROWS[0], answers={"ja": []})
    spec = jsonl(tmp_path / "qa.jsonl", [bad_answer, "{not json", QA_ROWS[0]])
    assert load_qa(spec, "ja", skip_invalid=True).items == (QAItem("日本の首都は？", ("東京", "東京都")),)
    assert "qa.jsonl: skipped 2 invalid row(s) (first: line 2: malformed JSON" in notices()[-1]  # parsed first
    mc = jsonl(tmp_path / "mc.jsonl", [dict(MC_ROWS[0], answer=9), MC_ROWS[0]])
    assert len(load_mc(mc, "en", skip_invalid=True)) == 1
    assert "skipped 1 invalid row(s) (first: line 1: expected 'answer'" in notices()[-1]
    with pytest.raises(DataError, match=r"mc\.jsonl, line 1: expected 'answer'"):
        load_mc(mc, "en")


def test_mc_bundled_format(tmp_path: Path) -> None:
    mc = load_mc(jsonl(tmp_path / "mc.jsonl", MC_ROWS), "ja")
    assert mc.items == (MCItem("2+2は？", ("3", "4", "5", "6"), 1),)


@pytest.mark.parametrize("answer", [4, -1, True, "1", None])
def test_mc_answer_must_be_an_index_in_range(tmp_path: Path, answer: object) -> None:
    spec = jsonl(tmp_path / "mc.jsonl", [dict(MC_ROWS[0], answer=answer)])
    with pytest.raises(DataError, match=r"line 1: expected 'answer' to be an integer 0\.\.3"):
        load_mc(spec, "en")


def test_mc_options_must_be_strings(tmp_path: Path) -> None:
    spec = jsonl(tmp_path / "mc.jsonl", [dict(MC_ROWS[0], options={"en": ["a", None]})])
    with pytest.raises(DataError, match=r"'options' must be a string"):
        load_mc(spec, "en")


# --- bundled sets -----------------------------------------------------------------------------


@pytest.fixture
def fake_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the bundled-set lookup at a temporary package-data folder holding small sets."""
    folder = tmp_path / "bundled"
    folder.mkdir()
    rows = [{"id": f"p{i}", "en": f"Sentence {i}.", "ja": f"文{i}。"} for i in range(30)]
    jsonl(folder / "parallel.jsonl", rows)
    jsonl(folder / "qa.jsonl", QA_ROWS)
    jsonl(folder / "mc.jsonl", MC_ROWS)
    monkeypatch.setattr(catalog, "files", lambda package: tmp_path)
    return folder


def test_bundled_sets_load_by_name(fake_bundle: Path) -> None:
    assert load_parallel("parallel").name == "bundled:parallel"
    assert len(load_sentences("parallel", "ja", split="train")) + len(load_sentences("parallel", "ja", "test")) == 30
    assert load_qa("qa", "en").items[0].answers == ("Tokyo", "Tokyo City")
    assert load_mc("mc", "en").items[0].answer == 1


def test_describe_bundled(fake_bundle: Path) -> None:
    listed = {entry["name"]: entry for entry in describe_bundled()}
    assert set(listed) == {"parallel", "qa", "mc"}
    parallel = listed["parallel"]
    assert (parallel["kind"], parallel["languages"], parallel["size"]) == ("parallel", ["en", "ja"], 30)
    assert parallel["train"] + parallel["test"] == 30 and parallel["path"].endswith("parallel.jsonl")
    assert describe_bundled_set("qa") | {"path": ""} == {
        "name": "qa", "kind": "qa", "languages": ["en", "ja"], "size": 1, "train": None, "test": None, "path": ""
    }


def test_describe_unknown_bundled_name_lists_the_names() -> None:
    with pytest.raises(DataError, match=r"unknown bundled data set 'tatoeba'; bundled sets: parallel, qa, mc"):
        describe_bundled_set("tatoeba")


def test_missing_bundled_file_is_a_clear_error(fake_bundle: Path) -> None:
    (fake_bundle / "mc.jsonl").unlink()
    with pytest.raises(DataError, match="bundled data set 'mc' is missing from this installation"):
        load_mc("mc", "en")


def test_real_bundled_parallel_has_nine_languages() -> None:
    resource = catalog.bundled_resource("parallel")
    if not resource.is_file():
        pytest.skip("bundled parallel.jsonl not written yet")
    corpus = load_parallel("parallel")
    assert set(corpus.languages) == {"en", "ja", "ko", "nl", "it", "de", "fr", "es", "zh"}
    assert len(corpus) >= 300
