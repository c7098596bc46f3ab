"""A loaded model as every analysis receives it: weights, tokenizer, adapter view and identity.

Its own module, below `capture` and `loading`, so that loading may check a declared adapter
with `capture` without the two importing each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from transformers import PreTrainedTokenizerBase

from .adapters import ModelView


@dataclass
class LoadedModel:
    """A model, its tokenizer and adapter view, and the identity results record."""

    model: torch.nn.Module
    tokenizer: PreTrainedTokenizerBase
    view: ModelView
    name: str
    spec: str | None = None  # the model spec it was loaded from; None for a model built in memory
    revision: str | None = None  # the revision asked for (hub ids only)
    identify: Callable[[], dict] | None = field(default=None, repr=False)  # computes the fingerprint (load_model)
    _fingerprint: dict | None = field(default=None, repr=False)

    def fingerprint(self) -> dict:
        """What names these weights (loading.model_fingerprint of the source; computed once)."""
        if self._fingerprint is None:
            self._fingerprint = {"kind": "in-memory", "name": self.name} if self.identify is None else self.identify()
        return self._fingerprint
