"""Data derived from loaded sets: the fixed train/test split and seeded non-parallel pairs."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

from transfer_neurons.data.parallel import hub_language
from transfer_neurons.data.types import ParallelCorpus, ParallelPairs, Sentences, Splittable
from transfer_neurons.errors import DataError

SPLITS = ("train", "test")
_RANDOM_SWAP_TRIES = 64


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
    """Pairs whose L2 side is a seeded derangement: no hub sentence meets any of its own translations.

    A hub sentence may have several rows (several translations, or repeats); none of them may be
    paired back with it. A seeded shuffle is repaired by seeded swaps, so the result is fixed per seed.
    """
    if len(pairs) < 2:
        raise DataError(f"{pairs.name}: need at least 2 pairs to mismatch them, got {len(pairs)}")
    translations: dict[str, set[str]] = {}
    for hub, l2 in zip(pairs.hub, pairs.l2):
        translations.setdefault(hub, set()).add(l2)

    def allowed(row: int, source: int) -> bool:
        """Whether hub sentence `row` may meet the L2 sentence of row `source`."""
        return pairs.l2[source] not in translations[pairs.hub[row]]

    rng = random.Random(seed)
    order = list(range(len(pairs)))  # order[i]: the row whose L2 sentence hub sentence i meets
    rng.shuffle(order)
    for i in range(len(order)):
        if allowed(i, order[i]):
            continue
        k = _swap_partner(i, order, allowed, rng)
        if k is None:
            raise DataError(
                f"{pairs.name}: cannot mismatch the pairs: one {pairs.lang} translation covers most of them"
            )
        order[i], order[k] = order[k], order[i]
    l2 = tuple(pairs.l2[j] for j in order)
    return ParallelPairs(f"{pairs.name}#nonparallel-{seed}", pairs.hub_lang, pairs.lang, pairs.hub, l2)


def _swap_partner(
    i: int, order: list[int], allowed: Callable[[int, int], bool], rng: random.Random
) -> int | None:
    """A position k whose swap with i leaves both allowed: random tries first, then every position in turn."""

    def fits(k: int) -> bool:
        return allowed(i, order[k]) and allowed(k, order[i])

    for _ in range(_RANDOM_SWAP_TRIES):
        k = rng.randrange(len(order))
        if fits(k):
            return k
    return next((k for k in range(len(order)) if fits(k)), None)
