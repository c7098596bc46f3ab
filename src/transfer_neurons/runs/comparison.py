"""Hub–L2 comparisons under deactivation, written to one folder: similarity (h), activations (a), alignment.

`similarity` and `activations` share one layout (NAME.csv per layer, NAME_mid.csv, NAME.json,
NAME_values.npy and two figures); `alignment` writes alignment.csv/_mid.csv/.json and two figures.
All three read their states from the same StateProvider, so a study captures each
(sentences, condition) once for the three.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..analyses.activations import activation_similarity
from ..analyses.alignment import CKA, alignment_tables, kernel_alignment, knn_metric, metric_title, plot_alignment
from ..analyses.similarity import (
    KIND_TITLES, METRIC_TITLES, effect_tables, hidden_similarity, plot_layer_curves, plot_mid_drop, with_magnitude_ratios,
)
from ..conditions import Condition
from ..data import ParallelPairs
from ..detection import Detection
from ..interventions import active_intervention
from ..outputs import save_figure, save_npy, write_csv, write_json
from ..states import StateProvider
from .common import Summary, describe_conditions, effects_table, effects_text

QUANTITIES = {
    "h": ("similarity", "hidden-state similarity", "h[l]", hidden_similarity),
    "a": ("activations", "activation-pattern similarity", "a[l]", activation_similarity),
}
"""quantity -> (file stem, what it is, axis label, analysis)."""


@dataclass
class PairInputs:
    """What a hub–L2 comparison reads: states, pairs, the detection and its conditions, layers, settings."""

    states: StateProvider
    model: str
    pairs: ParallelPairs
    det: Detection
    conditions: list[Condition]
    mid: tuple[int, ...]  # layers of the mid-layer summary
    mid_rule: str  # how they were chosen
    seed: int = 0
    mode: str = "last"
    neurons_from: str | None = None  # the detection folder, for the record

    def meta(self) -> dict:
        """What a result depends on: model, data, neurons, conditions, layers and settings."""
        return {
            "model": self.model, "hub_lang": self.pairs.hub_lang, "lang": self.pairs.lang, "data": self.pairs.name,
            "pairs": len(self.pairs), "neuron_type": self.det.neuron_type, "neurons_from": self.neurons_from,
            "mode": self.mode, "intervention": active_intervention().spec, "seed": self.seed,
            "num_layers": int(self.det.scores.shape[0]),
            "mid_layers": list(self.mid), "mid_layers_rule": self.mid_rule,
            "conditions": describe_conditions(self.conditions),
            "nonparallel": "seeded derangement of the same pairs (no sentence meets a translation of its own hub sentence)",
            "centring": "one mean per layer over the undeactivated hub and L2 states, shared by all conditions",
            "drop": "none − condition (positive: deactivation lowered the value)",
        }

    def where(self) -> str:
        """`TYPE neurons deactivated, HUB–LANG` for titles."""
        return f"{self.det.neuron_type} neurons deactivated, {self.pairs.hub_lang}–{self.pairs.lang}"


def run_similarity(inputs: PairInputs, out: Path, quantity: str = "h") -> Summary:
    """Cosine of h[l] (quantity "h") or a[l] ("a") between hub and L2 sentences per layer and condition."""
    name, what, label, analyse = QUANTITIES[quantity]
    cos = analyse(inputs.states, inputs.pairs, inputs.conditions, inputs.seed, inputs.states.batch_size, inputs.mode,
                  progress=False)
    per_layer, mid_rows = effect_tables(cos, inputs.conditions, inputs.mid, seed=inputs.seed)
    mid_rows = with_magnitude_ratios(mid_rows, inputs.conditions, inputs.det.magnitudes)
    meta = inputs.meta()
    write_csv(out / f"{name}.csv", per_layer)
    write_csv(out / f"{name}_mid.csv", mid_rows)
    keys, labels = list(cos.values), [c.label for c in inputs.conditions]
    save_npy(out / f"{name}_values.npy", np.stack([[cos.values[k][l] for l in labels] for k in keys]).astype(np.float32))
    axes = {"axes": ["value", "condition", "pair", "layer"], "value": keys, "condition": labels}
    write_json(out / f"{name}.json", {**meta, "values_npy": axes, "per_layer": per_layer, "mid": mid_rows})
    title = f"{inputs.model} — {what}, {meta['hub_lang']}–{meta['lang']} ({meta['pairs']} pairs, L2 side deactivated)"
    save_figure(out / f"{name}_layers.png", plot_layer_curves(cos, inputs.conditions, title, inputs.mid, label))
    save_figure(out / f"{name}_mid_drop.png", plot_mid_drop(cos, inputs.conditions, mid_rows, inputs.mid, title))
    mid = inputs.mid
    blocks = [effects_text([r for r in mid_rows if (r["pairs"], r["metric"]) == key],
                           f"{METRIC_TITLES[key[1]]}, {KIND_TITLES[key[0]]}, layers {mid_rows[0]['layer']} (drop = none − condition)")
              for key in dict.fromkeys((r["pairs"], r["metric"]) for r in mid_rows)]
    return Summary(
        title=f"{what}, {inputs.where()}",
        type=inputs.det.neuron_type, lang=inputs.pairs.lang,
        figures=[f"{name}_layers.png", f"{name}_mid_drop.png"],
        tables=[effects_table(mid_rows, f"Layers {mid[0]}–{mid[-1]}, parallel pairs: drop = none − condition")],
        data={"pairs": len(inputs.pairs), "mid_layers": list(mid), "mid_rows": mid_rows},
        text=(f"{what}, {meta['hub_lang']}–{meta['lang']}, {meta['pairs']} pairs; mid layers {mid[0]}-{mid[-1]} "
              f"({inputs.mid_rule})\n\n" + "\n\n".join(blocks)),
        files=[f"{name}.csv", f"{name}_mid.csv", f"{name}.json", f"{name}_values.npy", f"{name}_layers.png",
               f"{name}_mid_drop.png"],
    )


def run_alignment(inputs: PairInputs, out: Path, ks: tuple[int, ...], n_boot: int = 1000) -> Summary:
    """Mutual kNN (raw and centred) and debiased CKA of hub vs L2 states per layer and condition."""
    al = kernel_alignment(inputs.states, inputs.pairs, inputs.conditions, ks, n_boot, inputs.seed,
                          inputs.states.batch_size, inputs.mode, progress=False)
    per_layer, mid_rows = alignment_tables(al, inputs.conditions, inputs.mid, inputs.seed)
    meta = {
        **inputs.meta(), "k": list(ks), "n_boot": n_boot,
        "mutual_knn": "per pair |N_hub(i) ∩ N_L2(i)| / k, k nearest other sentences of the same language by cosine; "
                      "intervals: bootstrap over pairs, p_vs_none: Wilcoxon signed-rank",
        "cka": "debiased linear CKA (unbiased HSIC); intervals: paired bootstrap over pairs, p_vs_none: bootstrap",
    }
    write_csv(out / "alignment.csv", per_layer)
    write_csv(out / "alignment_mid.csv", mid_rows)
    write_json(out / "alignment.json", {**meta, "per_layer": per_layer, "mid": mid_rows})
    metrics = [knn_metric(k, c) for c in ("raw", "centred") for k in ks] + [CKA]
    n, mid = len(inputs.pairs), inputs.mid
    title = (f"{inputs.model} — kernel alignment {meta['hub_lang']}–{meta['lang']} per layer ({n} pairs, "
             f"{inputs.det.neuron_type} neurons of {inputs.det.lang} deactivated on the L2 side, mode {inputs.mode})")
    save_figure(out / "alignment_layers.png", plot_alignment(per_layer, metrics, title, n, mid))
    save_figure(out / "alignment_drop.png", plot_alignment(per_layer, metrics, title, n, mid, "drop"))
    shown = [r for r in mid_rows if r["metric"] in (knn_metric(ks[0], "centred"), CKA)]
    blocks = [effects_text([r for r in mid_rows if r["metric"] == m],
                           f"{metric_title(m)}, layers {mid_rows[0]['layer']} (drop = none − condition)") for m in metrics]
    return Summary(
        title=f"mutual kNN and CKA, {inputs.where()}",
        type=inputs.det.neuron_type, lang=inputs.pairs.lang,
        figures=["alignment_layers.png", "alignment_drop.png"],
        tables=[effects_table(shown, f"Layers {mid[0]}–{mid[-1]}: drop = none − condition")],
        data={"pairs": n, "k": list(ks), "mid_layers": list(mid), "mid_rows": mid_rows},
        text=(f"kernel alignment {meta['hub_lang']}–{meta['lang']}, {n} pairs; mid layers {mid[0]}-{mid[-1]} "
              f"({inputs.mid_rule})\n\n" + "\n\n".join(blocks)),
        files=["alignment.csv", "alignment_mid.csv", "alignment.json", "alignment_layers.png", "alignment_drop.png"],
    )
