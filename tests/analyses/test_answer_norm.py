import pytest

from transfer_neurons.analyses.answer_norm import (
    answer_tokens,
    best_exact_match,
    best_f1,
    exact_match,
    normalize_answer,
    token_f1,
)


@pytest.mark.parametrize(
    ("text", "lang", "expected"),
    [
        ("The Eiffel Tower!", "en", "eiffel tower"),
        ("An apple, a day", "en", "apple day"),
        ("Theater", "en", "theater"),  # articles only as whole words
        ("Het Rijksmuseum", "nl", "rijksmuseum"),
        ("de kat en een hond", "nl", "kat en hond"),
        ("Il Colosseo", "it", "colosseo"),
        ("L'aeroporto di Roma", "it", "aeroporto di roma"),
        ("un'isola e gli alberi", "it", "isola e alberi"),
        ("Die Zugspitze", "de", "zugspitze"),
        ("Eines Tages der Rhein", "de", "tages rhein"),
        ("« La Seine »", "fr", "seine"),
        ("l'Académie française", "fr", "académie française"),
        ("¿El Museo del Prado?", "es", "museo del prado"),
        ("Los Andes y una montaña", "es", "andes y montaña"),
        ("The Hague", "nl", "the hague"),  # English article kept in Dutch
        ("東京です。", "ja", "東京です"),
        ("「パリ」、フランス！", "ja", "パリフランス"),
        ("巴黎？", "zh", "巴黎"),
        ("파리입니다.", "ko", "파리입니다"),
    ],
)
def test_normalize_answer_per_language(text, lang, expected):
    assert normalize_answer(text, lang) == expected


@pytest.mark.parametrize(
    ("text", "lang", "expected"),
    [
        ("パリです。", "ja", ["パ", "リ", "で", "す"]),
        ("東京、Tokyo！", "ja", ["東", "京", "tokyo"]),  # Latin words stay whole
        ("富士山 3776 m", "ja", ["富", "士", "山", "3776", "m"]),
        ("北京。", "zh", ["北", "京"]),
        ("서울 특별시", "ko", ["서울", "특별시"]),  # Korean: whitespace words, as MKQA
        ("New  York\tCity", "en", ["new", "york", "city"]),
    ],
)
def test_answer_tokens_segment_cjk_per_character(text, lang, expected):
    assert answer_tokens(text, lang) == expected


def test_f1_and_em_after_normalisation():
    assert token_f1("the Eiffel tower", "Eiffel Tower", "en") == 1.0
    assert exact_match("the Eiffel tower", "Eiffel Tower", "en") == 1.0
    # pred {paris, is, capital} vs gold {paris, france}: 1 common; P = 1/3, R = 1/2, F1 = 2/5
    assert token_f1("Paris is the capital", "Paris, France", "en") == pytest.approx(0.4)
    assert exact_match("Paris is the capital", "Paris, France", "en") == 0.0
    # repeated tokens count as a multiset: pred [a, a] vs gold [a]: common 1, P 1/2, R 1 -> 2/3
    assert token_f1("rome rome", "rome", "en") == pytest.approx(2 / 3)


def test_japanese_character_f1():
    # pred パ リ で す (4) vs gold パ リ (2): common 2, P 1/2, R 1 -> F1 2/3
    assert token_f1("パリです。", "パリ", "ja") == pytest.approx(2 / 3)
    # 東京都 vs 京都: chars {東,京,都} vs {京,都}: common 2, P 2/3, R 1 -> 0.8
    assert token_f1("東京都", "京都", "ja") == pytest.approx(0.8)
    assert exact_match("「東京」", "東京", "ja") == 1.0
    assert exact_match("東 京", "東京", "ja") == 1.0  # spaces between CJK characters do not matter


def test_empty_answers():
    assert token_f1("", "Paris", "en") == 0.0
    assert token_f1("the", "a", "en") == 1.0  # both empty after removing articles
    assert exact_match("!!!", "Paris", "en") == 0.0


def test_best_over_aliases():
    golds = ("Tokio", "Tokyo")
    assert best_f1("Tokyo city", golds, "nl") == pytest.approx(2 / 3)
    assert best_exact_match("tokyo", golds, "nl") == 1.0
    assert best_exact_match("Kyoto", golds, "nl") == 0.0
    # the alias with the best F1 counts, not the first: pred "new york city"
    assert best_f1("New York City", ("NYC", "New York"), "en") == pytest.approx(0.8)
