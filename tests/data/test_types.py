"""The in-memory data types: alignment checks, pairs and monolingual sides."""

import pytest

from transfer_neurons.data import ParallelCorpus, ParallelPairs, Sentences
from transfer_neurons.errors import DataError


def corpus() -> ParallelCorpus:
    """A three-row English-Japanese-Korean corpus whose Japanese side repeats one sentence."""
    return ParallelCorpus("toy", {"en": ("a", "b", "c"), "ja": ("あ", "い", "あ"), "ko": ("가", "나", "다")})


def test_languages_and_length() -> None:
    assert corpus().languages == ("en", "ja", "ko")
    assert len(corpus()) == 3


def test_pairs_align_hub_and_l2() -> None:
    pairs = corpus().pairs("en", "ko")
    assert (pairs.name, pairs.hub_lang, pairs.lang) == ("toy", "en", "ko")
    assert list(zip(pairs.hub, pairs.l2)) == [("a", "가"), ("b", "나"), ("c", "다")]
    assert len(pairs) == 3


def test_sentences_keep_every_row_in_order() -> None:
    assert corpus().sentences("ja") == Sentences("toy", "ja", ("あ", "い", "あ"))  # every row counts


def test_unknown_language_names_the_available_ones() -> None:
    with pytest.raises(DataError, match="no language 'fr'.*en, ja, ko"):
        corpus().pairs("en", "fr")


def test_hub_equal_to_l2_is_rejected() -> None:
    with pytest.raises(DataError, match="must differ"):
        corpus().pairs("en", "en")


def test_unaligned_sides_are_rejected() -> None:
    with pytest.raises(DataError, match="differ in length"):
        ParallelCorpus("bad", {"en": ("a", "b"), "ja": ("あ",)})
    with pytest.raises(DataError, match="1 en vs 0 ja"):
        ParallelPairs("bad", "en", "ja", ("a",), ())


def test_corpus_needs_a_language() -> None:
    with pytest.raises(DataError, match="at least one language"):
        ParallelCorpus("empty", {})
