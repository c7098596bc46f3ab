"""`transfer-neurons dose`: the middle-layer similarity drop as a function of how many neurons are
deactivated (--counts) and of how strongly the detection's neurons are scaled (--scales)."""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

from ..analyses.dose import DEFAULT_COUNTS, dose_counts, max_count
from ..analyses.similarity import middle_layers
from ..detection import read_detection
from ..errors import TransferNeuronsError
from ..interventions import applying
from ..runs.dose import DoseInputs, run_dose
from ..states import StateProvider
from ..scoring import parse_layers
from .common import (
    DATA_HELP, add_data_args, add_intervention_arg, add_model_args, add_model_check_arg, intervention_from_args,
    model_from_args, pairs_from_args, positive_int, write_and_print,
)


LOG = logging.getLogger("transfer_neurons.cli.dose")


def parse_counts(text: str) -> list[int]:
    """argparse type: comma-separated positive neuron counts."""
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"expected positive neuron counts, got {text!r}")
    return counts


def parse_scales(text: str) -> list[float]:
    """argparse type: comma-separated finite scale factors, e.g. 0,0.5,1,2."""
    try:
        scales = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not scales or not all(math.isfinite(f) for f in scales):
        raise argparse.ArgumentTypeError(f"expected finite scale factors, got {text!r}")
    return scales


def run(args: argparse.Namespace) -> int:
    det = read_detection(args.detection)
    lang = args.lang or det.lang
    counts, dropped = dose_counts(args.counts or DEFAULT_COUNTS, det) if args.counts or not args.scales else ([], [])
    if dropped and not counts:
        given = "--counts" if args.counts else "--counts (default)"
        raise TransferNeuronsError(f"{given}: {','.join(map(str, dropped))} all exceed half the candidate neurons of "
                                   f"{args.detection}'s {len(det.layers)} layers (at most {max_count(det)})")
    if dropped:
        LOG.warning("counts %s exceed half the %d candidate layers' neurons; skipped", dropped, len(det.layers))
    pairs = pairs_from_args(args, args.data, args.hub_lang, lang, "test")
    lm = model_from_args(args)
    mid = parse_layers(args.mid_layers, lm.view.num_layers, "mid_layers") if args.mid_layers else middle_layers(
        lm.view.num_layers, det.neuron_type, det.layers)
    inputs = DoseInputs(StateProvider(lm, args.batch_size), lm.name, pairs, det, counts, args.scales or [], args.seeds,
                        mid, counts_skipped=dropped, detection=str(Path(args.detection).resolve()))
    with applying(intervention_from_args(args, pairs)):
        return write_and_print(args, lambda folder: run_dose(inputs, folder))


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "dose", help="similarity drop vs number of deactivated neurons, or vs a scale factor on them",
        description="Deactivate (or --intervention) the top-K ranked neurons (ranked from the detection's scores, so "
        "K may exceed its neurons.json), K random neurons of the same layers (several seeds) and the K lowest-scoring "
        "(anti) neurons on the L2 side, and report the drop of the middle-layer hub–L2 cosine (raw and mean-centred) "
        "on parallel pairs per K: dose.csv, dose_layers.csv, dose.json, dose.png. With --scales, also multiply the "
        "detection's neurons and as many random ones by each factor F: dose_scale.csv, dose_scale_layers.csv, "
        "dose_scale.json, dose_scale.png.")
    parser.add_argument("--detection", required=True, help="a detection folder written by `detect`")
    parser.add_argument("--lang", default=None, help="the L2 language of the pairs (default: the detection's)")
    parser.add_argument("--hub-lang", default="en", help="the undeactivated side of the pairs (default en)")
    parser.add_argument("--data", default="parallel", help=f"hub–L2 parallel pairs: {DATA_HELP} (default: bundled 'parallel')")
    parser.add_argument("--counts", type=parse_counts, default=None,
                        help="comma-separated neuron counts (default 10,30,100,300,1000, unless only --scales is given)")
    parser.add_argument("--scales", type=parse_scales, default=None,
                        help="comma-separated factors F, e.g. 0,0.5,1,1.5,2: multiply the detection's neurons (and as "
                        "many random ones) by each F and write dose_scale.*")
    parser.add_argument("--seeds", type=positive_int, default=3, help="random draws per count (default 3)")
    parser.add_argument("--mid-layers", default=None,
                        help="layers START:END (0-based, END exclusive) to average; default: Type-1 the middle third "
                        "of the model's layers, Type-2 all candidate layers (as `ablate`)")
    add_intervention_arg(parser)
    add_model_args(parser)
    add_model_check_arg(parser)
    add_data_args(parser)
    parser.add_argument("--out", required=True, help="output folder")
    parser.set_defaults(func=run)
