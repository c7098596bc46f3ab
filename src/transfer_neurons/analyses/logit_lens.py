"""Logit lens (beyond the paper): per layer, read the last-token state h[l] through the
model's own head (final norm, unembedding, and final logit softcapping where the
architecture has it, e.g. Gemma 2) and report the probability mass on tokens of the
input language vs English, with and without deactivation.

Token language sets (from the tokenizer's vocabulary; added/special tokens never count;
a token counts only if its decoded text has at least one letter, Unicode category L*):
- script languages (SCRIPT_LANGS): the L2 set holds tokens all of whose letters are in
  the language's scripts (ja: kana or CJK ideographs, so kanji tokens count for ja and zh
  alike; ko: Hangul; zh: CJK ideographs); the English set holds tokens all of whose
  letters are basic Latin a-z/A-Z (so any Latin-script word counts as English).
- other (Latin-script) languages: the ids that occur when tokenising the L2 side of a
  parallel corpus but never on its English side form the L2 set, and those of the English
  side never on the L2 side form the English set (shared tokens belong to neither). Both
  are lower bounds on the language's true vocabulary.

Per layer the whole-vocabulary softmax is computed in chunks of rows and only the summed
masses are kept, so memory is chunk x vocabulary, not layers x sentences x vocabulary.
Layers below a condition's first deactivated layer are not passed through the head again: their
states are the undeactivated ones.
"""

from __future__ import annotations

import functools
import logging
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
import numpy as np
import torch

from ..batching import logit_rows
from ..conditions import Condition, condition_groups
from ..distributed import gather_rows, shard_batches
from ..errors import TransferNeuronsError
from ..models.loaded import LoadedModel
from ..states import StateProvider, provider_for
from ..stats import bootstrap_ci
from .effects import summarise
from .similarity import COLOURS

LOG = logging.getLogger("transfer_neurons")

METRICS = ("l2_mass", "en_mass")
SCRIPT_RANGES: dict[str, tuple[tuple[int, int], ...]] = {
    "kana": ((0x3040, 0x30FF), (0x31F0, 0x31FF), (0xFF66, 0xFF9F)),
    "han": ((0x3005, 0x3007), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x3FFFF)),
    "hangul": ((0x1100, 0x11FF), (0x3130, 0x318F), (0xA960, 0xA97F), (0xAC00, 0xD7FF), (0xFFA0, 0xFFDC)),
    "latin": ((0x41, 0x5A), (0x61, 0x7A)),  # basic a-z / A-Z
}
SCRIPT_LANGS: dict[str, tuple[str, ...]] = {"ja": ("kana", "han"), "ko": ("hangul",), "zh": ("han",)}


@dataclass
class TokenSets:
    """Which vocabulary ids count as the input language and as English, and the rule used."""

    l2: np.ndarray  # [vocab] bool
    en: np.ndarray  # [vocab] bool
    rule: str


@dataclass
class LensResult:
    """Per-item lens masses of every condition: metric -> condition label -> [item, layer]."""

    values: dict[str, dict[str, np.ndarray]]
    conditions: list[Condition]


@functools.lru_cache(maxsize=None)
def letter_scripts(char: str) -> frozenset[str] | None:
    """The scripts of SCRIPT_RANGES a character lies in, or None when it is not a letter (Unicode category L*).

    Kept per character: a 262k-token vocabulary has about 1.7 million characters but far fewer distinct ones.
    """
    if not unicodedata.category(char).startswith("L"):
        return None
    code = ord(char)
    return frozenset(name for name, ranges in SCRIPT_RANGES.items() if any(lo <= code <= hi for lo, hi in ranges))


def token_in_scripts(text: str, scripts: Sequence[str]) -> bool:
    """True when the text has at least one letter and every letter is in the given scripts."""
    letters = [found for found in map(letter_scripts, set(text)) if found is not None]
    return bool(letters) and all(not found.isdisjoint(scripts) for found in letters)


def has_letter(text: str) -> bool:
    """Whether any character of the text is a letter (Unicode category L*)."""
    return any(letter_scripts(ch) is not None for ch in text)


def vocab_size(lm: LoadedModel) -> int:
    """Rows of the unembedding (may exceed the tokenizer's length by padding rows)."""
    return int(lm.view.unembed().weight.shape[0])


def ordinary_ids(tokenizer, size: int) -> np.ndarray:
    """Ids of tokens the tokenizer decodes (below its length), minus added/special tokens: bool [size]."""
    keep = np.zeros(size, dtype=bool)
    keep[: min(size, len(tokenizer))] = True
    added = [i for i in tokenizer.added_tokens_decoder if i < size] + [
        i for i in tokenizer.all_special_ids if i is not None and i < size]
    keep[added] = False
    return keep


def decode_ids(tokenizer, ids: Sequence[int]) -> list[str]:
    """Each id decoded on its own (byte pieces of a split character decode to no letter)."""
    return tokenizer.batch_decode([[int(i)] for i in ids])


def script_token_sets(texts: Sequence[str], lang: str) -> TokenSets:
    """Token sets by script for a script language, from each token's decoded text (index = id)."""
    if lang not in SCRIPT_LANGS:
        raise TransferNeuronsError(f"no script rule for {lang!r}; script languages: {', '.join(SCRIPT_LANGS)}")
    scripts = SCRIPT_LANGS[lang]
    l2 = np.array([token_in_scripts(t, scripts) for t in texts], dtype=bool)
    en = np.array([token_in_scripts(t, ("latin",)) for t in texts], dtype=bool)
    return TokenSets(l2, en, f"script: {lang} = letters all in {'/'.join(scripts)}; en = letters all basic Latin a-z")


def corpus_token_sets(
    lm: LoadedModel, en_texts: Sequence[str], l2_texts: Sequence[str], lang: str
) -> TokenSets:
    """Token sets of a Latin-script language: ids only on the L2 side vs only on the English side of a corpus."""
    keep = ordinary_ids(lm.tokenizer, vocab_size(lm))

    def ids(texts: Sequence[str]) -> set[int]:
        return {i for row in lm.tokenizer(list(texts))["input_ids"] for i in row if i < keep.size and keep[i]}

    en_ids, l2_ids = ids(en_texts), ids(l2_texts)
    l2, en = np.zeros(keep.size, dtype=bool), np.zeros(keep.size, dtype=bool)
    for mask, only in ((l2, l2_ids - en_ids), (en, en_ids - l2_ids)):
        only = sorted(only)
        lettered = [i for i, text in zip(only, decode_ids(lm.tokenizer, only)) if has_letter(text)]
        mask[lettered] = True
    return TokenSets(l2, en, f"corpus: {lang} = token ids on the {lang} side only, en = on the en side only "
                     f"({len(l2_texts)} sentences each; shared ids in neither)")


@functools.lru_cache(maxsize=2)
def _vocabulary_texts(tokenizer, size: int) -> tuple[str, ...]:
    """Every id's text decoded on its own ("" for added and special tokens), kept per tokenizer:
    about 4 s for 262k ids."""
    keep = ordinary_ids(tokenizer, size)
    texts = [""] * size
    for i, text in zip(np.flatnonzero(keep), decode_ids(tokenizer, np.flatnonzero(keep))):
        texts[i] = text
    return tuple(texts)


@functools.lru_cache(maxsize=4)
def _script_sets_of(tokenizer, size: int, lang: str) -> TokenSets:
    """The script rule over a tokenizer's whole vocabulary, kept per language: a study asks again
    for every type of neuron."""
    return script_token_sets(_vocabulary_texts(tokenizer, size), lang)


def token_sets(lm: LoadedModel, lang: str, en_texts: Sequence[str] = (), l2_texts: Sequence[str] = ()) -> TokenSets:
    """The script rule for script languages, else the corpus rule on the given parallel sentences; an empty
    set is warned about, since its mass is 0 at every layer whatever the neurons do."""
    if lang in SCRIPT_LANGS:
        sets = _script_sets_of(lm.tokenizer, vocab_size(lm), lang)
    elif not en_texts or not l2_texts:
        raise TransferNeuronsError(f"{lang!r} is not a script language ({', '.join(SCRIPT_LANGS)}); its token set "
                                   "needs English and L2 sentences of a parallel corpus")
    else:
        sets = corpus_token_sets(lm, en_texts, l2_texts, lang)
    for name, mask in ((lang, sets.l2), ("English", sets.en)):
        if not mask.any():
            LOG.warning("the %s token set of %s is empty (%s): its lens mass is 0 at every layer", name, lm.name,
                        sets.rule)
    return sets


@torch.no_grad()
def lens_logits(lm: LoadedModel, states: torch.Tensor) -> torch.Tensor:
    """The model's own head applied to raw layer outputs: [rows, d_model] -> logits [rows, vocab] float32."""
    norm = lm.view.final_norm()
    return lm.view.head_logits(norm(states.to(next(norm.parameters()).device, next(norm.parameters()).dtype)))


def lens_log_probs(lm: LoadedModel, states: torch.Tensor) -> torch.Tensor:
    """Log-probabilities of the lens: [rows, d_model] -> [rows, vocab] float32."""
    return torch.log_softmax(lens_logits(lm, states), dim=-1)


@torch.no_grad()
def lens_masses(lm: LoadedModel, states: torch.Tensor, masks: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """Probability mass on each mask per item and layer: states [n, layer, d], masks [vocab, k] -> [n, layer, k].

    chunk: states per unembedding step (None: batching.logit_rows of the vocabulary).
    """
    n, layers, d = states.shape
    flat = states.reshape(n * layers, d)
    rows = chunk or logit_rows(masks.shape[0])
    chunks = shard_batches([range(start, min(start + rows, len(flat))) for start in range(0, len(flat), rows)])
    on_head = masks.to(lm.view.unembed().weight.device)  # [vocab, k], copied once to where the logits are
    out = []
    for part in chunks:  # this rank's chunks under torchrun
        z = lens_logits(lm, flat[part.start : part.stop])  # [rows, vocab]
        z = z.sub_(z.amax(-1, keepdim=True)).exp_()  # unnormalised probabilities, in place: one vocab-wide buffer
        out.append(z @ on_head / z.sum(-1, keepdim=True))  # [rows, k], on the head's device
    done = [i for part in chunks for i in part]
    masses = torch.cat(out) if len(done) == len(flat) else gather_rows(torch.cat(out), done, len(flat))
    return masses.cpu().reshape(n, layers, masks.shape[1])  # one copy to the host per call


def first_affected_layer(neurons: np.ndarray | None, num_layers: int) -> int:
    """The lowest layer whose output a deactivation can change (num_layers when the set is empty).

    Neurons of layer l act inside block l, so every state below it equals the undeactivated one.
    """
    if neurons is None:
        return 0
    return int(np.min(neurons[:, 0])) if len(neurons) else num_layers


def logit_lens(
    source: LoadedModel | StateProvider,
    texts: Sequence[str],
    conditions: Sequence[Condition],
    sets: TokenSets,
    batch_size: int = 16,
    chunk: int | None = None,
    mode: str = "last",
    progress: bool = True,
) -> LensResult:
    """L2 and English lens mass at every layer for each sentence, under each condition.

    States come from a StateProvider (shared with the other analyses) or are captured here. Layers
    below a condition's first deactivated layer hold the undeactivated states, so their masses are
    taken from the undeactivated run instead of passing them through the head again.
    """
    states = provider_for(source, batch_size)
    lm = states.lm
    masks = torch.from_numpy(np.stack([sets.l2, sets.en], axis=1).astype(np.float32))  # [vocab, 2]
    if masks.shape[0] != vocab_size(lm):
        raise TransferNeuronsError(f"token sets cover {masks.shape[0]} ids but the model's vocabulary has {vocab_size(lm)}")
    layers = lm.view.num_layers

    def masses(neurons: np.ndarray | None, label: str, first: int = 0) -> torch.Tensor:
        h = states.get(texts, neurons, mode, ("h",), f"lens {label}" if progress else None).h  # [item, layer, d]
        return lens_masses(lm, h[:, first:], masks, chunk)  # [item, layer - first, metric]

    base: torch.Tensor | None = None  # [item, layer, metric] undeactivated
    values: dict[str, dict[str, np.ndarray]] = {m: {} for m in METRICS}
    for cond in conditions:
        first = first_affected_layer(cond.neurons, layers)
        if cond.neurons is None:
            base = out = masses(None, cond.label) if base is None else base
        else:
            if base is None and first > 0:
                base = masses(None, "none")
            out = base.clone() if first > 0 else torch.empty(len(texts), layers, len(METRICS))
            if first < layers:
                out[:, first:] = masses(cond.neurons, cond.label, first)
        for j, metric in enumerate(METRICS):
            values[metric][cond.label] = out[..., j].double().numpy()
    return LensResult(values, list(conditions))


def lens_rows(result: LensResult, seed: int = 0) -> list[dict]:
    """Per metric and layer: effects.summarise rows, or mean with 95 % CI when only `none` was run."""
    rows = []
    names = {c.name for c in result.conditions}
    for metric in METRICS:
        values = result.values[metric]
        if "transfer" in names and "none" in names:
            rows += summarise(values, result.conditions, metric, seed=seed)
            continue
        level = bootstrap_ci(values["none"], seed=seed)
        rows += [{"metric": metric, "condition": "none", "layer": str(l), "items": values["none"].shape[0],
                  "mean": float(level.mean[l]), "mean_low": float(level.low[l]), "mean_high": float(level.high[l])}
                 for l in range(values["none"].shape[1])]
    return rows


def _curves(values: Mapping[str, np.ndarray], members: Sequence[Condition]) -> tuple[np.ndarray, np.ndarray | None]:
    """Mean over items and seeds per layer [layer], and the range over seeds [2, layer] if seeded."""
    per_seed = np.stack([values[m.label].mean(axis=0) for m in members])  # [seed, layer]
    band = np.stack([per_seed.min(axis=0), per_seed.max(axis=0)]) if len(members) > 1 else None
    return per_seed.mean(axis=0), band


def plot_lens(result: LensResult, title: str) -> Figure:
    """Per-layer mean L2 mass (left) and English mass (right), one line per condition, seed range shaded."""
    groups = condition_groups(result.conditions)
    fig = Figure(figsize=(13, 4.8))
    axes = fig.subplots(1, 2, sharex=True, sharey=True)
    for ax, metric, label in zip(axes, METRICS, ("input-language (L2) tokens", "English tokens")):
        for i, (name, members) in enumerate(groups.items()):
            mean, band = _curves(result.values[metric], members)
            layers = np.arange(mean.shape[0])
            seeds = f", {len(members)} seeds" if len(members) > 1 else ""
            label_text = name if members[0].neurons is None else f"{name} ({len(members[0].neurons)} neurons{seeds})"
            ax.plot(layers, mean, marker=".", color=COLOURS.get(name, f"C{i}"), label=label_text)
            if band is not None:
                ax.fill_between(layers, band[0], band[1], color=COLOURS.get(name, f"C{i}"), alpha=0.2, lw=0)
        ax.set_title(f"lens probability mass on {label}")
        ax.set_xlabel("layer (0-based)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("mean probability mass")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, title="deactivated (band: seed range)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
