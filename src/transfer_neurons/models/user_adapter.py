"""A user-declared adapter for an architecture this package does not know (`--adapter FILE`).

The file (YAML or JSON) holds the fields of `Adapter`, e.g. for a Llama-like model:

    decoder: model
    layers: layers
    out_proj: mlp.down_proj
    mlp_out_norm: post_feedforward_layernorm   # only if an RMS norm follows the MLP
    norm_gain_offset: 1.0                      # only if the norm stores gain - 1

An adapter is trusted only after it reconstructs the model at load time, on a short
probe, at each sentence's last token and every layer l (method.md §2):
- what the MLP block adds: `h[l] - h[l]` with a[l] zeroed equals `Σ_i a_i v_i`
  (effective activations and value vectors), which tests out_proj, the norm and its gain;
- the decomposition `h[l] = m[l] + Σ_i a_i v_i (+ bias)`, which tests the module whose
  output `m[l]` is taken from.
A mismatch raises ModelLoadError with the relative error it measured.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch

from ..capture import capture
from ..errors import ModelLoadError
from ..option_files import read_options
from .adapters import Adapter, ModelView

PROBE = ("The cat sleeps on the warm windowsill.", "Wo ist der Bahnhof?", "猫が寝ている。")
TOLERANCE = {torch.float32: 1e-3, torch.float64: 1e-6}  # relative error; half precision: HALF_TOLERANCE
HALF_TOLERANCE = 5e-2  # bf16/fp16 residual streams round to ~3 significant digits


def _field_kinds() -> dict[str, tuple[type, bool]]:
    """Each Adapter field's accepted Python type and whether null is allowed."""
    kinds = {}
    for f in dataclasses.fields(Adapter):
        text = str(f.type)
        kind = bool if "bool" in text else float if "float" in text else str
        kinds[f.name] = (kind, "None" in text)
    return kinds


def _accepts(kind: type, value: object) -> bool:
    """Whether a YAML/JSON value fits an Adapter field of this type (a bool is no float; a str is not empty)."""
    if kind is bool:
        return isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, str) and bool(value)


def read_adapter(path: str | Path) -> Adapter:
    """Parse an adapter file (YAML or JSON mapping of Adapter fields) and check every value's type."""
    path = Path(path)
    fields = read_options(path, "adapter", "adapter", ModelLoadError)
    kinds = _field_kinds()
    unknown = sorted(set(fields) - set(kinds))
    if unknown:
        raise ModelLoadError(f"adapter {path}: unknown field(s) {', '.join(unknown)}; known: {', '.join(kinds)}",
                             option="adapter")
    for name, value in fields.items():
        kind, nullable = kinds[name]
        if not (value is None and nullable) and not _accepts(kind, value):
            raise ModelLoadError(f"adapter {path}: field {name!r} must be a {kind.__name__}"
                                 f"{' or null' if nullable else ''}, got {value!r}", option="adapter")
    return Adapter(**fields)


def view_with(model: torch.nn.Module, adapter: Adapter, source: str) -> ModelView:
    """A ModelView over the model, or an error naming the adapter path that does not exist."""
    try:
        view = ModelView(model, adapter)
        for layer in range(view.num_layers):  # resolve every path now, not mid-analysis
            view.out_proj(layer)
            view.mlp_output(layer)
    except (AttributeError, TypeError, IndexError) as err:
        raise ModelLoadError(f"adapter {source}: a module path does not exist in {type(model).__name__} ({err})",
                             option="adapter") from None
    return view


@contextmanager
def _zeroed(view: ModelView, layer: int) -> Iterator[None]:
    """Zero a[layer] (the out_proj input) at every position."""
    handle = view.out_proj(layer).register_forward_pre_hook(lambda module, args: (torch.zeros_like(args[0]),) + args[1:])
    try:
        yield
    finally:
        handle.remove()


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """Largest ‖got - want‖ / ‖want‖ over rows ([n, d_model] each)."""
    return float(((got - want).norm(dim=-1) / want.norm(dim=-1).clamp_min(1e-12)).max())


def reconstruction_errors(lm, probe: Sequence[str] = PROBE) -> dict[str, list[float]]:
    """Per layer, the relative errors of the two identities the module docstring states."""
    view = lm.view
    base = capture(lm, list(probe), want=("h", "m", "a"), batch_size=len(probe), progress=None)
    added, decomposition = [], []
    for layer in range(view.num_layers):
        values = view.value_vectors(layer)  # [d_ff, d_model]
        if values.shape[0] != base.a.shape[2] or values.shape[1] != base.h.shape[2]:
            raise ModelLoadError(
                f"value vectors of layer {layer} are {tuple(values.shape)} but a[l] has {base.a.shape[2]} neurons "
                f"and h[l] width {base.h.shape[2]}: out_proj or value_vectors_are_rows is wrong"
            )
        neuron_sum = base.a[:, layer] @ values  # [n, d_model]
        with _zeroed(view, layer):
            zeroed = capture(lm, list(probe), want=("h",), batch_size=len(probe), progress=None).h[:, layer]
        added.append(_relative_error(neuron_sum, base.h[:, layer] - zeroed))
        bias = view.out_bias(layer)
        mlp_part = neuron_sum if bias is None else neuron_sum + bias  # [n, d_model]; h - m is what the block added
        decomposition.append(_relative_error(mlp_part, base.h[:, layer] - base.m[:, layer]))
    return {"mlp_added": added, "decomposition": decomposition}


def check_adapter(lm, source: str) -> dict[str, float]:
    """Raise ModelLoadError with the measured error unless the adapter reconstructs every layer."""
    dtype = next(lm.model.parameters()).dtype
    tolerance = TOLERANCE.get(dtype, HALF_TOLERANCE)
    try:
        errors = reconstruction_errors(lm)
    except (IndexError, RuntimeError, ValueError, TypeError) as err:  # hooks on modules of other shapes or roles
        raise ModelLoadError(f"adapter {source}: capturing through its modules failed ({type(err).__name__}: "
                             f"{' '.join(str(err).split())[:200]}); each MLP input must be [batch, seq, d_ff] and each "
                             "layer output [batch, seq, d_model]: check decoder, out_proj and final_norm",
                             option="adapter") from None
    worst = {name: max(values) for name, values in errors.items()}
    for name, what in (("mlp_added", "h[l] - h[l] with a[l] zeroed = Σ a_i v_i"),
                       ("decomposition", "h[l] = m[l] + Σ a_i v_i (+ bias)")):
        if worst[name] > tolerance:
            layer = max(range(len(errors[name])), key=errors[name].__getitem__)
            raise ModelLoadError(
                f"adapter {source} does not reconstruct the model: {what} fails with relative error "
                f"{worst[name]:.3g} at layer {layer} (tolerance {tolerance:g} for {dtype}); check out_proj, "
                "mlp_out_norm and norm_gain_offset", option="adapter"
            )
    return worst
