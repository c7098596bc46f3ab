"""The data options on the command line: several translations and repeats accepted with one notice,
--strict-pairs, --dedupe, --limit through the loaders, and --max-tokens on a tiny saved model."""

import argparse

import numpy as np
import pytest
from tiny import save_model, tiny_lm, write_jsonl

from transfer_neurons.cli import main
from transfer_neurons.cli.common import add_data_args, pairs_from_args, sentences_from_args
from transfer_neurons.outputs import load_npy

ROWS = [
    {"en": "What do you want?", "ja": "何が欲しいの？"},
    {"en": "I like green tea.", "ja": "緑茶が好きです。"},
    {"en": "What do you want?", "ja": "何がほしいですか。"},  # another translation, as Tatoeba gives
    {"en": "I like green tea.", "ja": "緑茶が好きです。"},  # an exact repeat
    {"en": "Where is the station?", "ja": "駅はどこですか。"},
]


def data_args(*argv: str) -> argparse.Namespace:
    """The data options as a command parses them."""
    parser = argparse.ArgumentParser()
    add_data_args(parser)
    return parser.parse_args(list(argv))


def test_pairs_keep_every_row_unless_deduplicated(tmp_path) -> None:
    spec = str(write_jsonl(tmp_path / "pairs.jsonl", ROWS))
    assert len(pairs_from_args(data_args(), spec, "en", "ja", "train")) == 5
    assert pairs_from_args(data_args("--dedupe"), spec, "en", "ja", "train").l2 == (
        "何が欲しいの？", "緑茶が好きです。", "何がほしいですか。", "駅はどこですか。")
    assert pairs_from_args(data_args("--limit", "2"), spec, "en", "ja", "train").hub == (
        "What do you want?", "I like green tea.")
    strict = pairs_from_args(data_args("--strict-pairs", "--skip-invalid"), spec, "en", "ja", "train")
    assert strict.l2 == ("何が欲しいの？", "緑茶が好きです。", "緑茶が好きです。", "駅はどこですか。")


def test_pairs_of_one_language_from_a_file_of_several_pairs(tmp_path) -> None:
    rows = [*ROWS, {"en": "Good night.", "ko": "잘 자요."}]
    spec = str(write_jsonl(tmp_path / "pairs.jsonl", rows))
    assert len(pairs_from_args(data_args(), spec, "en", "ja", "train")) == 5
    assert pairs_from_args(data_args(), spec, "en", "ko", "train").l2 == ("잘 자요.",)


def test_sentences_count_repeats_unless_deduplicated(tmp_path) -> None:
    spec = str(write_jsonl(tmp_path / "pairs.jsonl", ROWS))
    assert sentences_from_args(data_args(), spec, "en", "train").texts.count("What do you want?") == 2
    assert sentences_from_args(data_args("--dedupe"), spec, "en", "train").texts == (
        "What do you want?", "I like green tea.", "Where is the station?")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("data-options")
    return save_model(tiny_lm("gpt2"), root / "gpt2")  # n_positions = 128


def test_centroids_accept_tatoeba_style_data_with_one_notice(model, tmp_path, capsys) -> None:
    data = str(write_jsonl(tmp_path / "pairs.jsonl", ROWS))
    common = ["centroids", "--type", "type1", "--lang", "ja", "--centroid-data", data, "--model", str(model)]
    assert main([*common, "--out", str(tmp_path / "all")]) == 0
    err = capsys.readouterr().err
    assert err.count("row(s) give an earlier en sentence another translation") == 1
    assert "1 row(s) give an earlier en sentence another translation" in err
    assert "1 row(s) repeat an earlier row exactly" in err and "--dedupe" in err
    assert main([*common, "--dedupe", "--out", str(tmp_path / "distinct")]) == 0
    capsys.readouterr()
    assert not np.array_equal(load_npy(tmp_path / "all/centroids.npy"), load_npy(tmp_path / "distinct/centroids.npy"))


def test_strict_pairs_is_one_line_naming_the_options(model, tmp_path, capsys) -> None:
    data = str(write_jsonl(tmp_path / "pairs.jsonl", ROWS))
    argv = ["centroids", "--type", "type1", "--lang", "ja", "--centroid-data", data, "--model", str(model),
            "--strict-pairs", "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]  # not progress bars
    assert len(err) == 1 and "line 3: en sentence 'What do you want?' also appears at line 1" in err[0]
    assert "--skip-invalid" in err[0] and "--strict-pairs" in err[0] and "skip_invalid=True" not in err[0]


def test_sentences_longer_than_the_context_or_max_tokens_are_cut(model, tmp_path, capsys) -> None:
    data = tmp_path / "ja.txt"
    data.write_text("猫が寝ている。\n" + "とても長い文。" * 200 + "\n", encoding="utf-8")  # 4,200 bytes
    common = ["centroids", "--type", "type2", "--lang", "ja", "--centroid-data", str(data), "--model", str(model)]
    assert main([*common, "--out", str(tmp_path / "context")]) == 0
    assert "1 of 2 sentence(s) are longer than 128 tokens" in capsys.readouterr().err
    assert main([*common, "--max-tokens", "8", "--out", str(tmp_path / "eight")]) == 0
    assert "2 of 2 sentence(s) are longer than 8 tokens" in capsys.readouterr().err
    assert main([*common, "--max-tokens", "1", "--out", str(tmp_path / "one")]) == 2
    assert "--max-tokens must be an integer of at least 2" in capsys.readouterr().err
