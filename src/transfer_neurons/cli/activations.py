"""`transfer-neurons activations`: per-layer English–L2 cosine of the activation vectors a[l] (method.md §6.2)."""

from __future__ import annotations

import argparse

from .common import add_condition_args, add_data_args, add_model_args
from .similarity import add_comparison_args, run_comparison


def run(args: argparse.Namespace) -> int:
    return run_comparison(args, "a")


def register(subparsers) -> None:
    parser = subparsers.add_parser("activations", help="per-layer English–L2 activation-pattern cosine under deactivation (method.md §6.2)",
                                   description="Cosine of the last-token effective activation vectors a[l] (all neurons of "
                                   "a layer) between hub and L2 sentences, parallel and non-parallel pairs, raw and "
                                   "mean-centred, with the L2 side under no, transfer-neuron and control deactivation. "
                                   "Writes activations.csv/_mid.csv/.json, activations_values.npy ([value, condition, pair, layer]; "
                                   "the axes are named in activations.json) and figures.")
    add_comparison_args(parser)
    add_condition_args(parser)
    add_model_args(parser)
    add_data_args(parser)
    parser.set_defaults(func=run)
