"""Data derived from loaded sets: the fixed train/test split and seeded non-parallel pairs."""

from __future__ import annotations

import hashlib
import random
from typing import TypeVar

from transfer_neurons.data.parallel import hub_language
from transfer_neurons.data.types import ParallelCorpus, ParallelPairs, Sentences
from transfer_neurons.errors import DataError

SPLITS = ("train", "test")
_DERANGEMENT_TRIES = 1000

Splittable = TypeVar("Splittable", ParallelCorpus, Sentences)


def is_test_sentence(text: str) -> bool:
    """The split rule: a row is test data iff sha256 of its hub text is 0 mod 3 (same on every machine)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") % 3 == 0


def check_split(split: str | None) -> None:
    """Reject split names other than None, "train" and "test"."""
    if split is not None and split not in SPLITS:
        raise DataError(f"unknown split {split!r}; expected 'train', 'test' or none (all rows)")


def split_of(corpus: Splittable, split: str | None) -> Splittable:
    """Rows of the train (~2/3) or test (~1/3) split, keyed on the hub (English) text, so test rows never leak."""
    check_split(split)
    if split is None:
        return corpus
    want_test = split == "test"
    if isinstance(corpus, Sentences):
        texts = tuple(t for t in corpus.texts if is_test_sentence(t) == want_test)
        return Sentences(f"{corpus.name}#{split}", corpus.lang, texts)
    keep = [is_test_sentence(t) == want_test for t in corpus.texts[hub_language(corpus.languages)]]
    texts = {lang: tuple(t for t, k in zip(side, keep) if k) for lang, side in corpus.texts.items()}
    return ParallelCorpus(f"{corpus.name}#{split}", texts)


def nonparallel_pairs(pairs: ParallelPairs, seed: int) -> ParallelPairs:
    """Pairs whose L2 side is a seeded derangement: no hub sentence keeps its own (or an identical) translation."""
    if len(pairs) < 2:
        raise DataError(f"{pairs.name}: need at least 2 pairs to mismatch them, got {len(pairs)}")
    rng = random.Random(seed)
    order = list(range(len(pairs)))
    for _ in range(_DERANGEMENT_TRIES):
        rng.shuffle(order)
        if all(pairs.l2[j] != pairs.l2[i] for i, j in enumerate(order)):
            l2 = tuple(pairs.l2[j] for j in order)
            return ParallelPairs(f"{pairs.name}#nonparallel-{seed}", pairs.hub_lang, pairs.lang, pairs.hub, l2)
    raise DataError(f"{pairs.name}: cannot mismatch the pairs: one {pairs.lang} translation covers most of them")
