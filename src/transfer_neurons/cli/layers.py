"""`transfer-neurons layers`: where transfer neurons sit and how languages' sets overlap (method.md §6.7); no model needed."""

from __future__ import annotations

import argparse

from ..detection import read_detection
from ..runs.layers import run_layers
from .common import positive_int, write_and_print


def run(args: argparse.Namespace) -> int:
    dets = [read_detection(f, args.top_k) for f in args.detections]
    return write_and_print(args, lambda folder: run_layers(dets, args.detections, folder, args.top_k))


def register(subparsers) -> None:
    parser = subparsers.add_parser("layers", help="distribution of transfer neurons over layers and overlap between languages",
                                   description="Histograms of transfer neurons per layer for each type and language "
                                   "(counts and share of the layer's neurons) and, per type, the Jaccard overlap between "
                                   "languages' sets with hypergeometric chance levels. Reads detection folders only. "
                                   "Writes layers.csv, overlap.csv, layers.json, layers.png and, when a type has two languages, overlap.png.")
    parser.add_argument("--detections", nargs="+", required=True, metavar="DIR", help="detection folders written by `detect`")
    parser.add_argument("--top-k", type=positive_int, default=None, help="use only the first K ranked neurons of each set")
    parser.add_argument("--out", required=True, help="output folder")
    parser.set_defaults(func=run)
