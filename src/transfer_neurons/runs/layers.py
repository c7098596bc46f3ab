"""Where transfer neurons sit, how languages' sets overlap, and the all-layer ranking check; no model needed."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..analyses.layers import (
    OVERLAP_COLUMNS, check_detections, distribution_rows, overlap_rows, plot_distribution, plot_overlap,
)
from ..detection import Detection
from ..outputs import save_figure, write_csv, write_json
from ..scoring import rank_neurons
from .common import Summary


def all_layer_ranking(det: Detection, num_layers: int) -> dict:
    """The detection's count of top neurons ranked over ALL layers: how many fall in its type's candidate layers."""
    everywhere = rank_neurons(det.scores, range(num_layers), len(det.neurons))  # [n, 2]
    inside = int(np.isin(everywhere[:, 0], det.layers).sum())
    return {"k": inside, "n": len(everywhere), "base": len(det.layers) / num_layers, "expected_layers": list(det.layers)}


def run_layers(dets: Sequence[Detection], folders: Sequence[str], out: Path, top_k: int | None = None) -> Summary:
    """Per-layer distribution, cross-language overlap against chance, and the all-layer ranking of each detection."""
    order = sorted(range(len(dets)), key=lambda i: (dets[i].neuron_type, dets[i].lang))
    dets, folders = [dets[i] for i in order], [str(folders[i]) for i in order]
    num_layers, d_ff = check_detections(dets)
    dist, overlap = distribution_rows(dets, num_layers, d_ff), overlap_rows(dets, num_layers, d_ff)
    ranking = {f"{d.neuron_type}-{d.lang}": all_layer_ranking(d, num_layers) for d in dets}
    model = dets[0].meta.get("model", "model")
    write_csv(out / "layers.csv", dist)
    write_csv(out / "overlap.csv", overlap, columns=list(OVERLAP_COLUMNS))
    write_json(out / "layers.json", {
        "model": model, "num_layers": num_layers, "d_ff": d_ff, "top_k": top_k,
        "detections": [{"folder": f, "type": d.neuron_type, "lang": d.lang, "neurons": int(len(d.neurons)),
                        "candidate_layers": list(d.layers)} for f, d in zip(folders, dets)],
        "chance": "chance_overlap/p_chance: two random sets of these sizes from the shared candidate layers "
                  "(hypergeometric); layer_matched_*: each set keeps its per-layer counts",
        "distribution": dist, "overlap": overlap, "all_layer_ranking": ranking,
    })
    names = ", ".join(f"{d.neuron_type} {d.lang}" for d in dets)
    save_figure(out / "layers.png", plot_distribution(dist, num_layers, d_ff, f"{model} — transfer neurons per layer ({names})"))
    figures = ["layers.png"]
    if overlap:
        save_figure(out / "overlap.png", plot_overlap(overlap, dets, f"{model} — overlap of languages' transfer neurons"))
        figures.append("overlap.png")
    lines = []
    for det in dets:
        counts = {r["layer"]: r["count"] for r in dist if r["type"] == det.neuron_type and r["lang"] == det.lang}
        busiest = sorted(counts, key=lambda l: -counts[l])[:3]
        lines.append(f"{det.neuron_type} {det.lang}: {len(det.neurons)} neurons; most in layers "
                     + ", ".join(f"{l} ({counts[l]})" for l in busiest))
    for r in overlap:
        lines.append(f"{r['type']} {r['lang_a']}–{r['lang_b']}: {r['overlap']} shared of {r['size_a']}/{r['size_b']} "
                     f"(Jaccard {r['jaccard']:.3f}); shared by chance {r['chance_overlap']:.2f} (p {r['p_chance']:.2g}), "
                     f"layer-matched {r['layer_matched_chance_overlap']:.2f} (p {r['p_layer_matched']:.2g})")
    rows = [[d.neuron_type, d.lang, f"{d.layers[0]}–{d.layers[-1]}", f"{r['k']}/{r['n']}", r["k"] / r["n"], r["base"]]
            for d, r in zip(dets, ranking.values())]
    return Summary(
        title="transfer neurons per layer and their overlap across languages",
        figures=figures,
        tables=[
            {"caption": "the same number of top neurons ranked over ALL layers: share inside the type's expected "
                        "(candidate) layers vs those layers' share of all neurons",
             "columns": ["type", "lang", "expected layers", "inside", "share", "base"], "rows": rows},
            {"caption": "overlap of languages' sets vs chance (layer-matched chance is the stricter)",
             "columns": ["type", "languages", "overlap", "Jaccard", "chance overlap", "layer-matched chance overlap",
                         "p (layer-matched)"],
             "rows": [[r["type"], f"{r['lang_a']}–{r['lang_b']}", r["overlap"], r["jaccard"], r["chance_overlap"],
                       r["layer_matched_chance_overlap"], r["p_layer_matched"]] for r in overlap]},
        ],
        data={"claim": ranking, "distribution": dist, "overlap": overlap},
        text="\n".join(lines),
        files=["layers.csv", "overlap.csv", "layers.json", *figures],
    )
