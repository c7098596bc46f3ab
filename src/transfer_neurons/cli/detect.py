"""`transfer-neurons detect`: score every neuron and write the ranked transfer neurons."""

from __future__ import annotations

import argparse

from ..detection import check_detection_model, read_centroids
from ..runs.detection import DetectInputs, run_detection
from ..scoring import parse_layers
from .centroids import add_centroid_args, centroid_source
from .common import (
    DATA_HELP, add_data_args, add_model_args, add_model_check_arg, model_from_args, positive_int, sentences_from_args,
    write_and_print,
)


def run(args: argparse.Namespace) -> int:
    lm = model_from_args(args)
    layers = parse_layers(args.layers, lm.view.num_layers) if args.layers else None
    meta = {}
    if args.centroids:
        source, facts = read_centroids(args.centroids, args.neuron_type, args.lang, args.hub_lang)
        check_detection_model(facts, lm, f"--centroids {args.centroids}", args.allow_model_mismatch)
        meta = {"centroids_file": args.centroids}
    else:
        source = centroid_source(args)
    scoring = sentences_from_args(args, args.score_data, args.lang, "train")
    inputs = DetectInputs(lm, args.neuron_type, args.lang, scoring, source, meta, layers, args.top_n, args.batch_size)
    return write_and_print(args, lambda folder: run_detection(inputs, folder))


def register(subparsers) -> None:
    parser = subparsers.add_parser("detect", help="find Type-1 or Type-2 transfer neurons (method.md §4)",
                                   description="Score every neuron of every layer and rank the candidates. Writes "
                                   "scores.npy, magnitudes.npy, centroids.npy, neurons.json and meta.json to --out.")
    add_centroid_args(parser)
    parser.add_argument("--score-data", default="parallel", help=f"LANG sentences to score on: {DATA_HELP}")
    parser.add_argument("--centroids", help="reuse the centroids.npy (or its folder) of `centroids` or an earlier `detect`")
    add_model_check_arg(parser)
    parser.add_argument("--top-n", type=positive_int, default=None,
                        help="neurons to keep (default, the same for both types: round(1000 x layers x d_ff / 458,752), "
                        "i.e. 1000 on a 32-layer model with d_ff 14,336, the paper's share of the model's neurons otherwise)")
    parser.add_argument("--layers", help="candidate layers START:END, 0-based, END exclusive "
                        "(default: type1 the first 62.5%% of layers, type2 the rest)")
    add_model_args(parser)
    add_data_args(parser)
    parser.add_argument("--out", required=True, help="output folder")
    parser.set_defaults(func=run)
