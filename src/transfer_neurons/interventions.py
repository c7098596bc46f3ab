"""Deactivation of neurons (SPEC.md 5): set a[l][i] = 0 at chosen token positions.

Modes:
- `last`: each sequence's last real token of every forward pass (the similarity,
  latent-space and activation analyses; under generation also each new token);
- `all`: every real token of the prompt, not generated tokens (the paper's QA mode);
- `prompt_last`: the prompt's last real token only, not generated tokens.

A pre-hook on the decoder stack reads the attention mask (left or right padding) and
whether a cache is already filled (a generation step); pre-hooks on the MLP output
projections zero the chosen activations at those positions.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch

from .capture import Internals, capture, last_token_index
from .errors import TransferNeuronsError
from .models.loading import LoadedModel

MODES = ("last", "all", "prompt_last")


def neurons_by_layer(neurons: np.ndarray, num_layers: int, d_ff: int) -> dict[int, torch.Tensor]:
    """Group a [n, 2] (layer, neuron) array by layer, checking every index is in range."""
    neurons = np.asarray(neurons, dtype=np.int64).reshape(-1, 2)
    bad = (neurons[:, 0] < 0) | (neurons[:, 0] >= num_layers) | (neurons[:, 1] < 0) | (neurons[:, 1] >= d_ff)
    if bad.any():
        layer, neuron = neurons[bad][0]
        raise TransferNeuronsError(
            f"neuron (layer {layer}, index {neuron}) is outside the model's {num_layers} layers x {d_ff} neurons"
        )
    return {
        int(layer): torch.as_tensor(np.unique(neurons[neurons[:, 0] == layer, 1]))
        for layer in np.unique(neurons[:, 0])
    }


class _Positions:
    """Which token positions of the current forward pass are deactivated: [batch, seq] bool."""

    def __init__(self, mode: str):
        if mode not in MODES:
            raise TransferNeuronsError(f"deactivation mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.mask: torch.Tensor | None = None

    def update(self, module, args, kwargs) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            ids = kwargs["inputs_embeds"]
        batch, seq = ids.shape[:2]
        attention = kwargs.get("attention_mask")
        real = torch.ones(batch, seq, dtype=torch.bool, device=ids.device)
        if isinstance(attention, torch.Tensor) and attention.dim() == 2:
            real = attention[:, -seq:].bool().to(ids.device)
        cache = kwargs.get("past_key_values", kwargs.get("cache"))  # named `cache` in newer transformers
        generating = cache is not None and hasattr(cache, "get_seq_length") and cache.get_seq_length() > 0
        mask = torch.zeros(batch, seq, dtype=torch.bool, device=ids.device)
        if self.mode == "all" and not generating:
            mask = real
        elif self.mode == "last" or (self.mode == "prompt_last" and not generating):
            mask[torch.arange(batch, device=ids.device), last_token_index(real)] = True
        self.mask = mask


@contextmanager
def deactivated(lm: LoadedModel, neurons: np.ndarray, mode: str = "last") -> Iterator[None]:
    """Within the block, the given (layer, neuron) activations are zero at the mode's positions."""
    view = lm.view
    groups = neurons_by_layer(neurons, view.num_layers, view.d_ff)
    positions = _Positions(mode)
    handles = [view.decoder.register_forward_pre_hook(positions.update, with_kwargs=True)]
    for layer, index in groups.items():
        handles.append(view.out_proj(layer).register_forward_pre_hook(_zeroer(positions, index)))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _zeroer(positions: _Positions, index: torch.Tensor):
    """A pre-hook that zeroes a[..., index] where positions.mask is set."""

    def hook(module, args):
        a = args[0]  # [batch, seq, d_ff]
        keep = (~positions.mask).to(a.device, a.dtype)[..., None]  # [batch, seq, 1]
        index_on = index.to(a.device)
        a = a.clone()
        a[..., index_on] = a[..., index_on] * keep
        return (a, *args[1:])

    return hook


def capture_under(
    lm: LoadedModel,
    texts: Sequence[str],
    neurons: np.ndarray | None,
    want: Sequence[str] = ("h",),
    batch_size: int = 16,
    mode: str = "last",
    progress: str | None = "capture",
) -> Internals:
    """Capture last-token internals with the given neurons deactivated (None: no deactivation)."""
    if neurons is None:
        return capture(lm, texts, want, batch_size, progress=progress)
    with deactivated(lm, neurons, mode):
        return capture(lm, texts, want, batch_size, progress=progress)
