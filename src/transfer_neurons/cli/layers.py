"""`transfer-neurons layers`: where transfer neurons sit and how languages' sets overlap (SPEC 6.7); no model needed."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..analyses.layers import check_detections, distribution_rows, overlap_rows, plot_distribution, plot_overlap
from ..detection import read_detection
from ..outputs import save_figure, write_csv, write_json
from .common import positive_int


def run(args: argparse.Namespace) -> int:
    found = sorted(((read_detection(f, args.top_k), f) for f in args.detections), key=lambda p: (p[0].neuron_type, p[0].lang))
    detections, folders = [d for d, _ in found], [f for _, f in found]
    num_layers, d_ff = check_detections(detections)
    dist, overlap = distribution_rows(detections, num_layers, d_ff), overlap_rows(detections, num_layers, d_ff)
    out = Path(args.out)
    model = detections[0].meta.get("model", "model")
    write_csv(out / "layers.csv", dist)
    write_csv(out / "overlap.csv", overlap, columns=list(overlap[0]) if overlap else ["type", "lang_a", "lang_b"])
    write_json(out / "layers.json", {
        "model": model, "num_layers": num_layers, "d_ff": d_ff, "top_k": args.top_k,
        "detections": [{"folder": str(f), "type": d.neuron_type, "lang": d.lang, "neurons": int(len(d.neurons)),
                        "candidate_layers": list(d.layers)} for f, d in zip(folders, detections)],
        "chance": "chance_overlap/p_chance: two random sets of these sizes from the shared candidate layers "
                  "(hypergeometric); layer_matched_*: each set keeps its per-layer counts",
        "distribution": dist, "overlap": overlap,
    })
    langs = ", ".join(f"{d.neuron_type} {d.lang}" for d in detections)
    save_figure(out / "layers.png", plot_distribution(dist, num_layers, d_ff, f"{model} — transfer neurons per layer ({langs})"))
    if overlap:
        save_figure(out / "overlap.png", plot_overlap(overlap, detections, f"{model} — overlap of languages' transfer neurons"))
    for det in detections:
        counts = {r["layer"]: r["count"] for r in dist if r["type"] == det.neuron_type and r["lang"] == det.lang}
        busiest = sorted(counts, key=lambda l: -counts[l])[:3]
        print(f"{det.neuron_type} {det.lang}: {len(det.neurons)} neurons; most in layers "
              + ", ".join(f"{l} ({counts[l]})" for l in busiest))
    for r in overlap:
        print(f"{r['type']} {r['lang_a']}–{r['lang_b']}: {r['overlap']} shared of {r['size_a']}/{r['size_b']}, "
              f"Jaccard {r['jaccard']:.3f}; chance {r['chance_overlap']:.2f} (p {r['p_chance']:.2g}), "
              f"layer-matched chance {r['layer_matched_chance_overlap']:.2f} (p {r['p_layer_matched']:.2g})")
    print(f"wrote {out}/layers.csv, overlap.csv, layers.json, layers.png" + (", overlap.png" if overlap else ""))
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("layers", help="distribution of transfer neurons over layers and overlap between languages",
                                   description="Histograms of transfer neurons per layer for each type and language "
                                   "(counts and share of the layer's neurons) and, per type, the Jaccard overlap between "
                                   "languages' sets with hypergeometric chance levels. Reads detection folders only. "
                                   "Writes layers.csv, overlap.csv, layers.json, layers.png, overlap.png.")
    parser.add_argument("--detections", nargs="+", required=True, metavar="DIR", help="detection folders written by `detect`")
    parser.add_argument("--top-k", type=positive_int, default=None, help="use only the first K ranked neurons of each set")
    parser.add_argument("--out", required=True, help="output folder")
    parser.set_defaults(func=run)
