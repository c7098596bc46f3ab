"""In-memory data types shared by every analysis: parallel corpora, pairs, sentences, QA and MC sets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from transfer_neurons.errors import DataError


@dataclass(frozen=True)
class ParallelCorpus:
    """Aligned sentences, one equally long tuple per language code."""

    name: str
    texts: dict[str, tuple[str, ...]]

    def __post_init__(self) -> None:
        """Reject a corpus whose languages are not aligned, so every row index means one meaning."""
        if not self.texts:
            raise DataError(f"{self.name}: a parallel corpus needs at least one language")
        lengths = {lang: len(side) for lang, side in self.texts.items()}
        if len(set(lengths.values())) > 1:
            raise DataError(f"{self.name}: language sides differ in length: {lengths}")

    @property
    def languages(self) -> tuple[str, ...]:
        """Language codes in the corpus, in source order."""
        return tuple(self.texts)

    def __len__(self) -> int:
        """Number of aligned rows."""
        return len(next(iter(self.texts.values())))

    def _side(self, lang: str) -> tuple[str, ...]:
        """One language's sentences, or a DataError naming the languages that exist."""
        if lang not in self.texts:
            raise DataError(f"{self.name}: no language {lang!r} (has: {', '.join(self.languages)})")
        return self.texts[lang]

    def pairs(self, hub: str, lang: str) -> ParallelPairs:
        """The hub-language side and the L2 side as aligned pairs."""
        if hub == lang:
            raise DataError(f"{self.name}: hub and L2 language are both {lang!r}; they must differ")
        return ParallelPairs(self.name, hub, lang, self._side(hub), self._side(lang))

    def sentences(self, lang: str) -> Sentences:
        """The monolingual side of one language, one sentence per row (repeats kept: each row counts)."""
        return Sentences(self.name, lang, self._side(lang))


@dataclass(frozen=True)
class ParallelPairs:
    """Hub-language (usually English) sentences and their L2 counterparts, aligned by index."""

    name: str
    hub_lang: str
    lang: str
    hub: tuple[str, ...]
    l2: tuple[str, ...]

    def __post_init__(self) -> None:
        """Reject unaligned sides, which would silently pair the wrong sentences."""
        if len(self.hub) != len(self.l2):
            raise DataError(f"{self.name}: {len(self.hub)} {self.hub_lang} vs {len(self.l2)} {self.lang} sentences")

    def __len__(self) -> int:
        """Number of pairs."""
        return len(self.hub)


@dataclass(frozen=True)
class Sentences:
    """Monolingual sentences of one language."""

    name: str
    lang: str
    texts: tuple[str, ...]

    def __len__(self) -> int:
        """Number of sentences."""
        return len(self.texts)


@dataclass(frozen=True)
class QAItem:
    """One question with its answers: answers[0] is canonical, the rest are aliases."""

    question: str
    answers: tuple[str, ...]


@dataclass(frozen=True)
class QASet:
    """Open questions of one language."""

    name: str
    lang: str
    items: tuple[QAItem, ...]

    def __len__(self) -> int:
        """Number of questions."""
        return len(self.items)


@dataclass(frozen=True)
class MCItem:
    """One multiple-choice question; answer is the 0-based index of the right option."""

    question: str
    options: tuple[str, ...]
    answer: int


@dataclass(frozen=True)
class MCSet:
    """Multiple-choice questions of one language."""

    name: str
    lang: str
    items: tuple[MCItem, ...]

    def __len__(self) -> int:
        """Number of questions."""
        return len(self.items)


Splittable = TypeVar("Splittable", ParallelCorpus, Sentences)
"""Data whose rows the train/test split and the row selection apply to."""
