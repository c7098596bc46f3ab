"""Batched capture of a model's internals at each sentence's last real token (SPEC.md 2).

For every decoder layer l it can keep `h[l]` (raw layer output), `m[l]` (the residual
before the MLP block, `h[l]` minus what the MLP block adds) and the effective neuron
activations `a[l]`, plus the embedding output `h[-1]`. Only what is asked for is
kept, in float32 on CPU, so memory grows with sentences x layers x width of what is kept.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .distributed import is_main
from .errors import TransferNeuronsError
from .models.loading import LoadedModel
from .tokens import encode_within_context

QUANTITIES = ("embed", "h", "m", "a")


@dataclass
class Internals:
    """Last-real-token internals of some sentences, float32 on CPU, in input order."""

    embed: torch.Tensor | None = None  # [n, d_model]  h[-1], the embedding output
    h: torch.Tensor | None = None  # [n, layer, d_model]
    m: torch.Tensor | None = None  # [n, layer, d_model]
    a: torch.Tensor | None = None  # [n, layer, d_ff]  effective activations


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
    rows: torch.Tensor = field(default=None)  # [batch]
    last: torch.Tensor = field(default=None)  # [batch]
    store: dict = field(default_factory=dict)

    def _at_last(self, x: torch.Tensor) -> torch.Tensor:
        """x [batch, seq, width] -> [batch, width] float32 at each row's last real token."""
        return x[self.rows.to(x.device), self.last.to(x.device)].float()

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

    def collect(self) -> Internals:
        """Turn one batch's stored tensors into Internals (CPU, float32)."""
        view, out = self.lm.view, Internals()
        layers = range(view.num_layers)
        if "embed" in self.want:
            out.embed = self.store["embed"].cpu()
        if self.want & {"h", "m"}:
            h = torch.stack([self.store[("h", l)].cpu() for l in layers], dim=1)
            if "h" in self.want:
                out.h = h
            if "m" in self.want:
                out.m = h - torch.stack([self.store[("mlp", l)].cpu() for l in layers], dim=1)
        if "a" in self.want:
            out.a = torch.stack([self._effective_a(l) for l in layers], dim=1)
        self.store.clear()
        return out

    def _effective_a(self, layer: int) -> torch.Tensor:
        """a / rms(u) where the MLP output passes an RMS norm, else a itself: [batch, d_ff]."""
        a = self.store[("a", layer)].cpu()
        if ("u", layer) not in self.store:
            return a
        u = self.store[("u", layer)].cpu()
        rms = torch.sqrt(u.pow(2).mean(dim=-1, keepdim=True) + self.lm.view.norm_eps(layer))
        return a / rms


@torch.no_grad()
def iter_internals(
    lm: LoadedModel,
    texts: Sequence[str],
    want: Sequence[str] = ("h",),
    batch_size: int = 16,
    sort_by_length: bool = True,
    progress: str | None = "capture",
) -> Iterator[tuple[list[int], Internals]]:
    """Run the model over batches and yield (input indices, Internals) per batch.

    Runs the decoder stack only (no unembedding), so the cost is the model's own
    forward pass; analyses that need streaming (scores, specificity) consume this.
    """
    if not texts:
        raise TransferNeuronsError("no sentences to run the model on")
    unknown = set(want) - set(QUANTITIES)
    if unknown:
        raise TransferNeuronsError(f"unknown quantities {sorted(unknown)}; choose from {QUANTITIES}")
    recorder = _Recorder(lm, frozenset(want))
    batches = make_batches(lm, texts, batch_size, sort_by_length)
    device = lm.view.device
    with recorder.hooks():
        for batch in tqdm(batches, desc=progress, disable=progress is None or not is_main(), unit="batch"):
            recorder.rows = torch.arange(len(batch.indices))
            recorder.last = batch.last
            lm.view.decoder(
                input_ids=batch.input_ids.to(device),
                attention_mask=batch.attention_mask.to(device),
                position_ids=batch.position_ids.to(device),
                use_cache=False,
            )
            yield batch.indices, recorder.collect()


def capture(
    lm: LoadedModel,
    texts: Sequence[str],
    want: Sequence[str] = ("h",),
    batch_size: int = 16,
    sort_by_length: bool = True,
    progress: str | None = "capture",
) -> Internals:
    """Capture the requested last-token internals of all sentences, in input order."""
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in want}
    order: list[int] = []
    for indices, batch in iter_internals(lm, texts, want, batch_size, sort_by_length, progress):
        order.extend(indices)
        for name in want:
            parts[name].append(getattr(batch, name))
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.tensor(order, dtype=torch.long)] = torch.arange(len(order))
    return Internals(**{name: torch.cat(chunks)[inverse] for name, chunks in parts.items()})
