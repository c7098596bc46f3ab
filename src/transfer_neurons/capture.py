"""Batched capture of a model's internals at each sentence's last real token (method.md §2).

For every decoder layer l it can keep `h[l]` (raw layer output), `m[l]` (the residual
before the MLP block, `h[l]` minus what the MLP block adds) and the effective neuron
activations `a[l]`, plus the embedding output `h[-1]`. Only what is asked for is
kept, in float32. `iter_layer_internals` leaves every layer's tensors on the device that
computed them, so callers that reduce each batch (scores, centroids) never copy
internals to the host; `iter_internals` and `capture` stack them on one device, the host
by default, where memory grows with sentences x layers x width of what is kept.

Deactivation at the last token (mode `last`) leaves every earlier position as it was, so
`run_prefixes` runs each sentence without its last token once, and `capture_last` then
runs only the last tokens against a copy of that key-value cache: one token per sentence
and condition instead of the whole sentence.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .batching import AUTO, check_batch_size, resolve_batch_size
from .distributed import is_main, shard_batches
from .errors import TransferNeuronsError
from .log import progress_enabled
from .models.loaded import LoadedModel
from .tokens import encode_within_context

QUANTITIES = ("embed", "h", "m", "a")


@dataclass
class Internals:
    """Last-real-token internals of some sentences, float32 on one device (the host by default), in input order."""

    embed: torch.Tensor | None = None  # [n, d_model]  h[-1], the embedding output
    h: torch.Tensor | None = None  # [n, layer, d_model]
    m: torch.Tensor | None = None  # [n, layer, d_model]
    a: torch.Tensor | None = None  # [n, layer, d_ff]  effective activations


@dataclass
class LayerInternals:
    """One batch's last-real-token internals, float32, one tensor per layer on the device that computed it."""

    embed: torch.Tensor | None = None  # [batch, d_model]
    h: list[torch.Tensor] | None = None  # per layer [batch, d_model]
    m: list[torch.Tensor] | None = None  # per layer [batch, d_model]
    a: list[torch.Tensor] | None = None  # per layer [batch, d_ff]  effective activations
    blocks: dict[str, torch.Tensor] = field(default_factory=dict)
    """name -> [layer, batch, width] when every layer is on one device; the per-layer tensors are its views."""

    def block(self, name: str, layers: range) -> torch.Tensor:
        """One quantity of consecutive layers on one device as one [g, batch, width] tensor (a view when it can be)."""
        if name in self.blocks:
            return self.blocks[name][layers.start : layers.stop]
        return torch.stack(getattr(self, name)[layers.start : layers.stop])

    def stacked(self, device: torch.device | str = "cpu") -> Internals:
        """The same internals as [batch, layer, width] tensors on one device."""
        return Internals(
            embed=None if self.embed is None else self.embed.to(device),
            h=None if self.h is None else stack_on(self.h, device, dim=1),
            m=None if self.m is None else stack_on(self.m, device, dim=1),
            a=None if self.a is None else stack_on(self.a, device, dim=1),
        )


def stack_on(parts: Sequence[torch.Tensor], device: torch.device | str, dim: int = 0) -> torch.Tensor:
    """Stack per-layer tensors on `device`: one copy when they share a device, one per layer otherwise."""
    if len({part.device for part in parts}) == 1:
        return torch.stack(list(parts), dim=dim).to(device)
    return torch.stack([part.to(device) for part in parts], dim=dim)


@dataclass
class Batch:
    """One padded batch of tokenised sentences and where each one's last real token is."""

    indices: list[int]  # positions of these sentences in the caller's list
    input_ids: torch.Tensor  # [batch, seq]
    attention_mask: torch.Tensor  # [batch, seq]

    @property
    def position_ids(self) -> torch.Tensor:
        """Positions counted from each row's first real token, so left padding is harmless."""
        return (self.attention_mask.cumsum(dim=1) - 1).clamp(min=0)

    @property
    def last(self) -> torch.Tensor:
        """Index of each row's last real token, for left or right padding: [batch]."""
        return last_token_index(self.attention_mask)


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position of the last non-padding token of each row: [batch, seq] -> [batch]."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (attention_mask.bool() * (positions + 1)).argmax(dim=1)


def make_batches(
    lm: LoadedModel, texts: Sequence[str], batch_size: int, sort_by_length: bool = True
) -> list[Batch]:
    """Tokenise (model defaults, special tokens included, cut to the model's context) and group into batches.

    Sorting by length keeps padding, and so wasted compute, small; results are
    always returned to the caller in input order.
    """
    if batch_size < 1:
        raise TransferNeuronsError(f"batch_size must be at least 1, got {batch_size}")
    encoded = encode_within_context(lm, texts)
    order = list(range(len(texts)))
    if sort_by_length:
        order.sort(key=lambda i: len(encoded[i]))
    batches = []
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        padded = lm.tokenizer.pad({"input_ids": [encoded[i] for i in idx]}, return_tensors="pt")
        batches.append(Batch(idx, padded["input_ids"], padded["attention_mask"]))
    return batches


@dataclass
class _Recorder:
    """Forward hooks that keep the requested quantities at the last real tokens of a batch."""

    lm: LoadedModel
    want: frozenset[str]
    store: dict = field(default_factory=dict)
    index: dict = field(default_factory=dict)  # device -> (rows [batch], last [batch]) of the current batch
    eps: dict = field(default_factory=dict)  # device -> [layer, 1, 1] MLP-output norm epsilons

    def start(self, last: torch.Tensor) -> None:
        """Begin a batch whose rows end at positions `last` [batch] (on the input device)."""
        self.index = {last.device: (torch.arange(len(last), device=last.device), last)}

    def _at_last(self, x: torch.Tensor) -> torch.Tensor:
        """x [batch, seq, width] -> [batch, width] float32 at each row's last real token, on x's device."""
        if x.device not in self.index:  # a layer on another device (device_map): one small copy per batch
            rows, last = next(iter(self.index.values()))
            self.index[x.device] = (rows.to(x.device), last.to(x.device))
        rows, last = self.index[x.device]
        return x[rows, last].float()

    @contextmanager
    def hooks(self) -> Iterator[None]:
        view, handles = self.lm.view, []
        if "embed" in self.want:
            handles.append(view.layers[0].register_forward_pre_hook(self._embed_hook, with_kwargs=True))
        for layer in range(view.num_layers):
            if self.want & {"h", "m"}:
                handles.append(view.layers[layer].register_forward_hook(self._keep(("h", layer))))
            if "m" in self.want:
                handles.append(view.mlp_output(layer).register_forward_hook(self._keep(("mlp", layer))))
            if "a" in self.want:
                proj = view.out_proj(layer)
                handles.append(proj.register_forward_pre_hook(self._keep_input(("a", layer))))
                if view.mlp_out_norm(layer) is not None:
                    handles.append(proj.register_forward_hook(self._keep(("u", layer))))
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _embed_hook(self, module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        self.store["embed"] = self._at_last(hidden)

    def _keep(self, key):
        def hook(module, args, output):
            output = output[0] if isinstance(output, tuple) else output
            self.store[key] = self._at_last(output)

        return hook

    def _keep_input(self, key):
        def hook(module, args):
            self.store[key] = self._at_last(args[0])

        return hook

    def collect(self) -> LayerInternals:
        """Turn one batch's stored tensors into LayerInternals (float32, where they were computed).

        When every layer is on one device, m and a are computed for all layers at once on
        [layer, batch, width] stacks: a few kernels per batch instead of a few per layer,
        which is what a small model's step on a GPU is bound by.
        """
        store, out = self.store, LayerInternals()
        layers = range(self.lm.view.num_layers)
        one_device = len({store[key].device for key in store}) == 1
        if "embed" in self.want:
            out.embed = store["embed"]
        if "h" in self.want:
            out.h = [store[("h", l)] for l in layers]
        if "m" in self.want:
            h, mlp = [store[("h", l)] for l in layers], [store[("mlp", l)] for l in layers]
            if one_device:
                out.blocks["m"] = torch.stack(h) - torch.stack(mlp)
                out.m = list(out.blocks["m"].unbind(0))
            else:
                out.m = [x - y for x, y in zip(h, mlp)]
        if "a" in self.want:
            a = [store[("a", l)] for l in layers]
            u = [store[("u", l)] for l in layers] if ("u", 0) in store else None
            if one_device:
                out.blocks["a"] = torch.stack(a) if u is None else effective_a(torch.stack(a), torch.stack(u), self._eps())
                out.a = list(out.blocks["a"].unbind(0))
            else:
                out.a = a if u is None else [effective_a(x, y, self.lm.view.norm_eps(l)) for l, (x, y) in enumerate(zip(a, u))]
        self.store = {}
        return out

    def _eps(self) -> torch.Tensor:
        """Each layer's MLP-output norm epsilon as [layer, 1, 1], on the batch's device (made once)."""
        device = next(iter(self.store.values())).device
        if device not in self.eps:
            eps = [self.lm.view.norm_eps(l) for l in range(self.lm.view.num_layers)]
            self.eps[device] = torch.tensor(eps, device=device)[:, None, None]
        return self.eps[device]


def effective_a(a: torch.Tensor, u: torch.Tensor, eps: float | torch.Tensor) -> torch.Tensor:
    """a / rms(u), where u is the MLP output that passes an RMS norm: [..., batch, d_ff] (one layer or stacked)."""
    return a / torch.sqrt(u.pow(2).mean(dim=-1, keepdim=True) + eps)


def as_texts(texts: Sequence[str], option: str = "texts") -> list[str]:
    """Sentences as a list of str: from a list, tuple, NumPy array or pandas Series of strings; one string is
    refused (iterating it would run each character as a sentence)."""
    if isinstance(texts, (str, bytes)):
        raise TransferNeuronsError(f"{option}: expected a list of sentences, got one string {texts[:40]!r}; "
                                   "wrap it in a list")
    try:
        items = list(texts)
    except TypeError:
        raise TransferNeuronsError(f"{option}: expected a list of sentences, got {type(texts).__name__}") from None
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise TransferNeuronsError(f"{option}[{i}]: expected a string, got {type(text).__name__}")
    return [str(text) for text in items]


def as_quantities(want: Sequence[str] | str) -> tuple[str, ...]:
    """The internals to capture, checked: a name of QUANTITIES or a sequence of them (at least one)."""
    want = (want,) if isinstance(want, str) else tuple(want)
    unknown = [q for q in want if q not in QUANTITIES]
    if unknown or not want:
        raise TransferNeuronsError(f"want: expected some of {', '.join(QUANTITIES)}, got {list(want)}")
    return want


def batch_size_for(lm: LoadedModel, batch_size: int | str, texts: Sequence[str]) -> int:
    """batch_size itself, or the size "auto" finds for the longest of these texts (batching.py)."""
    batch_size = check_batch_size(batch_size)
    if batch_size != AUTO or not texts:
        return resolve_batch_size(lm, batch_size)
    return resolve_batch_size(lm, AUTO, max(encode_within_context(lm, texts), key=len), len(texts))


@torch.no_grad()
def iter_layer_internals(
    lm: LoadedModel,
    texts: Sequence[str],
    want: Sequence[str] = ("h",),
    batch_size: int | str = 16,
    sort_by_length: bool = True,
    progress: str | None = "capture",
) -> Iterator[tuple[list[int], LayerInternals]]:
    """Run the model over batches and yield (input indices, LayerInternals) per batch.

    Runs the decoder stack only (no unembedding), so the cost is the model's own
    forward pass; nothing is copied off the device. batch_size may be "auto".
    """
    texts, want = as_texts(texts), as_quantities(want)
    if not texts:
        raise TransferNeuronsError("no sentences to run the model on")
    recorder = _Recorder(lm, frozenset(want))
    batches = make_batches(lm, texts, batch_size_for(lm, batch_size, texts), sort_by_length)
    device = lm.view.device
    with recorder.hooks():
        for batch in tqdm(batches, desc=progress, disable=progress is None or not is_main() or not progress_enabled(), unit="batch"):
            attention_mask = batch.attention_mask.to(device)
            recorder.start(last_token_index(attention_mask))
            lm.view.decoder(
                input_ids=batch.input_ids.to(device),
                attention_mask=attention_mask,
                position_ids=batch.position_ids.to(device),
                use_cache=False,
            )
            yield batch.indices, recorder.collect()


def iter_internals(
    lm: LoadedModel,
    texts: Sequence[str],
    want: Sequence[str] = ("h",),
    batch_size: int | str = 16,
    sort_by_length: bool = True,
    progress: str | None = "capture",
    device: torch.device | str = "cpu",
) -> Iterator[tuple[list[int], Internals]]:
    """Like iter_layer_internals, with each batch stacked as Internals on `device` (the host by default).

    Callers that reduce each batch can pass `device=lm.view.device` to keep internals on the model's device.
    """
    for indices, layers in iter_layer_internals(lm, texts, want, batch_size, sort_by_length, progress):
        yield indices, layers.stacked(device)


def capture(
    lm: LoadedModel,
    texts: Sequence[str],
    want: Sequence[str] = ("h",),
    batch_size: int | str = 16,
    sort_by_length: bool = True,
    progress: str | None = "capture",
    device: torch.device | str = "cpu",
) -> Internals:
    """Capture the requested last-token internals of all sentences, in input order, on `device` (the host by default)."""
    want = as_quantities(want)
    return in_input_order(iter_internals(lm, texts, want, batch_size, sort_by_length, progress, device), want, device)


def in_input_order(
    batches: Iterator[tuple[list[int], Internals]], want: Sequence[str], device: torch.device | str
) -> Internals:
    """Concatenate per-batch Internals (each with its input indices) into one Internals, rows by ascending index."""
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in want}
    order: list[int] = []
    for indices, batch in batches:
        order.extend(indices)
        for name in want:
            parts[name].append(getattr(batch, name))
    ascending = torch.argsort(torch.tensor(order, dtype=torch.long)).to(device)
    return Internals(**{name: torch.cat(chunks)[ascending] for name, chunks in parts.items()})


# ---------------------------------------------------------------- shared prefixes (mode `last`)


def cache_argument(model: torch.nn.Module, cache) -> dict:
    """The key-value cache as the keyword the model takes (`cache` in transformers 5, else `past_key_values`)."""
    name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    return {name: cache}


def returned_cache(output):
    """The key-value cache a forward pass returned (`cache` or `past_key_values`)."""
    cache = getattr(output, "cache", None)
    return output.past_key_values if cache is None else cache


@dataclass
class PrefixBatch:
    """One batch of sentences run once without their last token: the key-value cache every last-token pass reads."""

    indices: list[int]  # positions of these sentences in the caller's list
    cache: object  # the decoder's key-value cache of the prefixes; each pass reads a copy
    mask: torch.Tensor  # [batch, prefix] 1 at real prefix tokens (left-padded), on the input device
    last_ids: torch.Tensor  # [batch] each sentence's last token id, on the input device

    @property
    def nbytes(self) -> int:
        """Memory held by the cached keys and values."""
        return sum(t.numel() * t.element_size() for layer in getattr(self.cache, "layers", ())
                   for t in vars(layer).values() if isinstance(t, torch.Tensor))


@torch.no_grad()
def run_prefixes(
    lm: LoadedModel, texts: Sequence[str], batch_size: int | str = 16, progress: str | None = None
) -> list[PrefixBatch] | None:
    """Run every sentence but its last token once (left-padded, cache on); None when a sentence has one token.

    Under torchrun each rank runs every world_size-th batch of the one-process batching, so each
    sentence meets the same batch, and the same arithmetic, on any number of processes (with fewer
    batches than processes, every rank runs them all).
    """
    if not texts:
        raise TransferNeuronsError("no sentences to run the model on")
    encoded = encode_within_context(lm, texts)
    if min(len(ids) for ids in encoded) < 2:
        return None
    size = batch_size_for(lm, batch_size, texts)
    order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    device, decoder = lm.view.device, lm.view.decoder
    out = []
    batches = [order[start : start + size] for start in range(0, len(order), size)]
    batches = shard_batches(batches)
    for idx in tqdm(batches, desc=progress, disable=progress is None or not is_main() or not progress_enabled(), unit="batch"):
        width = max(len(encoded[i]) for i in idx) - 1
        ids = torch.tensor([[pad] * (width + 1 - len(encoded[i])) + encoded[i][:-1] for i in idx])  # [batch, prefix]
        mask = torch.tensor([[0] * (width + 1 - len(encoded[i])) + [1] * (len(encoded[i]) - 1) for i in idx])
        result = decoder(input_ids=ids.to(device), attention_mask=mask.to(device),
                         position_ids=(mask.cumsum(1) - 1).clamp(min=0).to(device), use_cache=True)
        out.append(PrefixBatch(idx, returned_cache(result), mask.to(device),
                               torch.tensor([encoded[i][-1] for i in idx], device=device)))
    return out


@torch.no_grad()
def iter_last_token_internals(
    lm: LoadedModel, prefixes: Sequence[PrefixBatch], want: Sequence[str] = ("h",), progress: str | None = None
) -> Iterator[tuple[list[int], LayerInternals]]:
    """Run only each sentence's last token against its prefix's cache and yield (input indices, LayerInternals).

    The same internals as iter_layer_internals (within float rounding), at a cost of one token per sentence.
    """
    recorder = _Recorder(lm, frozenset(want))
    decoder = lm.view.decoder
    with recorder.hooks():
        for prefix in tqdm(prefixes, desc=progress, disable=progress is None or not is_main() or not progress_enabled(), unit="batch"):
            batch = len(prefix.indices)
            mask = torch.cat([prefix.mask, torch.ones_like(prefix.mask[:, :1])], 1)  # [batch, prefix + 1]
            recorder.start(torch.zeros(batch, dtype=torch.long, device=mask.device))
            decoder(input_ids=prefix.last_ids[:, None], attention_mask=mask, position_ids=prefix.mask.sum(1, keepdim=True),
                    use_cache=True, **cache_argument(decoder, copy.deepcopy(prefix.cache)))
            yield prefix.indices, recorder.collect()


def capture_last(
    lm: LoadedModel,
    prefixes: Sequence[PrefixBatch],
    want: Sequence[str] = ("h",),
    progress: str | None = None,
    device: torch.device | str = "cpu",
) -> Internals:
    """Like capture, from prefixes run once: only the last tokens run, under whatever hooks are active.

    Rows come by ascending sentence index (all sentences unless the prefixes are one rank's share).
    """
    batches = ((indices, layers.stacked(device)) for indices, layers in iter_last_token_internals(lm, prefixes, want, progress))
    return in_input_order(batches, want, device)
