"""Language latent spaces of the hub and every L2, each L2 under its own neurons, written to one folder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..analyses.effects import layer_range, summarise_boot
from ..analyses.latent_spaces import (
    L2_METRICS, L2_TITLES, MERGE_METRICS, MERGE_TITLES, PROJECTED, centroid_pair_rows, component_rows, l2_rows,
    latent_protocol, latent_spaces, merge_rows, plot_centroid_heatmaps, plot_components, plot_merge, plot_pca,
)
from ..conditions import Condition
from ..interventions import active_intervention
from ..outputs import save_figure, write_csv, write_json
from ..states import StateProvider
from .common import Summary, describe_conditions, effects_table, effects_text

TYPE_NAMES = {"type1": "Type-1", "type2": "Type-2", "none": "no"}


@dataclass
class LatentInputs:
    """Sentences per language, the conditions with each language's own neuron sets, and the final layers."""

    states: StateProvider
    model: str
    texts: dict[str, Sequence[str]]  # {lang: sentences}, hub language included
    hub_lang: str
    neuron_type: str  # type1 | type2 | none
    conditions: list[Condition]
    neurons: dict[str, dict[str, np.ndarray | None]]  # condition label -> lang -> [n, 2]
    final: tuple[int, ...]  # layers of the summary table
    seed: int = 0
    mode: str = "last"
    n_boot: int = 500
    data: str = ""
    detections: dict[str, str] | None = None  # lang -> detection folder, for the record
    protocol: str = "default"  # default | paper: spectra and PCA frame (analyses.latent_spaces.PROTOCOLS)


def run_latent(inputs: LatentInputs, out: Path) -> Summary:
    """PCA, centroid cosines, variance spectra and merge statistics per layer and condition, under the inputs' protocol."""
    protocol = latent_protocol(inputs.protocol)
    ls = latent_spaces(inputs.states, inputs.texts, inputs.hub_lang, inputs.conditions, inputs.neurons,
                       n_boot=inputs.n_boot, seed=inputs.seed, batch_size=inputs.states.batch_size, mode=inputs.mode,
                       progress=False, protocol=protocol)
    merge, comps, pairs = merge_rows(ls), component_rows(ls), centroid_pair_rows(ls)
    final, items = inputs.final, sum(ls.sentences.values())
    final_rows = []
    for metric in MERGE_METRICS:
        point = layer_range({label: s.merge[metric] for label, s in ls.spaces.items()}, final)
        boot = layer_range({label: s.merge_boot[metric] for label, s in ls.spaces.items()}, final)
        final_rows += summarise_boot(point, boot, ls.conditions, metric, items, [f"{final[0]}-{final[-1]}"])
    claim_rows = l2_rows(ls, final, inputs.seed)  # per L2: own-centroid share and cosine to the hub centroid
    write_csv(out / "latent_l2.csv", claim_rows)
    write_csv(out / "latent_merge.csv", merge)
    write_csv(out / "latent_components.csv", comps)
    write_csv(out / "latent_centroids.csv", pairs)
    write_json(out / "latent.json", {
        "model": inputs.model, "hub_lang": inputs.hub_lang, "langs": list(ls.langs), "sentences": ls.sentences,
        "data": inputs.data, "type": inputs.neuron_type, "mode": inputs.mode,
        "intervention": active_intervention().spec, "seed": inputs.seed,
        "n_boot": inputs.n_boot, "detections": inputs.detections or {}, "conditions": describe_conditions(inputs.conditions),
        "protocol": protocol.name, **protocol.describe(),
        "pca_explained": {label: [round(float(v), 4) for v in ls.spaces[label].explained.sum(axis=1)]
                          for label in PROJECTED if label in ls.spaces},  # per layer, share of the two axes of its frame
        "centring": "centred cosines subtract one mean per layer over the undeactivated states of all languages",
        "merge": dict(MERGE_TITLES) | {
            "interval": "paired bootstrap over sentences within each language (same resamples for all conditions)",
            "drop": "none − condition (positive: the languages moved closer)"},
        "final_layers": list(final), "merge_rows": merge, "final_rows": final_rows, "l2_rows": claim_rows,
        "l2_metrics": dict(L2_TITLES) | {"reference": "undeactivated centroids of all languages, centred"},
        "components": comps, "centroid_pairs": pairs,
    })
    what = "no deactivation" if inputs.neuron_type == "none" else f"each L2's own {TYPE_NAMES[inputs.neuron_type]} neurons"
    sizes = "/".join(str(ls.sentences[lang]) for lang in ls.langs)
    paper = ", protocol paper" if protocol.name == "paper" else ""
    base = f"{inputs.model} — last-token h[l] of {', '.join(ls.langs)} ({sizes} sentences{paper})"
    fitted = "fitted on undeactivated states" if protocol.shared_frame else "each condition in its own frame"
    spectra = "" if protocol.centred_spectra else "uncentred "
    figures = ["latent_merge.png"]
    for label in (label for label in PROJECTED if label in ls.spaces):
        cond = "no deactivation" if label == "none" else f"{what} deactivated (mode {inputs.mode})"
        save_figure(out / f"latent_pca_{label}.png", plot_pca(ls, label, f"{base}\n2-D PCA per layer ({fitted}), {cond}"))
        figures.append(f"latent_pca_{label}.png")
        for kind in ("raw", "centred"):
            name = f"latent_centroids_{kind}_{label}.png"
            title = f"{base}\n{'mean-centred' if kind == 'centred' else 'raw'} cosine of language centroids, {cond}"
            save_figure(out / name, plot_centroid_heatmaps(ls, label, kind == "centred", title))
            figures.append(name)
    save_figure(out / "latent_components.png", plot_components(
        ls, f"{base}\n{spectra}singular components reaching each variance share per language (dashed: {what} deactivated)"))
    save_figure(out / "latent_merge.png", plot_merge(merge, f"{base}\nlanguage centroids merging? ({what} deactivated)"))
    figures.append("latent_components.png")
    span = f"{final[0]}–{final[-1]}"
    text = "\n\n".join(effects_text([r for r in final_rows if r["metric"] == m], f"{MERGE_TITLES[m]}, layers {span} "
                                    "(drop = none − condition)") for m in MERGE_METRICS)
    return Summary(
        title=f"latent spaces of {', '.join(ls.langs)}, {what} deactivated{paper}",
        type=inputs.neuron_type, figures=figures,
        tables=[effects_table(final_rows, f"Final layers {span}: drop = none − condition "
                              "(positive: the language spaces moved closer)"),
                *[effects_table([r for r in claim_rows if r["lang"] == lang],
                                f"{lang}, final layers {span}: {L2_TITLES[L2_METRICS[0]]} and {L2_TITLES[L2_METRICS[1]]} "
                                "(drop = none − condition)") for lang in ls.langs[1:] if claim_rows]],
        data={"final_layers": list(final), "final_rows": final_rows, "l2_rows": claim_rows, "sentences": ls.sentences,
              "protocol": protocol.name},
        text=f"latent spaces of {', '.join(ls.langs)} ({sizes} sentences{paper}), {what} deactivated\n\n{text}",
        files=["latent_merge.csv", "latent_l2.csv", "latent_components.csv", "latent_centroids.csv", "latent.json", *figures],
    )
