"""Interventions on neuron activations (method.md §5 and beyond): what a[l][i] becomes at chosen positions.

Kinds, each named by one spec string (`parse_intervention`):
- `zero`: a = 0, the paper's deactivation (the default);
- `scale:F`: a = F * a; F < 1 dampens, F > 1 amplifies (the paper's "steered" reasoning runs
  multiply), `scale:0` equals `zero` and `scale:1` changes nothing;
- `mean`: a = the neuron's mean activation at the last real token of a reference set of
  sentences (`Mean(reference)`);
- `patch`: a = the neuron's activation at the last real token of the paired source sentence,
  normally the English side of a parallel pair (`Patch(sources, targets)`): each input the model
  sees is looked up among the targets by its token ids, so batching and length sorting never
  mix up rows.

Positions (`mode`):
- `last`: each sequence's last real token of every forward pass (the similarity,
  latent-space and activation analyses; under generation also each new token);
- `all`: every real token of the prompt, not generated tokens (the paper's QA mode);
- `prompt_last`: the prompt's last real token only, not generated tokens.
A generated token is one run against a filled key-value cache, as `generate` does by default;
with `use_cache=False` every step re-runs the whole text as a prompt, so `all` and `prompt_last`
then reach generated tokens too.
`mean` and `patch` write the same last-token value at every chosen position.

The hook point is the input of the MLP output projection, the raw a (for Gemma-2/3 and
OLMo-2 the norm on the MLP output then acts on the changed sum, as for zeroing). So the
`mean` and `patch` values are raw activations at that point too, not the effective
a / rms(u) that `capture` reports.

A pre-hook on the decoder stack reads the attention mask (left or right padding) and
whether a cache is already filled (a generation step); pre-hooks on the MLP output
projections replace the chosen activations at those positions. Analyses pass an
`Intervention` through without knowing its kind; where none is passed, `deactivated`
uses the one set by `applying(...)` (default `zero`), so a caller can change the
intervention of an analysis that only takes neuron sets.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import numpy as np
import torch

from .capture import Internals, as_texts, capture, iter_internals, last_token_index, make_batches
from .errors import TransferNeuronsError
from .models.loaded import LoadedModel
from .neuron_sets import check_neurons

MODES = ("last", "all", "prompt_last")
KINDS = ("zero", "scale:F", "mean", "patch")

LOG = logging.getLogger(__name__)


def neurons_by_layer(neurons: np.ndarray, num_layers: int, d_ff: int) -> dict[int, torch.Tensor]:
    """Group a [n, 2] (layer, neuron) array by layer, checking its shape, its integer type and every index."""
    neurons = check_neurons(neurons)
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


class _OnDevices:
    """One tensor, copied to a device the first time it is needed there: a host-to-device copy
    waits for the GPU, so hooks that run per layer and step must not repeat it."""

    def __init__(self, tensor: torch.Tensor):
        self.copies = {tensor.device: tensor}
        self.source = tensor

    def on(self, device: torch.device) -> torch.Tensor:
        """The tensor on `device`."""
        if device not in self.copies:
            self.copies[device] = self.source.to(device)
        return self.copies[device]


class _Positions:
    """Which token positions of the current forward pass are intervened on: [batch, seq] bool.

    For prompt passes it also keeps each row's real token ids (patch looks its rows up by them).
    """

    def __init__(self, mode: str, keep_tokens: bool = False):
        """mode: one of MODES; keep_tokens: remember each prompt row's real token ids (patch)."""
        if mode not in MODES:
            raise TransferNeuronsError(f"deactivation mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.keep_tokens = keep_tokens
        self.mask: torch.Tensor | None = None  # [batch, seq]
        self.active = False  # whether the mask can hold a position: known on the host, so no device sync
        self.tokens: list[tuple[int, ...]] | None = None  # real token ids of each row of the last prompt pass
        self.prompt = 0  # counts prompt passes, so per-prompt values can be cached until the next one
        self.masks: _OnDevices | None = None  # the current mask on each layer's device (device_map)

    def update(self, module, args, kwargs) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        embeds = ids is None
        if embeds:
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
        self.active = self.mode == "last" or not generating
        self.masks = _OnDevices(mask)
        if not generating:
            self.prompt += 1
        if self.keep_tokens and not generating:  # a generation step keeps its prompt's rows
            self.tokens = None if embeds else [tuple(row[keep].tolist()) for row, keep in zip(ids.cpu(), real.cpu())]


class Intervention:
    """What the chosen activations become; `bind` turns it into per-layer replacements for one neuron set."""

    @property
    def spec(self) -> str:
        """The spec string that names this intervention (parse_intervention reads it back)."""
        raise NotImplementedError

    def bind(self, lm: LoadedModel, groups: dict[int, torch.Tensor]) -> _Bound:
        """Values this intervention needs for these neurons (layer -> neuron indices) on this model."""
        return _Bound(self)

    def replace(self, chosen: torch.Tensor, values: torch.Tensor | None, rows: torch.Tensor | None) -> torch.Tensor:
        """New values of the chosen activations [batch, seq, k], given the bound values of their layer
        ([k] or [source, k]) and, for patch, each input row's source row [batch]."""
        raise NotImplementedError


@dataclass
class _Bound:
    """An intervention bound to a model and neuron set: replace(layer, chosen [batch, seq, k], positions)."""

    intervention: Intervention
    values: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> [k] (mean) or [source, k] (patch)
    rows: dict[tuple[int, ...], int] | None = None  # patch: target token ids -> source row
    _placed: dict = field(default_factory=dict)  # (layer, device, dtype) -> values there
    _rows: tuple | None = None  # ((prompt pass, batch, device), [batch] source rows) of the latest pass

    def replace(self, layer: int, chosen: torch.Tensor, positions: _Positions) -> torch.Tensor:
        """The new values of the chosen activations (only read where positions.mask is set).

        A host-to-device copy waits for the GPU, so values reach a layer's device once and patch's
        source rows once per prompt pass and device, not once per layer and step."""
        values = self.values.get(layer)
        if values is not None:
            key = (layer, chosen.device, chosen.dtype)
            if key not in self._placed:
                self._placed[key] = values.to(chosen.device, chosen.dtype)
            values = self._placed[key]
        rows = None
        if self.rows is not None:
            key = (positions.prompt, chosen.shape[0], chosen.device)
            if self._rows is None or self._rows[0] != key:
                self._rows = (key, source_rows(positions.tokens, self.rows, chosen.shape[0]).to(chosen.device))
            rows = self._rows[1]
        return self.intervention.replace(chosen, values, rows)


@dataclass(frozen=True)
class Zero(Intervention):
    """a = 0 (method.md §5 deactivation)."""

    @property
    def spec(self) -> str:
        return "zero"

    def replace(self, chosen: torch.Tensor, values: torch.Tensor | None, rows: torch.Tensor | None) -> torch.Tensor:
        return torch.zeros_like(chosen)


@dataclass(frozen=True)
class Scale(Intervention):
    """a = factor * a: dampen (factor < 1) or amplify (factor > 1)."""

    factor: float

    def __post_init__(self) -> None:
        if isinstance(self.factor, bool) or not isinstance(self.factor, (int, float)) or not np.isfinite(self.factor):
            raise TransferNeuronsError(f"scale factor must be a finite number, got {self.factor!r}")

    @property
    def spec(self) -> str:
        return f"scale:{self.factor:g}"

    def replace(self, chosen: torch.Tensor, values: torch.Tensor | None, rows: torch.Tensor | None) -> torch.Tensor:
        return chosen * self.factor


@dataclass(frozen=True, eq=False)
class Mean(Intervention):
    """a = the neuron's mean raw activation at the last real token of the reference sentences."""

    reference: tuple[str, ...]
    batch_size: int = 16
    _means: dict = field(default_factory=dict, repr=False)  # id(model) -> [layer, d_ff] float64

    def __post_init__(self) -> None:
        object.__setattr__(self, "reference", tuple(as_texts(self.reference, "reference")))
        if not self.reference:
            raise TransferNeuronsError("the mean intervention needs at least one reference sentence")

    @property
    def spec(self) -> str:
        return "mean"

    def means(self, lm: LoadedModel) -> torch.Tensor:
        """Mean raw activation of every neuron over the reference sentences: [layer, d_ff] float64 (cached)."""
        key = id(lm.model)
        if key not in self._means:
            view = lm.view
            everything = {layer: torch.arange(view.d_ff) for layer in range(view.num_layers)}
            totals: dict[int, torch.Tensor] = {}  # layer -> [d_ff] float64 on the layer's device
            LOG.info("mean intervention: averaging activations over %d reference sentences", len(self.reference))
            for _, acts in last_token_activations(lm, self.reference, everything, self.batch_size):
                for layer, a in acts.items():
                    totals[layer] = a.double().sum(dim=0) + totals.get(layer, 0)
            total = torch.stack([totals[layer].cpu() for layer in range(view.num_layers)])  # [layer, d_ff]
            self._means[key] = total / len(self.reference)
        return self._means[key]

    def bind(self, lm: LoadedModel, groups: dict[int, torch.Tensor]) -> _Bound:
        means = self.means(lm)
        return _Bound(self, {layer: means[layer, index] for layer, index in groups.items()})

    def replace(self, chosen: torch.Tensor, values: torch.Tensor | None, rows: torch.Tensor | None) -> torch.Tensor:
        return values.expand_as(chosen)  # [k] -> [batch, seq, k]


@dataclass(frozen=True, eq=False)
class Patch(Intervention):
    """a = the neuron's raw activation at the last real token of the source paired with the input.

    sources[i] pairs with targets[i] (e.g. English and L2 sides of parallel pairs); an input the
    model runs on must tokenise exactly as one of the targets does.
    """

    sources: tuple[str, ...]
    targets: tuple[str, ...]
    batch_size: int = 16
    _rows: dict = field(default_factory=dict, repr=False)  # id(tokenizer) -> {target token ids: source row}
    _values: dict = field(default_factory=dict, repr=False)  # (id(model), neuron set) -> {layer: [source, k]}

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", tuple(as_texts(self.sources, "sources")))
        object.__setattr__(self, "targets", tuple(as_texts(self.targets, "targets")))
        if len(self.sources) != len(self.targets) or not self.sources:
            raise TransferNeuronsError(
                f"the patch intervention needs as many source as target sentences (at least one), "
                f"got {len(self.sources)} and {len(self.targets)}"
            )

    @property
    def spec(self) -> str:
        return "patch"

    def _lookup(self, lm: LoadedModel) -> dict[tuple[int, ...], int]:
        """Real token ids of each target (tokenised as capture does) -> its row; one source per distinct target."""
        key = id(lm.tokenizer)
        if key not in self._rows:
            rows: dict[tuple[int, ...], int] = {}
            tokens = [(row, tuple(ids[real.bool()].tolist()))
                      for batch in make_batches(lm, self.targets, self.batch_size, sort_by_length=False)
                      for row, ids, real in zip(batch.indices, batch.input_ids, batch.attention_mask)]
            for row, ids in tokens:
                first = rows.setdefault(ids, row)
                if self.sources[first] != self.sources[row]:
                    raise TransferNeuronsError(
                        f"patch: target sentence {self.targets[row]!r} appears twice with different sources "
                        f"({self.sources[first]!r} and {self.sources[row]!r})"
                    )
            self._rows[key] = rows
        return self._rows[key]

    def bind(self, lm: LoadedModel, groups: dict[int, torch.Tensor]) -> _Bound:
        lookup = self._lookup(lm)
        key = (id(lm.model), tuple((layer, tuple(index.tolist())) for layer, index in groups.items()))
        if key not in self._values:
            LOG.debug("patch intervention: capturing activations of %d source sentences", len(self.sources))
            parts: dict[int, list[torch.Tensor]] = {layer: [] for layer in groups}
            order: list[int] = []
            for indices, acts in last_token_activations(lm, self.sources, groups, self.batch_size):
                order.extend(indices)
                for layer in groups:
                    parts[layer].append(acts[layer])
            inverse = torch.empty(len(order), dtype=torch.long)
            inverse[torch.tensor(order)] = torch.arange(len(order))
            self._values[key] = {layer: torch.cat(chunks)[inverse.to(chunks[0].device)]  # [source, k], on its device
                                 for layer, chunks in parts.items()}
        return _Bound(self, self._values[key], lookup)

    def replace(self, chosen: torch.Tensor, values: torch.Tensor | None, rows: torch.Tensor | None) -> torch.Tensor:
        return values[rows][:, None, :].expand_as(chosen)  # [source, k] -> [batch, seq, k]


def source_rows(tokens: list[tuple[int, ...]] | None, lookup: dict[tuple[int, ...], int], batch: int) -> torch.Tensor:
    """The patch source row of each input row of the current pass, found by its real token ids: [batch]."""
    if tokens is None:
        raise TransferNeuronsError("patch needs token ids; the model was run on input embeddings")
    if len(tokens) != batch:
        raise TransferNeuronsError(f"patch: a generation step has {batch} rows but its prompt had {len(tokens)}")
    missing = [row for row in tokens if row not in lookup]
    if missing:
        raise TransferNeuronsError(
            f"patch: the model ran on an input ({len(missing[0])} tokens) that is none of the patch's target "
            "sentences; patch needs parallel pairs whose L2 side is the input"
        )
    return torch.tensor([lookup[row] for row in tokens])


ZERO = Zero()
_ACTIVE: ContextVar[Intervention] = ContextVar("transfer_neurons_intervention", default=ZERO)


def parse_intervention(
    spec: str | Intervention,
    reference: Sequence[str] | None = None,
    sources: Sequence[str] | None = None,
    targets: Sequence[str] | None = None,
) -> Intervention:
    """An Intervention from `zero`, `scale:F`, `mean` (needs reference) or `patch` (needs sources and targets)."""
    if isinstance(spec, Intervention):
        return spec
    kind, sep, arg = str(spec).strip().partition(":")
    if kind == "zero" and not sep:
        return ZERO
    if kind == "scale" and sep:
        try:
            return Scale(float(arg))
        except ValueError:
            pass
    if kind == "mean" and not sep:
        if not reference:
            raise TransferNeuronsError("intervention 'mean' needs reference sentences to average over")
        return Mean(tuple(reference))
    if kind == "patch" and not sep:
        if not sources or not targets:
            raise TransferNeuronsError("intervention 'patch' needs parallel pairs (source and target sentences)")
        return Patch(tuple(sources), tuple(targets))
    raise TransferNeuronsError(f"intervention {spec!r}: expected one of {', '.join(KINDS)} (F a number, e.g. scale:0.5)")


def intervention_for(spec: str, pairs=None, reference: Sequence[str] | None = None) -> Intervention:
    """The intervention a spec names for one analysis: mean over `reference` (default the pairs' L2 side),
    patch from each pair's hub sentence to its L2 sentence; `pairs` is a ParallelPairs or None."""
    if spec == "patch" and pairs is None:
        raise TransferNeuronsError("intervention patch needs parallel pairs, which this analysis does not use; "
                                   "choose zero, scale:F or mean")
    if spec == "mean" and reference is None and pairs is None:
        raise TransferNeuronsError("intervention mean needs sentences to average over, which this analysis does not "
                                   "read; choose zero or scale:F")
    return parse_intervention(spec, reference=reference if reference is not None else pairs.l2 if pairs else None,
                              sources=pairs.hub if pairs else None, targets=pairs.l2 if pairs else None)


def active_intervention() -> Intervention:
    """The intervention `deactivated` applies when none is passed (set by `applying`; default zero)."""
    return _ACTIVE.get()


@contextmanager
def applying(intervention: Intervention | str) -> Iterator[Intervention]:
    """Within the block, `deactivated` and `capture_under` apply this intervention unless given another."""
    intervention = parse_intervention(intervention)  # a spec string (zero, scale:F) or an Intervention
    token = _ACTIVE.set(intervention)
    try:
        yield intervention
    finally:
        _ACTIVE.reset(token)


@contextmanager
def deactivated(
    lm: LoadedModel, neurons: np.ndarray, mode: str = "last", intervention: Intervention | str | None = None
) -> Iterator[None]:
    """Within the block, the (layer, neuron) activations are intervened on at the mode's positions
    (default: the active intervention, zero unless `applying` set another)."""
    view = lm.view
    groups = neurons_by_layer(neurons, view.num_layers, view.d_ff)
    positions = _Positions(mode)  # checks the mode before bind may run the model
    chosen = parse_intervention(intervention) if intervention is not None else active_intervention()
    bound = chosen.bind(lm, groups)
    positions.keep_tokens = bound.rows is not None
    handles = [view.decoder.register_forward_pre_hook(positions.update, with_kwargs=True)]
    for layer, index in groups.items():
        handles.append(view.out_proj(layer).register_forward_pre_hook(_replacer(bound, positions, layer, index)))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _replacer(bound: _Bound, positions: _Positions, layer: int, index: torch.Tensor):
    """A pre-hook that replaces a[..., index] by the bound intervention's values where positions.mask is set.

    It reads nothing back from the device and copies `index` there once: on a GPU either would wait for
    the queued kernels, once per deactivated layer and decoding step."""

    placed = _OnDevices(index)

    def hook(module, args):
        if not positions.active:  # e.g. a generation step under modes `all` and `prompt_last`
            return None
        a = args[0]  # [batch, seq, d_ff]
        hit = positions.masks.on(a.device)[..., None]  # [batch, seq, 1]
        index_on = placed.on(a.device)
        chosen = a[..., index_on]  # [batch, seq, k]
        a = a.clone()
        a[..., index_on] = torch.where(hit, bound.replace(layer, chosen, positions), chosen)
        return (a, *args[1:])

    return hook


def last_token_activations(
    lm: LoadedModel, texts: Sequence[str], groups: dict[int, torch.Tensor], batch_size: int = 16
) -> Iterator[tuple[list[int], dict[int, torch.Tensor]]]:
    """Raw activations (input of the MLP output projection) of the grouped neurons at each text's
    last real token, per batch: (input indices, layer -> [batch, k] float32 on the layer's device)."""
    positions = _Positions("last")
    kept: dict[int, torch.Tensor] = {}

    def keeper(layer: int, index: torch.Tensor):
        placed = _OnDevices(index)

        def hook(module, args):
            a = args[0]  # [batch, seq, d_ff]
            kept[layer] = a[positions.masks.on(a.device)][:, placed.on(a.device)].float()  # [batch, k]

        return hook

    view = lm.view
    handles = [view.decoder.register_forward_pre_hook(positions.update, with_kwargs=True)]
    handles += [view.out_proj(layer).register_forward_pre_hook(keeper(layer, index)) for layer, index in groups.items()]
    try:
        for indices, _ in iter_internals(lm, texts, ("embed",), batch_size, progress=None, device=lm.view.device):
            yield indices, dict(kept)
    finally:
        for handle in handles:
            handle.remove()


def capture_under(
    lm: LoadedModel,
    texts: Sequence[str],
    neurons: np.ndarray | None,
    want: Sequence[str] = ("h",),
    batch_size: int = 16,
    mode: str = "last",
    progress: str | None = "capture",
    intervention: Intervention | None = None,
) -> Internals:
    """Capture last-token internals with the given neurons intervened on (None: no intervention)."""
    if neurons is None:
        return capture(lm, texts, want, batch_size, progress=progress)
    with deactivated(lm, neurons, mode, intervention):
        return capture(lm, texts, want, batch_size, progress=progress)
