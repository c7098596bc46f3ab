"""`transfer-neurons dose`: the middle-layer similarity drop as a function of how many neurons are deactivated."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..analyses.dose import DEFAULT_COUNTS, dose_counts, dose_response, dose_rows, plot_dose, ranked_neurons
from ..analyses.similarity import effects_text, middle_layers
from ..detection import read_detection, versions
from ..outputs import save_figure, write_csv, write_json
from ..scoring import parse_layers
from .common import DATA_HELP, add_data_args, add_model_args, model_from_args, pairs_from_args, positive_int


def parse_counts(text: str) -> list[int]:
    """argparse type: comma-separated positive neuron counts."""
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"expected positive neuron counts, got {text!r}")
    return counts


def run(args: argparse.Namespace) -> int:
    det = read_detection(args.detection)
    lang = args.lang or det.lang
    counts, dropped = dose_counts(args.counts, det)
    if dropped:
        print(f"note: counts {dropped} exceed half the {len(det.layers)} candidate layers' neurons; skipped", file=sys.stderr)
    lm = model_from_args(args)
    pairs = pairs_from_args(args, args.data, args.hub_lang, lang, "test")
    mid = parse_layers(args.mid_layers, lm.view.num_layers) if args.mid_layers else middle_layers(
        lm.view.num_layers, det.neuron_type, det.layers)
    result = dose_response(lm, pairs, det, counts, args.seeds, mid, args.batch_size)
    mid_rows, layer_rows = dose_rows(result)
    ranked = ranked_neurons(det, len(det.neurons))
    meta = {
        "model": lm.name, "detection": str(Path(args.detection).resolve()), "type": det.neuron_type,
        "detection_language": det.lang, "language": lang, "hub_language": args.hub_lang, "data": pairs.name,
        "pairs": len(pairs), "counts": counts, "counts_skipped": dropped, "seeds": args.seeds,
        "detection_top_n": len(det.neurons), "candidate_layers": list(det.layers), "mid_layers": list(mid),
        "ranking": "rank_neurons(scores.npy, candidate layers); counts capped at half the candidate neurons",
        "ranking_matches_neurons_json": bool((ranked == det.neurons).all()),
        "mode": "last", "versions": versions(),
    }
    out = Path(args.out)
    write_csv(out / "dose.csv", mid_rows)
    write_csv(out / "dose_layers.csv", layer_rows)
    write_json(out / "dose.json", {"meta": meta, "mid_layers": mid_rows, "per_layer": layer_rows})
    title = (f"{lm.name}: {args.hub_lang}–{lang} parallel-pair similarity drop vs neurons deactivated\n"
             f"({det.neuron_type} {det.lang} detection, top-n {len(det.neurons)}; {len(pairs)} pairs)")
    save_figure(out / "dose.png", plot_dose(result, mid_rows, title, len(det.neurons)))
    for count in counts:
        print(f"\n== {count} neurons ==")
        print(effects_text([{"pairs": "parallel", **r} for r in mid_rows if r["count"] == count]))
    print(f"\nwrote {out}/dose.csv, dose_layers.csv, dose.json, dose.png")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "dose", help="similarity drop vs number of deactivated neurons (transfer, random, anti)",
        description="Deactivate the top-K ranked neurons (ranked from the detection's scores, so K may exceed its "
        "neurons.json), K random neurons of the same layers (several seeds) and the K lowest-scoring (anti) "
        "neurons on the L2 side, and report the drop of the middle-layer hub–L2 cosine (raw and mean-centred) "
        "on parallel pairs per K. Writes dose.csv, dose_layers.csv, dose.json and dose.png to --out.")
    parser.add_argument("--detection", required=True, help="a detection folder written by `detect`")
    parser.add_argument("--lang", default=None, help="the L2 language of the pairs (default: the detection's)")
    parser.add_argument("--hub-lang", default="en", help="the undeactivated side of the pairs (default en)")
    parser.add_argument("--data", default="parallel", help=f"hub–L2 parallel pairs: {DATA_HELP} (default: bundled 'parallel')")
    parser.add_argument("--counts", type=parse_counts, default=list(DEFAULT_COUNTS),
                        help="comma-separated neuron counts (default 10,30,100,300,1000)")
    parser.add_argument("--seeds", type=positive_int, default=3, help="random draws per count (default 3)")
    parser.add_argument("--mid-layers", default=None,
                        help="layers START:END (0-based, END exclusive) to average; default: Type-1 the middle third "
                        "of the model's layers, Type-2 all candidate layers (as `ablate`)")
    add_model_args(parser)
    add_data_args(parser)
    parser.add_argument("--out", required=True, help="output folder")
    parser.set_defaults(func=run)
