"""`transfer-neurons latent`: language latent spaces of several languages per layer, with and without each
language's own Type-1 or Type-2 neurons deactivated (SPEC 6.4)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..analyses.latent_spaces import (
    MERGE_TITLES,
    PROJECTED,
    centroid_pair_rows,
    component_rows,
    latent_spaces,
    merge_rows,
    plot_centroid_heatmaps,
    plot_components,
    plot_merge,
    plot_pca,
)
from ..conditions import language_conditions
from ..detection import NEURON_TYPES, Detection, read_detection
from ..errors import TransferNeuronsError
from ..interventions import MODES
from ..outputs import save_figure, write_csv, write_json
from .alignment import rows_text
from .common import DATA_HELP, add_data_args, add_model_args, model_from_args, positive_int, sentences_from_args
from .similarity import check_fits, describe_conditions

TYPE_NAMES = {"type1": "Type-1", "type2": "Type-2"}


def choose_detections(folders: list[str], langs: list[str], neuron_type: str | None,
                      top_k: int | None) -> tuple[str, dict[str, Detection], dict[str, str]]:
    """The neuron type and, per L2, its own detection of that type and its folder (none needed for --type none)."""
    found = [(read_detection(f, top_k), f) for f in folders]
    types = sorted({d.neuron_type for d, _ in found})
    if neuron_type is None:
        if len(types) != 1:
            raise TransferNeuronsError(f"detections of types {types or 'none'}: say which with --type type1|type2|none")
        neuron_type = types[0]
    chosen: dict[str, Detection] = {}
    where: dict[str, str] = {}
    if neuron_type == "none":
        return neuron_type, chosen, where
    for det, folder in found:
        if det.neuron_type == neuron_type and det.lang in langs:
            if det.lang in chosen:
                raise TransferNeuronsError(f"two {neuron_type} detections for {det.lang}; give one per language")
            chosen[det.lang], where[det.lang] = det, str(folder)
    missing = [lang for lang in langs if lang not in chosen]
    if missing:
        raise TransferNeuronsError(f"no {neuron_type} detection folder for {', '.join(missing)} among --detections")
    return neuron_type, chosen, where


def run(args: argparse.Namespace) -> int:
    langs = [lang.strip() for lang in args.langs.split(",") if lang.strip()] if args.langs else None
    if langs is None:
        if not args.detections:
            raise TransferNeuronsError("give --langs (and --detections for deactivation)")
        langs = list(dict.fromkeys(read_detection(f).lang for f in args.detections))
    langs = [lang for lang in langs if lang != args.hub_lang]
    if not langs:
        raise TransferNeuronsError(f"--langs names no language besides the hub language {args.hub_lang!r}")
    neuron_type, dets, folders = choose_detections(args.detections or [], langs, args.neuron_type, args.top_k)
    lm = model_from_args(args)
    for lang, det in dets.items():
        check_fits(det, lm, f"{lang} detection")
    controls = [spec for spec in args.controls.split(",") if spec.strip()]
    conditions, neurons = language_conditions(dets, controls, args.seeds)
    texts = {lang: sentences_from_args(args, args.data, lang, "test").texts for lang in [args.hub_lang, *langs]}
    ls = latent_spaces(lm, texts, args.hub_lang, conditions, neurons, n_boot=args.n_boot, seed=args.seed,
                       batch_size=args.batch_size, mode=args.mode)
    merge, comps, pairs = merge_rows(ls), component_rows(ls), centroid_pair_rows(ls)
    out = Path(args.out)
    what = "no deactivation" if neuron_type == "none" else f"each L2's own {TYPE_NAMES[neuron_type]} neurons"
    write_csv(out / "latent_merge.csv", merge)
    write_csv(out / "latent_components.csv", comps)
    write_csv(out / "latent_centroids.csv", pairs)
    write_json(out / "latent.json", {
        "model": lm.name, "hub_lang": args.hub_lang, "langs": list(ls.langs), "sentences": ls.sentences,
        "data": args.data, "type": neuron_type, "mode": args.mode, "seed": args.seed, "n_boot": args.n_boot,
        "detections": folders,
        "conditions": describe_conditions(conditions),
        "pca": "sklearn PCA(2) per layer, fitted on the undeactivated states of all languages; explained variance share: "
               + ", ".join(f"{l}: {v:.3f}" for l, v in enumerate(ls.explained.sum(axis=1))),
        "centring": "centred cosines subtract one mean per layer over the undeactivated states of all languages",
        "merge": {m: t for m, t in MERGE_TITLES.items()} | {
            "interval": "paired bootstrap over sentences within each language (same resamples for all conditions)",
            "drop": "none − condition (positive: the languages moved closer)"},
        "merge_rows": merge, "components": comps, "centroid_pairs": pairs,
    })
    model, sizes = lm.name, "/".join(str(ls.sentences[lang]) for lang in ls.langs)
    base = f"{model} — last-token h[l] of {', '.join(ls.langs)} ({sizes} sentences)"
    written = ["latent_merge.csv", "latent_components.csv", "latent_centroids.csv", "latent.json"]
    for label in (label for label in PROJECTED if label in ls.spaces):
        cond = "no deactivation" if label == "none" else f"{what} deactivated (mode {args.mode})"
        save_figure(out / f"latent_pca_{label}.png",
                    plot_pca(ls, label, f"{base}\n2-D PCA per layer (fitted on undeactivated states), {cond}"))
        written.append(f"latent_pca_{label}.png")
        for centred in (False, True):
            name = f"latent_centroids_{'centred' if centred else 'raw'}_{label}.png"
            kind = "mean-centred" if centred else "raw"
            save_figure(out / name, plot_centroid_heatmaps(ls, label, centred, f"{base}\n{kind} cosine of language centroids, {cond}"))
            written.append(name)
    save_figure(out / "latent_components.png", plot_components(
        ls, f"{base}\nsingular components reaching each variance share per language (dashed: {what} deactivated)"))
    save_figure(out / "latent_merge.png", plot_merge(merge, f"{base}\nlanguage centroids merging? ({what} deactivated)"))
    written += ["latent_components.png", "latent_merge.png"]
    num_layers = ls.spaces["none"].centroids.shape[1]
    last = [str(l) for l in range(max(0, num_layers - 3), num_layers)]
    print(f"latent spaces of {', '.join(ls.langs)} ({sizes} sentences), {what} deactivated")
    for metric in ("centroid_distance", "separation"):
        rows = [r for r in merge if r["metric"] == metric and r["layer"] in last]
        print(f"\n{MERGE_TITLES[metric]}, final layers {last[0]}-{last[-1]} (drop = none − condition)")
        for layer in last:
            print(f"layer {layer}\n{rows_text([r for r in rows if r['layer'] == layer])}")
    print(f"\nwrote {out}/" + ", ".join(written))
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("latent", help="language latent spaces of several languages per layer (SPEC 6.4)",
                                   description="Per layer: 2-D PCA scatter of the last-token states of the hub language and "
                                   "each L2, raw and centred cosine between language centroids, singular components "
                                   "reaching 90/95/99 %% of each language's variance, and the mean pairwise centroid "
                                   "distance ('merge'); with no deactivation and with each L2's own Type-1 or Type-2 "
                                   "neurons (and controls) deactivated on that language's sentences.")
    parser.add_argument("--detections", nargs="+", metavar="DIR", default=[],
                        help="detection folders, one per L2 of the chosen type (meta.json names type and language)")
    parser.add_argument("--langs", help="comma-separated L2 codes, e.g. ja,nl,ko,it (default: the detections' languages)")
    parser.add_argument("--hub-lang", default="en", help="shared-space language, always shown and never deactivated (default en)")
    parser.add_argument("--type", dest="neuron_type", choices=(*NEURON_TYPES, "none"), default=None,
                        help="whose neurons to deactivate (default: the detections' type); none: no deactivation")
    parser.add_argument("--data", default="parallel", help=f"sentences of every language: {DATA_HELP} (default: bundled 'parallel', test split)")
    parser.add_argument("--top-k", type=positive_int, default=None, help="deactivate only the first K ranked neurons of each language")
    parser.add_argument("--controls", default="random", help="comma-separated control specs built per language from its own "
                        "detection: random[:SEEDS], layer-matched[:SEEDS], magnitude-matched, anti; empty for none (default random)")
    parser.add_argument("--seeds", type=positive_int, default=3, help="seeds per seeded control (default 3)")
    parser.add_argument("--n-boot", type=positive_int, default=500, help="bootstrap resamples of sentences (default 500)")
    parser.add_argument("--mode", choices=MODES, default="last", help="token positions deactivated (default last)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and the PCA (default 0)")
    parser.add_argument("--out", required=True, help="output folder")
    add_model_args(parser)
    add_data_args(parser)
    parser.set_defaults(func=run)
