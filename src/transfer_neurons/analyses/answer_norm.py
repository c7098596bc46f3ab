"""Language-aware answer normalisation and token-level F1 / exact match for open QA (method.md §6.8).

Follows SQuAD's and MKQA's official evaluation, adapted per language:

1. lowercase (str.lower, Unicode-aware);
2. elided articles (it l'/un', fr l') are replaced by a space *before* punctuation is stripped,
   so "l'aeroporto" becomes "aeroporto", not "laeroporto";
3. every character of a Unicode punctuation category (P*: ASCII and CJK marks such as 。、！？「」)
   is deleted, as SQuAD does ("U.S." -> "us");
4. whole-word articles of the language are removed (en a/an/the, nl de/het/een, it il/lo/la/i/gli/le/
   un/uno/una, de der/die/das/den/dem/des/ein/eine/einen/einem/einer/eines, fr le/la/les/un/une/des,
   es el/la/los/las/un/una/unos/unas, pt o/a/os/as/um/uma/uns/umas); other languages keep every word;
5. tokens: whitespace words, except that every Han, Hiragana, Katakana and CJK-symbol character is its
   own token (MKQA's "mixed segmentation" for Japanese and Chinese; a Latin word inside a Japanese
   answer such as "Tokyo" stays one token). Korean is tokenised on whitespace like MKQA's official
   evaluation, so a particle glued to a word ("파리입니다" vs "파리") makes the word not match.

F1 is the harmonic mean of token precision and recall over the multiset overlap; exact match compares
the token sequences. Against several gold answers (canonical + aliases) the best score counts.
Both empty -> 1.0 (as SQuAD v2), one empty -> 0.0.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence

ARTICLES: dict[str, tuple[str, ...]] = {
    "en": ("a", "an", "the"),
    "nl": ("de", "het", "een"),
    "it": ("il", "lo", "la", "i", "gli", "le", "un", "uno", "una"),
    "de": ("der", "die", "das", "den", "dem", "des", "ein", "eine", "einen", "einem", "einer", "eines"),
    "fr": ("le", "la", "les", "un", "une", "des"),
    "es": ("el", "la", "los", "las", "un", "una", "unos", "unas"),
    "pt": ("o", "a", "os", "as", "um", "uma", "uns", "umas"),
}
"""Whole-word articles removed per language (after lowercasing and stripping punctuation)."""

ELIDED_ARTICLES: dict[str, tuple[str, ...]] = {
    "it": ("l", "un"),
    "fr": ("l",),
}
"""Articles written with an apostrophe before a vowel (l'acqua, un'isola), removed with the apostrophe."""

MIXED_SEGMENTATION = frozenset({"ja", "zh", "zh_cn", "zh_tw", "zh_hk"})
"""Languages whose CJK characters are one token each (no spaces between words)."""

_APOSTROPHES = "'\u2019"
_WORD_RE = {lang: re.compile(r"\b(?:" + "|".join(words) + r")\b") for lang, words in ARTICLES.items()}
_ELIDED_RE = {
    lang: re.compile(r"\b(?:" + "|".join(words) + r")[" + _APOSTROPHES + r"]") for lang, words in ELIDED_ARTICLES.items()
}


def _is_punctuation(ch: str) -> bool:
    """Unicode punctuation (categories Pc, Pd, Ps, Pe, Pi, Pf, Po), ASCII and CJK alike."""
    return unicodedata.category(ch).startswith("P")


def _is_cjk(ch: str) -> bool:
    """Han ideographs, kana and CJK symbols: characters written without spaces between words."""
    code = ord(ch)
    return (
        0x3040 <= code <= 0x30FF  # Hiragana, Katakana
        or 0x31F0 <= code <= 0x31FF  # Katakana phonetic extensions
        or 0x3400 <= code <= 0x4DBF  # CJK extension A
        or 0x4E00 <= code <= 0x9FFF  # CJK unified ideographs
        or 0xF900 <= code <= 0xFAFF  # CJK compatibility ideographs
        or 0xFF66 <= code <= 0xFF9F  # half-width Katakana
        or 0x20000 <= code <= 0x2FA1F  # CJK extensions B.. and compatibility supplement
        or 0x3005 <= code <= 0x3007  # 々 〆 〇
    )


def normalize_answer(text: str, lang: str) -> str:
    """Lowercased text without punctuation and the language's articles, whitespace collapsed."""
    text = text.lower()
    if lang in _ELIDED_RE:
        text = _ELIDED_RE[lang].sub(" ", text)
    text = "".join(ch for ch in text if not _is_punctuation(ch))
    if lang in _WORD_RE:
        text = _WORD_RE[lang].sub(" ", text)
    return " ".join(text.split())


def answer_tokens(text: str, lang: str) -> list[str]:
    """Normalised tokens: whitespace words, or one token per CJK character for Japanese and Chinese."""
    normalised = normalize_answer(text, lang)
    if lang not in MIXED_SEGMENTATION:
        return normalised.split()
    tokens: list[str] = []
    word = ""
    for ch in normalised:
        if _is_cjk(ch) or ch.isspace():
            tokens.extend(word.split())
            word = ""
            if not ch.isspace():
                tokens.append(ch)
        else:
            word += ch
    tokens.extend(word.split())
    return tokens


def token_f1(prediction: str, gold: str, lang: str) -> float:
    """Token-level F1 between one prediction and one gold answer (SQuAD's multiset overlap)."""
    pred, ref = answer_tokens(prediction, lang), answer_tokens(gold, lang)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, gold: str, lang: str) -> float:
    """1.0 when the normalised token sequences are identical, else 0.0."""
    return float(answer_tokens(prediction, lang) == answer_tokens(gold, lang))


def best_f1(prediction: str, golds: Sequence[str], lang: str) -> float:
    """The best token F1 over the gold answer and its aliases."""
    return max(token_f1(prediction, gold, lang) for gold in golds)


def best_exact_match(prediction: str, golds: Sequence[str], lang: str) -> float:
    """1.0 when the prediction matches the gold answer or any alias after normalisation."""
    return max(exact_match(prediction, gold, lang) for gold in golds)
