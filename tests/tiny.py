"""Tiny random models and a byte-level tokenizer, built in code: no downloads."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

from transfer_neurons.models.loaded import LoadedModel
from transfer_neurons.models.loading import prepare

ARCHITECTURES = (
    "llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3_text",
    "gpt2", "gpt_neox", "phi3", "olmo2",
    "cohere", "cohere2", "bloom",
)
SANDWICH = ("gemma2", "gemma3_text", "olmo2")

_COMMON = dict(
    vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
    bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False,
)
_SPECIAL = {
    "gpt2": dict(vocab_size=300, n_embd=32, n_inner=64, n_layer=4, n_head=4, n_positions=128,
                 bos_token_id=1, eos_token_id=2),
    "gpt_neox": dict(_COMMON, use_parallel_residual=True),
    "gemma2": dict(_COMMON, head_dim=8, query_pre_attn_scalar=8, sliding_window=16),
    "gemma3_text": dict(_COMMON, head_dim=8, query_pre_attn_scalar=8, sliding_window=16),
    "qwen3": dict(_COMMON, head_dim=8),
    "cohere": dict(_COMMON, logit_scale=0.5),  # not 1, so a head that forgets the scale is caught
    "cohere2": dict(_COMMON, logit_scale=0.5, sliding_window=16),
    "bloom": dict(vocab_size=300, hidden_size=16, n_layer=4, n_head=4,  # d_ff = 4 x hidden = 64
                  bos_token_id=1, eos_token_id=2, pad_token_id=0),
}


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer that adds <bos> to every sentence, like most LMs do."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {"<pad>": 0, "<bos>": 1, "<eos>": 2}
    vocab.update({ch: i + 3 for i, ch in enumerate(sorted(alphabet))})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
         pre_tokenizers.Split(pattern="", behavior="isolated")]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"
    )


def tiny_config(model_type: str, **changes):
    """The tiny models' config of one architecture (4 layers, width 32, d_ff 64), with `changes` applied."""
    return AutoConfig.for_model(model_type, **{**_SPECIAL.get(model_type, _COMMON), **changes})


def tiny_lm(model_type: str, padding_side: str = "right", seed: int = 0) -> LoadedModel:
    """A randomly initialised 4-layer model of one architecture, in eval mode, float32."""
    torch.manual_seed(seed)
    config = tiny_config(model_type)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():  # random norm gains, so gain handling is exercised
        for name, param in model.named_parameters():
            if "norm" in name or "ln" in name:
                param.add_(0.3 * torch.randn_like(param))
    tokenizer = byte_tokenizer()
    tokenizer.padding_side = padding_side
    return prepare(model, tokenizer, f"tiny-{model_type}")


def save_model(lm: LoadedModel, folder: Path) -> Path:
    """Save a model and its tokenizer into folder, for commands that take --model FOLDER."""
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    return folder


def write_jsonl(path: Path, rows: Iterable[dict]) -> Path:
    """Write rows as UTF-8 JSON lines (non-ASCII kept readable)."""
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


SENTENCES = (
    "The cat sleeps.",
    "Il gatto dorme sul divano tutto il giorno.",
    "猫が寝ている。",
    "De kat slaapt.",
    "고양이가 잔다.",
    "Where is the station? I have been walking for an hour.",
)


def assert_same_ranking(got, want, scores, atol: float = 1e-6) -> None:
    """Two top-n rankings ([n, 2] (layer, neuron) rows) agree up to ties within atol.

    Scores are float sums; another CPU, thread count or batching changes them in the last
    digits, so neurons whose reference scores lie within atol may trade places, and a
    neuron may enter or leave at the cut-off only if it ties the cut-off score.
    """
    got, want = np.asarray(got).reshape(-1, 2), np.asarray(want).reshape(-1, 2)
    assert got.shape == want.shape, f"{len(got)} neurons vs {len(want)}"
    s_got = scores[got[:, 0], got[:, 1]]
    s_want = scores[want[:, 0], want[:, 1]]
    np.testing.assert_allclose(s_got, s_want, rtol=0, atol=atol)  # rank by rank, the same score
    cutoff = s_want.min()
    for layer, neuron in {tuple(r) for r in got.tolist()} ^ {tuple(r) for r in want.tolist()}:
        assert abs(scores[layer, neuron] - cutoff) <= atol, f"({layer}, {neuron}) differs beyond a tie at the cut-off"


def random_lm(model_type: str, seed: int = 0, **sizes) -> LoadedModel:
    """A randomly initialised model of one architecture with the given config sizes (no learned structure)."""
    torch.manual_seed(seed)
    config = AutoConfig.for_model(model_type, **{**_SPECIAL.get(model_type, _COMMON), **sizes})
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return prepare(model, byte_tokenizer(), f"random-{model_type}")
