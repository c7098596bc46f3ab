"""Captured states, once per (texts, deactivated neurons, mode), shared by every analysis that asks.

Similarity, activation patterns, alignment and latent spaces all read last-token internals
of the same sentences under the same conditions. A `StateProvider` runs the model once per
such triple, keeping every quantity any of its users declared (`want`, e.g. h and a), and
hands the same tensors to each later request. It holds at most `max_bytes` of states and
forgets the least recently used beyond that, so memory stays bounded on large models at the
price of a recapture.

Undeactivated states and deactivation at the last token (mode `last`, the analyses' mode)
share everything before each sentence's last token, so the provider runs those prefixes
once per sentence set (capture.run_prefixes, kept in the same memory budget) and each
condition then runs one token per sentence (capture.capture_last).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from .capture import Internals, PrefixBatch, as_quantities, as_texts, capture, capture_last, run_prefixes
from .distributed import gather_rows, shard, world_size
from .interventions import Intervention, Patch, Scale, Zero, active_intervention, deactivated
from .models.loaded import LoadedModel

DEFAULT_MAX_BYTES = 4 << 30
"""States kept in memory by default (4 GiB): a whole (type, language) group of the default study on small models."""


@dataclass(frozen=True)
class StateKey:
    """What identifies one capture: the sentences, the neurons, the positions and what the neurons are set to."""

    texts: str  # sha256 of the sentences in order
    neurons: str  # sha256 of the [n, 2] neuron array, or "none"
    mode: str
    intervention: str  # its spec; mean and patch also name their reference data (the object)


def texts_digest(texts: Sequence[str]) -> str:
    """A checksum of sentences in order (NUL-separated UTF-8)."""
    return hashlib.sha256("\0".join(texts).encode("utf-8")).hexdigest()


def neurons_digest(neurons: np.ndarray | None) -> str:
    """A checksum of a neuron set as given (order kept), or "none"."""
    if neurons is None:
        return "none"
    return hashlib.sha256(np.ascontiguousarray(neurons, dtype=np.int64).tobytes()).hexdigest()


def intervention_key(intervention: Intervention) -> str:
    """A name of an intervention that differs whenever its effect can: zero and scale:F are named by their spec,
    mean and patch carry reference data, so each object is its own."""
    if isinstance(intervention, (Zero, Scale)):
        return intervention.spec
    return f"{intervention.spec}#{id(intervention)}"


def _nbytes(held: Internals | list[PrefixBatch] | None) -> int:
    """Memory held by captured states or by prefix caches."""
    if isinstance(held, list):
        return sum(prefix.nbytes for prefix in held)
    return sum(t.numel() * t.element_size() for t in vars(held).values() if isinstance(t, torch.Tensor))


class StateProvider:
    """Last-token internals of a model, captured once per StateKey and reused."""

    def __init__(
        self,
        lm: LoadedModel,
        batch_size: int = 16,
        want: Sequence[str] = ("h",),
        max_bytes: int = DEFAULT_MAX_BYTES,
    ):
        self.lm = lm
        self.batch_size = batch_size
        self.want = tuple(dict.fromkeys(want))  # captured with every request, whatever it asks for
        self.max_bytes = max_bytes
        self.captures = 0  # model passes over a whole sentence set (for tests and progress)
        self.prefix_runs = 0  # sentence sets whose prefixes ran (for tests)
        self._cache: OrderedDict[StateKey | str, Internals | list[PrefixBatch] | None] = OrderedDict()

    def get(
        self,
        texts: Sequence[str],
        neurons: np.ndarray | None = None,
        mode: str = "last",
        want: Sequence[str] = ("h",),
        progress: str | None = None,
    ) -> Internals:
        """States of `texts` with `neurons` deactivated at `mode` positions (None: undeactivated)."""
        texts, want = as_texts(texts), as_quantities(want)
        if neurons is None:
            key = StateKey(texts_digest(texts), "none", "none", "none")
        else:
            key = StateKey(texts_digest(texts), neurons_digest(neurons), mode, intervention_key(active_intervention()))
        held = self._cache.get(key)
        if held is not None and all(getattr(held, q) is not None for q in want):
            self._cache.move_to_end(key)
            return held
        quantities = tuple(dict.fromkeys((*self.want, *want)))
        states = self._capture(texts, neurons, mode, quantities, progress)
        self._keep(key, states)
        return states

    def _capture(
        self, texts: Sequence[str], neurons: np.ndarray | None, mode: str, want: Sequence[str], progress: str | None
    ) -> Internals:
        """One pass of the model over the sentences, under deactivation when neurons are given.

        Under torchrun each rank runs its share of the sentences (of the prefix batches, when they are shared)
        and every rank receives all rows.
        """
        self.captures += 1
        prefixes = self._prefixes(texts) if self._shares_prefix(neurons, mode) else None
        if prefixes is not None:  # under torchrun: this rank's batches of the one-process batching
            rows = sorted(i for prefix in prefixes for i in prefix.indices)
        else:  # fewer sentences than ranks: every rank runs them all, so none is left without work
            rows = shard(range(len(texts))) if len(texts) >= world_size() else range(len(texts))
        with nullcontext() if neurons is None else deactivated(self.lm, neurons, mode):
            if prefixes is None:
                local = capture(self.lm, [texts[i] for i in rows], want, self.batch_size, progress=progress)
            else:
                local = capture_last(self.lm, prefixes, want, progress=progress)
        if len(rows) == len(texts):  # one process, or every rank ran every row
            return local
        return Internals(**{q: gather_rows(getattr(local, q), rows, len(texts)) for q in want})

    @staticmethod
    def _shares_prefix(neurons: np.ndarray | None, mode: str) -> bool:
        """Whether this capture leaves all but the last token as undeactivated: no neurons, or mode `last`
        with an intervention that needs only the positions (patch looks its source up by the whole prompt)."""
        return neurons is None or (mode == "last" and not isinstance(active_intervention(), Patch))

    def _prefixes(self, texts: Sequence[str]) -> list[PrefixBatch] | None:
        """This rank's batches of the sentences' prefixes, run once and kept (None: a sentence has a single token)."""
        key = f"prefixes:{texts_digest(texts)}"
        if key not in self._cache:
            self.prefix_runs += 1
            self._keep(key, run_prefixes(self.lm, texts, self.batch_size))
        self._cache.move_to_end(key)
        return self._cache[key]

    def _keep(self, key: StateKey | str, states: Internals | list[PrefixBatch] | None) -> None:
        """Remember states, forgetting the least recently used beyond max_bytes."""
        self._cache[key] = states
        self._cache.move_to_end(key)
        while len(self._cache) > 1 and sum(_nbytes(s) for s in self._cache.values() if s is not None) > self.max_bytes:
            self._cache.popitem(last=False)


def provider_for(source: LoadedModel | StateProvider, batch_size: int = 16) -> StateProvider:
    """The given provider, or a fresh one over a model (an analysis run on its own)."""
    return source if isinstance(source, StateProvider) else StateProvider(source, batch_size)
