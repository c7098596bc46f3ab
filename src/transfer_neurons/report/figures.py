"""Figures the study draws itself (the analyses draw their own): where detected neurons sit."""

from __future__ import annotations

from matplotlib.figure import Figure
import numpy as np

from ..detection import Detection


def detection_figure(det: Detection, model: str) -> Figure:
    """Neurons per layer of a detection's ranked set, candidate layers shaded, with the best score per layer."""
    num_layers = det.scores.shape[0]
    counts = np.bincount(det.neurons[:, 0], minlength=num_layers)  # [layer]
    fig = Figure(figsize=(7.5, 3.6))
    ax = fig.subplots()
    layers = np.arange(num_layers)
    ax.axvspan(min(det.layers) - 0.5, max(det.layers) + 0.5, color="grey", alpha=0.12, lw=0, label="candidate layers")
    ax.bar(layers, counts, color="tab:red" if det.neuron_type == "type1" else "tab:blue",
           label=f"top {len(det.neurons)} {det.neuron_type} neurons")
    ax.set_xlabel("layer (0-based)")
    ax.set_ylabel("neurons in the ranked set")
    ax.set_xticks(layers)
    best = ax.twinx()
    best.plot(layers, det.scores.max(axis=1), "k.--", lw=0.8, label="best score in layer (any neuron)")
    best.set_ylabel("best neuron score")
    handles = ax.get_legend_handles_labels()[0] + best.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], fontsize=8, loc="upper left")
    ax.set_title(f"{model} — {det.neuron_type} transfer neurons, {det.lang}: count per layer")
    fig.tight_layout()
    return fig
