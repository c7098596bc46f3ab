"""`transfer-neurons specificity`: how language-specific transfer neurons are, against the base rate."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ..analyses.lape import QUANTILE, TOP_SHARE, lape_from_stats, overlap_row
from ..analyses.specificity import (
    ALPHA, FAMILIES, THRESHOLDS, collect_language_stats, compare_types, eta2_figure, group_anova, shares_figure,
    specificity_shares,
)
from ..detection import read_detection, versions
from ..data import load_sentences
from ..errors import TransferNeuronsError
from ..outputs import save_figure, save_npy, write_csv, write_json
from .common import DATA_HELP, add_model_args, data_options, model_from_args, positive_int, resolve_split


def _fraction_list(text: str) -> tuple[float, ...]:
    """argparse type: comma-separated numbers in [0, 1]."""
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or any(not 0 <= v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected numbers between 0 and 1, got {text!r}")
    return values


def _texts_by_lang(args: argparse.Namespace, langs: list[str]) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    """Monolingual sentences per language (first --per-lang of the split) and their source names."""
    texts, sources = {}, {}
    for lang in langs:
        spec = args.data.replace("{lang}", lang)
        split = resolve_split(args, spec, "test")
        sentences = load_sentences(spec, lang, split=split, limit=args.per_lang, **data_options(args))
        if not sentences.texts:
            raise TransferNeuronsError(f"{spec}: no {lang} sentences in split {split or 'all'}")
        texts[lang], sources[lang] = tuple(sentences.texts[: args.per_lang]), sentences.name
    return texts, sources


def _check_detections(dets, langs: list[str], lm) -> None:
    """Detections must be for measured languages and for a model of this shape."""
    for det in dets:
        if det.lang not in langs:
            raise TransferNeuronsError(f"detection {det.neuron_type} {det.lang}: {det.lang!r} is not in --langs {','.join(langs)}")
        shape = (det.meta.get("num_layers"), det.meta.get("d_ff"))
        if shape != (lm.view.num_layers, lm.view.d_ff):
            raise TransferNeuronsError(
                f"detection {det.neuron_type} {det.lang} is for a model with {shape[0]} layers x {shape[1]} neurons; "
                f"{lm.name} has {lm.view.num_layers} x {lm.view.d_ff} (pass the same --model as `detect`)"
            )
        if det.meta.get("model") != lm.name:
            print(f"note: detection {det.neuron_type} {det.lang} was made with {det.meta.get('model')}, measuring {lm.name}")


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    langs = [lang.strip() for lang in args.langs.split(",") if lang.strip()]
    if len(set(langs)) < 2 or len(set(langs)) != len(langs):
        raise TransferNeuronsError(f"--langs needs at least two distinct language codes, got {args.langs!r}")
    dets = [read_detection(folder, args.top_k) for folder in args.detections]
    texts, sources = _texts_by_lang(args, langs)
    lm = model_from_args(args)
    _check_detections(dets, langs, lm)
    stats = collect_language_stats(lm, texts, args.batch_size)

    shares, anovas = specificity_shares(stats, dets, args.thresholds, args.alpha)
    comparison = compare_types(shares)
    lape = lape_from_stats(stats, args.lape_share, args.lape_quantile)
    overlaps = []
    for det in dets:
        base = {"type": det.neuron_type, "lang": det.lang, "layers": f"{min(det.layers)}-{max(det.layers)}"}
        for which, specific in (("any", lape.neurons), (det.lang, lape.of_language(det.lang))):
            overlaps.append(overlap_row(det.neurons, specific, det.layers, lm.view.d_ff, base | {"lape_set": which}))

    out = Path(args.out)
    write_csv(out / "shares.csv", shares)
    write_csv(out / "type_comparison.csv", comparison)
    write_csv(out / "lape_overlap.csv", overlaps)
    per_lang = [group_anova(stats, (lang,)) for lang in langs]
    save_npy(out / "eta2.npy", np.stack([a.eta2 for a in per_lang]).astype(np.float32))  # [lang, layer, d_ff]
    save_npy(out / "anova_p.npy", np.stack([a.p for a in per_lang]).astype(np.float32))
    save_npy(out / "activation_probability.npy", lape.probability.astype(np.float32))
    lape_rows = [{"layer": int(l), "neuron": int(i), "entropy": float(lape.entropy[l, i]),
                  "languages": ",".join(lang for lang, on in zip(langs, row) if on)}
                 for (l, i), row in zip(lape.neurons, lape.assigned)]
    write_csv(out / "lape_neurons.csv", lape_rows, columns=["layer", "neuron", "entropy", "languages"])
    meta = {
        "model": lm.name, "languages": langs, "data": sources, "sentences": {l: len(t) for l, t in texts.items()},
        "detections": [{"folder": str(f), "type": d.neuron_type, "lang": d.lang, "top_n": len(d.neurons),
                        "candidate_layers": list(d.layers)} for f, d in zip(args.detections, dets)],
        "thresholds": list(args.thresholds), "alpha": args.alpha,
        "families": {name: list(group) for name, group in FAMILIES.items()},
        "activation": "effective activation at the last real token; LAPE 'active' means a > 0",
        "lape": {"top_share": args.lape_share, "quantile": args.lape_quantile, "threshold": lape.threshold,
                 "selected": len(lape.neurons),
                 "per_language": {lang: int(lape.assigned[:, j].sum()) for j, lang in enumerate(langs)}},
        "seconds": round(time.perf_counter() - start, 3), "versions": versions(),
    }
    write_json(out / "specificity.json", {"meta": meta, "shares": shares, "type_comparison": comparison,
                                          "lape_overlap": overlaps, "lape_neurons": lape_rows})
    title = f"{lm.name}: transfer neurons passing η² (one-vs-rest of {','.join(langs)}), base rate marked"
    save_figure(out / "shares.png", shares_figure(shares, title))
    save_figure(out / "eta2_hist.png", eta2_figure(dets, anovas, f"{lm.name}: η² of transfer vs all candidate neurons "
                                                   f"({len(texts[langs[0]])} sentences per language)", args.thresholds))
    _print_summary(shares, comparison, overlaps, out)
    return 0


def _print_summary(shares, comparison, overlaps, out: Path) -> None:
    """The share table, the type comparison and the LAPE overlaps, as plain text."""
    print(f"{'type':6} {'lang':4} {'label':18} {'eta2>=':>6} {'share':>12} {'base rate':>16} {'p vs base':>10}")
    for r in shares:
        print(f"{r['type']:6} {r['lang']:4} {r['label']:18} {r['eta2_min']:6g} {r['k_pass']:4}/{r['k']:<4} {r['share']:5.2f}"
              f" {r['base_pass']:6}/{r['base_total']:<6} {r['base_rate']:5.2f} {r['p_vs_base']:10.2g}")
    for r in comparison:
        print(f"type1 vs type2 {r['lang']} {r['label']} eta2>={r['eta2_min']:g}: {r['type1_share']:.2f} vs "
              f"{r['type2_share']:.2f} (base {r['type1_base_rate']:.2f} vs {r['type2_base_rate']:.2f}), "
              f"Fisher p={r['p_type1_vs_type2']:.2g}")
    for r in overlaps:
        print(f"LAPE[{r['lape_set']}] ∩ {r['type']} {r['lang']}: {r['overlap']} of {r['transfer']} "
              f"(chance {r['expected']:.2f}, p={r['p_overlap']:.2g}; {r['lape_in_layers']} LAPE neurons in layers {r['layers']})")
    print(f"wrote {out}")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "specificity", help="language specificity (η², ANOVA, LAPE) of transfer neurons vs base rates (SPEC 6.5-6)",
        description="Stream last-token activations over monolingual sentences of several languages; per detection, "
        "the share of transfer neurons whose activation separates the target language (η² one-vs-rest, ANOVA p) "
        "beside the base rate of all neurons in the same layers, Type-1 vs Type-2, and the overlap with LAPE "
        "language-specific neurons vs chance. Writes specificity.json, shares.csv, type_comparison.csv, "
        "lape_overlap.csv, lape_neurons.csv, eta2.npy, anova_p.npy, activation_probability.npy, shares.png, "
        "eta2_hist.png to --out.")
    parser.add_argument("--detections", nargs="+", required=True, metavar="DIR", help="detection folders from `detect`")
    parser.add_argument("--langs", required=True, help="comma-separated languages to measure (must include every detection's)")
    parser.add_argument("--data", default="parallel",
                        help=f"sentences of each language: {DATA_HELP}; '{{lang}}' in it is replaced by the code "
                        "(e.g. mono/{lang}.txt). Default: the bundled parallel set, one side per language")
    parser.add_argument("--split", choices=("auto", "train", "test", "all"), default="auto",
                        help="auto (default): 'test' of bundled sets, all rows of files")
    parser.add_argument("--per-lang", type=positive_int, default=None, help="first N sentences of each language (default all)")
    parser.add_argument("--skip-invalid", action="store_true", help="skip malformed rows with a warning")
    parser.add_argument("--strict-pairs", action="store_true",
                        help="refuse an English sentence with two different translations (default: keep every row)")
    parser.add_argument("--dedupe", action="store_true", help="use each distinct sentence once (default: repeats count)")
    parser.add_argument("--top-k", type=positive_int, default=None, help="use only each detection's first K neurons")
    parser.add_argument("--thresholds", type=_fraction_list, default=THRESHOLDS,
                        help="η² thresholds, comma-separated (default 0.1,0.25)")
    parser.add_argument("--alpha", type=float, default=ALPHA, help="ANOVA p-value cut (default 0.05)")
    parser.add_argument("--lape-share", type=float, default=TOP_SHARE,
                        help="LAPE: lowest-entropy share of all neurons kept (default 0.01)")
    parser.add_argument("--lape-quantile", type=float, default=QUANTILE,
                        help="LAPE: activation-probability quantile a language must exceed (default 0.95)")
    add_model_args(parser)
    parser.add_argument("--out", required=True, help="output folder")
    parser.set_defaults(func=run)
