"""`transfer-neurons alignment`: per-layer mutual kNN and debiased CKA between hub and L2 states (method.md §6.3)."""

from __future__ import annotations

import argparse

from ..errors import TransferNeuronsError
from ..interventions import applying
from ..runs.comparison import run_alignment
from .common import (
    add_condition_args, add_data_args, add_model_args, boot_count, intervention_from_args, write_and_print,
)
from .similarity import add_comparison_args, pair_inputs


def parse_ks(text: str) -> tuple[int, ...]:
    """--k as comma-separated positive integers, e.g. 5,10."""
    try:
        ks = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise TransferNeuronsError(f"--k {text!r}: expected comma-separated integers, e.g. 5,10") from None
    if not ks or min(ks) < 1:
        raise TransferNeuronsError(f"--k {text!r}: expected positive integers, e.g. 5,10")
    return tuple(dict.fromkeys(ks))


def run(args: argparse.Namespace) -> int:
    ks = parse_ks(args.k)
    inputs = pair_inputs(args)
    with applying(intervention_from_args(args, inputs.pairs)):
        return write_and_print(args, lambda folder: run_alignment(inputs, folder, ks, args.n_boot))


def register(subparsers) -> None:
    parser = subparsers.add_parser("alignment", help="per-layer mutual kNN and debiased CKA between hub and L2 states (method.md §6.3)",
                                   description="Kernel alignment of the last-token layer outputs h[l] of parallel hub–L2 "
                                   "pairs: mutual k-nearest-neighbour alignment (raw and mean-centred states) and debiased "
                                   "linear CKA, with the L2 side under no, transfer-neuron and control deactivation. "
                                   "Writes alignment.csv/_mid.csv/.json, alignment_layers.png and alignment_drop.png.")
    add_comparison_args(parser)
    parser.add_argument("--k", default="5,10", help="neighbour counts of mutual kNN, comma-separated (default 5,10)")
    parser.add_argument("--n-boot", type=boot_count, default=1000, help="bootstrap resamples of pairs for CKA (default 1000)")
    add_condition_args(parser)
    add_model_args(parser)
    add_data_args(parser)
    parser.set_defaults(func=run)
