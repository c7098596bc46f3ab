"""Inputs within the model's context: the token limit, and tokenisation that truncates to it with one notice.

The limit is the smallest of the model's position limit (config `max_position_embeddings` or
`n_positions`) and the tokenizer's `model_max_length` when that is a real number; `--max-tokens`
(limit_tokens) lowers the latter. Text is cut to a character budget before tokenising, so a
10 MB line never becomes millions of tokens.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from .errors import TransferNeuronsError
from .models.loaded import LoadedModel

LOG = logging.getLogger("transfer_neurons")
_UNSET_MAX_LENGTH = 10**7  # tokenizers without a limit report int(1e30); no real context is this long
_CHARS_PER_TOKEN = 8  # first character budget per allowed token, doubled while a cut text is too short
_POSITION_KEYS = ("max_position_embeddings", "n_positions")


def context_limit(lm: LoadedModel) -> int | None:
    """Most tokens (special tokens included) one input may have, or None when neither model nor tokenizer says."""
    config = lm.model.config
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    limits = [getattr(text_config, key, None) for key in _POSITION_KEYS]
    limits.append(getattr(lm.tokenizer, "model_max_length", None))
    known = [value for value in limits if isinstance(value, int) and 0 < value < _UNSET_MAX_LENGTH]
    return min(known) if known else None


def limit_tokens(lm: LoadedModel, max_tokens: int) -> None:
    """Cut every later input to at most max_tokens tokens (the --max-tokens option); the model's limit still applies."""
    least = lm.tokenizer.num_special_tokens_to_add(pair=False) + 1
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < least:
        raise TransferNeuronsError(
            f"max_tokens must be an integer of at least {least} (special tokens plus one), got {max_tokens!r}",
            option="max_tokens",
        )
    lm.tokenizer.model_max_length = max_tokens


def encode_within_context(lm: LoadedModel, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text (special tokens included), cut to context_limit; one notice counts the cut ones."""
    limit = context_limit(lm)
    if limit is None or not texts:
        return lm.tokenizer(list(texts))["input_ids"]
    budget = limit * _CHARS_PER_TOKEN
    encoded = _encode(lm, [text[:budget] for text in texts], limit + 1)  # limit + 1 tokens: "too long"
    truncated = 0
    for i, text in enumerate(texts):
        cut = budget
        while len(encoded[i]) <= limit and len(text) > cut:  # the character cut fell short of the limit
            cut *= 2
            encoded[i] = _encode(lm, [text[:cut]], limit + 1)[0]
        if len(encoded[i]) > limit:
            encoded[i] = _encode(lm, [text[:cut]], limit)[0]
            truncated += 1
    if truncated:
        LOG.warning(
            "%d of %d sentence(s) are longer than %d tokens (the model's context, or --max-tokens); "
            "kept their first %d tokens",
            truncated, len(texts), limit, limit,
        )
    return encoded


def _encode(lm: LoadedModel, texts: list[str], max_length: int) -> list[list[int]]:
    """Token ids with special tokens, each cut to max_length tokens."""
    return lm.tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
