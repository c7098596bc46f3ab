"""Architecture adapters: where each model family keeps the quantities of method.md §2.

One declarative `Adapter` entry per Hugging Face `model_type` tells the rest of the
code where the decoder layers are, which module's input is the neuron activation
`a[l]` (the MLP output projection), which module's output the layer adds to the
residual (so `m[l] = h[l] - that output`), and whether that output passes an RMS norm.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ModelLoadError


@dataclass(frozen=True)
class Adapter:
    """Module paths (dotted, relative to the causal LM) and MLP facts of one architecture."""

    decoder: str = "model"  # the stack: embeddings, layers, final norm
    layers: str = "layers"  # relative to `decoder`
    out_proj: str = "mlp.down_proj"  # relative to a layer; its input is a[l]
    mlp_out_norm: str | None = None  # relative to a layer; RMS norm on the MLP output
    mlp_output_module: str | None = None  # relative to a layer, where the MLP module's own output is not it
    norm_gain_offset: float = 0.0  # Gemma stores the gain as weight - 1
    value_vectors_are_rows: bool = False  # GPT-2's Conv1D stores W as [d_ff, d_model]
    final_norm: str = "norm"  # relative to `decoder`
    unembed: str = "lm_head"  # relative to the causal LM
    logit_scale: str | None = None  # config attribute the head multiplies logits by (Cohere)

    @property
    def mlp_output(self) -> str:
        """The module (relative to a layer) whose output the layer adds to the residual."""
        return self.mlp_out_norm or self.mlp_output_module or self.out_proj.rsplit(".", 1)[0]


_SANDWICH = dict(mlp_out_norm="post_feedforward_layernorm")

ADAPTERS: dict[str, Adapter] = {
    "llama": Adapter(),
    "mistral": Adapter(),
    "qwen2": Adapter(),
    "qwen3": Adapter(),
    "phi3": Adapter(),  # fused gate_up_proj; down_proj still reads a[l]
    "gemma": Adapter(),
    "gemma2": Adapter(**_SANDWICH, norm_gain_offset=1.0),
    "gemma3_text": Adapter(**_SANDWICH, norm_gain_offset=1.0),
    "gemma3": Adapter(decoder="model.language_model", **_SANDWICH, norm_gain_offset=1.0),
    "olmo2": Adapter(**_SANDWICH),
    "gpt2": Adapter(
        decoder="transformer", layers="h", out_proj="mlp.c_proj",
        value_vectors_are_rows=True, final_norm="ln_f",
    ),
    "gpt_neox": Adapter(
        decoder="gpt_neox", out_proj="mlp.dense_4h_to_h", final_norm="final_layer_norm",
    ),
    # Cohere (Aya-expanse, Command-R): attention and MLP read the same LayerNorm output
    # in parallel, so m[l] = h[l-1] + attention; logits are scaled by config.logit_scale
    "cohere": Adapter(logit_scale="logit_scale"),
    "cohere2": Adapter(logit_scale="logit_scale"),
    # BLOOM's MLP module returns residual + MLP output, so the projection's own output
    # (with its bias) is what the MLP block adds
    "bloom": Adapter(
        decoder="transformer", layers="h", out_proj="mlp.dense_4h_to_h",
        mlp_output_module="mlp.dense_4h_to_h", final_norm="ln_f",
    ),
}


def adapter_for(model: nn.Module) -> Adapter:
    """The adapter of a loaded model, or an error naming its type and the supported ones."""
    model_type = getattr(model.config, "model_type", None)
    if model_type not in ADAPTERS:
        raise ModelLoadError(
            f"model type {model_type!r} ({type(model).__name__}) has no architecture adapter; "
            f"supported: {', '.join(sorted(ADAPTERS))}; or declare its module paths with adapter=FILE",
            mentions=("adapter",),
        )
    return ADAPTERS[model_type]


def _get(root: nn.Module, path: str) -> nn.Module:
    """Follow a dotted attribute path from `root`."""
    for name in path.split("."):
        root = getattr(root, name)
    return root


class ModelView:
    """A loaded causal LM seen through its adapter: layers, projections, value vectors."""

    def __init__(self, model: nn.Module, adapter: Adapter | None = None):
        self.model = model
        self.adapter = adapter or adapter_for(model)
        self.decoder = _get(model, self.adapter.decoder)
        self.layers: nn.ModuleList = _get(self.decoder, self.adapter.layers)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def d_ff(self) -> int:
        weight = self.out_proj(0).weight
        return weight.shape[0] if self.adapter.value_vectors_are_rows else weight.shape[1]

    @property
    def d_model(self) -> int:
        weight = self.out_proj(0).weight
        return weight.shape[1] if self.adapter.value_vectors_are_rows else weight.shape[0]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def out_proj(self, layer: int) -> nn.Module:
        return _get(self.layers[layer], self.adapter.out_proj)

    def mlp_output(self, layer: int) -> nn.Module:
        return _get(self.layers[layer], self.adapter.mlp_output)

    def mlp_out_norm(self, layer: int) -> nn.Module | None:
        name = self.adapter.mlp_out_norm
        return None if name is None else _get(self.layers[layer], name)

    def final_norm(self) -> nn.Module:
        return _get(self.decoder, self.adapter.final_norm)

    def unembed(self) -> nn.Module:
        return _get(self.model, self.adapter.unembed)

    def precision(self, source: str = "") -> dict[str, str]:
        """The dtype the weights run in and any quantisation (bitsandbytes etc., or a GGUF source de-quantised on load)."""
        dtype = str(next(self.model.parameters()).dtype).removeprefix("torch.")
        config = getattr(self.model.config, "quantization_config", None)
        get = (lambda key: config.get(key)) if isinstance(config, dict) else (lambda key: getattr(config, key, None))
        method = str(getattr(get("quant_method"), "value", get("quant_method"))) if config is not None else ""
        if config is not None and method.lower() != "gguf":  # GGUF weights are de-quantised when loaded
            bits = get("bits")
            return {"dtype": dtype, "quantisation": method + (f" {bits}-bit" if bits else "")}
        if ".gguf" in source.lower() or method.lower() == "gguf":
            found = re.search(r"(?i)(i?q\d+_[a-z0-9_]+?|bf16|f16|f32)(?=\.gguf)", source)
            kind = found.group(1).upper() if found else "quantised"
            return {"dtype": dtype, "quantisation": f"GGUF {kind}, de-quantised to {dtype} on load"}
        return {"dtype": dtype, "quantisation": "none"}

    def logit_scale(self) -> float:
        """The factor the model's head multiplies its logits by (1 for most architectures)."""
        name = self.adapter.logit_scale
        return 1.0 if name is None else float(getattr(self.model.config, name))

    def final_softcap(self) -> float | None:
        """The head's final logit softcapping (Gemma 2), or None."""
        config = self.model.config
        config = config.get_text_config() if hasattr(config, "get_text_config") else config
        return getattr(config, "final_logit_softcapping", None)

    @torch.no_grad()
    def head_logits(self, final: torch.Tensor) -> torch.Tensor:
        """The model's own logits from final-norm states (the decoder's output): [rows, d_model] -> [rows, vocab]
        float32; unembedding, then the architecture's logit scale (Cohere) or final softcapping (Gemma 2).

        The states are made contiguous first: on CPU, a linear layer given a strided view (a sequence's
        last positions) ran 10x slower (1.47 s instead of 0.14 s for 64 rows of Gemma 3's 262k vocabulary)."""
        unembed = self.unembed()
        logits = unembed(final.to(unembed.weight.device, unembed.weight.dtype).contiguous()).float() * self.logit_scale()
        cap = self.final_softcap()
        return torch.tanh(logits / cap) * cap if cap else logits

    def norm_eps(self, layer: int) -> float:
        """Epsilon of the MLP-output RMS norm (0 where there is none)."""
        norm = self.mlp_out_norm(layer)
        if norm is None:
            return 0.0
        return float(getattr(norm, "eps", getattr(norm, "variance_epsilon", 1e-6)))

    @torch.no_grad()
    def value_gain(self, layer: int) -> torch.Tensor | None:
        """Gain g of the MLP-output norm (effective value = g * v), float32, or None."""
        norm = self.mlp_out_norm(layer)
        if norm is None:
            return None
        return norm.weight.detach().float() + self.adapter.norm_gain_offset

    @torch.no_grad()
    def value_vectors(self, layer: int, neurons: slice = slice(None)) -> torch.Tensor:
        """Effective value vectors of one layer's neurons (all, or a slice), float32: [neuron, d_model] (method.md §2)."""
        weight = self.out_proj(layer).weight.detach()
        values = (weight[neurons] if self.adapter.value_vectors_are_rows else weight[:, neurons].T).float()
        gain = self.value_gain(layer)
        return values if gain is None else values * gain.to(values.device)[None, :]

    @torch.no_grad()
    def value_gains(self, layers: range) -> torch.Tensor | None:
        """Gains of the MLP-output norms of consecutive layers on one device: [g, d_model] float32, or None."""
        gains = [self.value_gain(layer) for layer in layers]
        return None if gains[0] is None else torch.stack(gains)

    @torch.no_grad()
    def dot_values(self, layers: range, x: torch.Tensor, gains: torch.Tensor | None = None) -> torch.Tensor:
        """x[i] . eff_v_j for every neuron j of layer layers[i], without copying a weight: [g, n, d_model] -> [g, n, d_ff].

        The layers share one device; gains are their value_gains (None where there is no
        MLP-output norm). The result is in the weights' dtype: half-precision weights multiply
        in their dtype (float32 accumulation) as the forward does, rather than be copied to float32.
        """
        weights = [self.out_proj(layer).weight for layer in layers]
        x = x.to(weights[0].device, torch.float32)
        if gains is not None:
            x = x * gains[:, None, :]
        x = x.to(weights[0].dtype)
        out = torch.empty(len(weights), x.shape[1], self.d_ff, dtype=x.dtype, device=x.device)  # [g, n, d_ff]
        for i, weight in enumerate(weights):
            # Linear stores W as [d_model, d_ff]; GPT-2's Conv1D as [d_ff, d_model]
            torch.matmul(x[i], weight.T if self.adapter.value_vectors_are_rows else weight, out=out[i])
        return out

    @torch.no_grad()
    def out_bias(self, layer: int) -> torch.Tensor | None:
        """The output projection's bias (belongs to no neuron), float32 on CPU, or None."""
        bias = getattr(self.out_proj(layer), "bias", None)
        return None if bias is None else bias.detach().float().cpu()
