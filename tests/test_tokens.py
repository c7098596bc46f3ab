"""Inputs cut to the model's context: the limit, --max-tokens, the character budget and the one notice."""

import logging
from types import SimpleNamespace

import pytest
from tiny import tiny_lm
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from transfer_neurons import tokens
from transfer_neurons.errors import TransferNeuronsError
from transfer_neurons.tokens import context_limit, encode_within_context, limit_tokens


def notices(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The project's logged notices."""
    return [r.getMessage() for r in caplog.records if r.name == "transfer_neurons" and r.levelno == logging.WARNING]


def test_context_limit_comes_from_the_config_and_ignores_unset_tokenizer_limits() -> None:
    gpt2, llama = tiny_lm("gpt2"), tiny_lm("llama")
    assert gpt2.tokenizer.model_max_length > 10**20  # "no limit" as transformers spells it
    assert context_limit(gpt2) == 128  # n_positions
    assert context_limit(llama) == 128  # max_position_embeddings
    llama.tokenizer.model_max_length = 64
    assert context_limit(llama) == 64


def test_max_tokens_lowers_the_limit_but_never_raises_it() -> None:
    lm = tiny_lm("gpt2")
    limit_tokens(lm, 16)
    assert context_limit(lm) == 16
    limit_tokens(lm, 4096)
    assert context_limit(lm) == 128
    for bad in (1, 0, True, 2.5):  # the byte tokenizer adds <bos>: one more token is the least
        with pytest.raises(TransferNeuronsError, match=r"^max_tokens must be an integer of at least 2"):
            limit_tokens(lm, bad)


def test_long_inputs_keep_their_first_tokens_and_one_notice_counts_them(caplog: pytest.LogCaptureFixture) -> None:
    lm = tiny_lm("gpt2")
    texts = ["short", "x" * 500, "y" * 127, "z" * 128]
    ids = encode_within_context(lm, texts)
    assert [len(row) for row in ids] == [6, 128, 128, 128]  # <bos> + bytes, at most n_positions
    assert ids[1] == lm.tokenizer("x" * 127)["input_ids"]  # <bos> kept, the text's first 127 tokens
    assert notices(caplog) == [
        "2 of 4 sentence(s) are longer than 128 tokens (the model's context, or --max-tokens); kept their first 128 tokens"
    ]


def test_nothing_is_said_when_everything_fits(caplog: pytest.LogCaptureFixture) -> None:
    lm = tiny_lm("llama")
    assert encode_within_context(lm, ["a b", "c"]) == lm.tokenizer(["a b", "c"])["input_ids"]
    assert notices(caplog) == []


def test_a_huge_line_is_cut_to_characters_before_tokenising(monkeypatch: pytest.MonkeyPatch) -> None:
    lm = tiny_lm("gpt2")
    seen: list[int] = []
    call = type(lm.tokenizer).__call__

    def recording(self, text, *args, **kwargs):
        seen.extend(len(t) for t in ([text] if isinstance(text, str) else text))
        return call(self, text, *args, **kwargs)

    monkeypatch.setattr(type(lm.tokenizer), "__call__", recording)
    ids = encode_within_context(lm, ["é" * 10_000_000])  # 10 million characters, 20 MB of UTF-8
    assert len(ids[0]) == 128
    assert max(seen) <= 128 * tokens._CHARS_PER_TOKEN


def word_lm(limit: int) -> SimpleNamespace:
    """A model stand-in whose tokenizer makes one token of a 20-letter word, so characters run out first."""
    tok = Tokenizer(models.WordLevel({"<pad>": 0, "<bos>": 1, "w" * 20: 2}, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", pad_token="<pad>")
    return SimpleNamespace(model=SimpleNamespace(config=SimpleNamespace(max_position_embeddings=limit)),
                           tokenizer=tokenizer)


def test_the_character_budget_grows_until_the_limit_is_reached(caplog: pytest.LogCaptureFixture) -> None:
    lm = word_lm(128)  # first budget 1024 characters: about 49 words, far fewer than 128 tokens
    long, fits = " ".join(["w" * 20] * 200), " ".join(["w" * 20] * 100)
    ids = encode_within_context(lm, [long, fits])
    assert ids[0] == [1] + [2] * 127
    assert ids[1] == [1] + [2] * 100  # 2,100 characters, cut at first, yet every word is kept
    assert notices(caplog)[0].startswith("1 of 2 sentence(s) are longer than 128 tokens")
