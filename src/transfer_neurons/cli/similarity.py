"""`transfer-neurons similarity`: per-layer English–L2 cosine of h[l] under deactivation (method.md §6.1).

Also holds the options that every hub–L2 comparison command (activations, alignment, ablate) shares.
"""

from __future__ import annotations

import argparse

from ..analyses.similarity import middle_layers
from ..conditions import Condition
from ..data import ParallelPairs
from ..detection import Detection
from ..errors import TransferNeuronsError
from ..interventions import MODES, applying
from ..models.loaded import LoadedModel
from ..runs.common import describe_conditions
from ..runs.comparison import PairInputs, run_similarity
from ..scoring import parse_layers
from ..states import StateProvider
from .common import (
    DATA_HELP, add_condition_args, add_data_args, add_model_args, conditions_from_args, intervention_from_args,
    model_from_args, pairs_from_args, positive_int, seed_arg, write_and_print,
)


def add_comparison_args(parser: argparse.ArgumentParser) -> None:
    """--lang, --hub-lang, --data, --pairs, --mid-layers, --seed, --mode, --out."""
    parser.add_argument("--lang", help="L2 language code (default: the detection's language)")
    parser.add_argument("--hub-lang", default="en", help="shared-space language, never deactivated (default en)")
    parser.add_argument("--data", default="parallel", help=f"hub–LANG parallel pairs: {DATA_HELP} (default: bundled 'parallel', test split)")
    parser.add_argument("--pairs", dest="limit", metavar="N", type=positive_int, default=None, help="use only the first N pairs (same as --limit)")
    parser.add_argument("--mid-layers", metavar="START:END", help="layers of the mid-layer summary START:END (0-based, END exclusive; default: "
                        "middle third of the model's layers for Type-1 neurons, the candidate layers for Type-2)")
    parser.add_argument("--seed", type=seed_arg, default=0, help="seed of the non-parallel pairing and the bootstrap (default 0)")
    parser.add_argument("--mode", choices=MODES, default="last", help="token positions deactivated (default last)")
    parser.add_argument("--out", required=True, help="output folder")


def check_fits(det: Detection, lm: LoadedModel, source: str) -> None:
    """Refuse a detection made on a model of another shape."""
    want = (lm.view.num_layers, lm.view.d_ff)
    if tuple(det.scores.shape) != want:
        raise TransferNeuronsError(
            f"{source}: detection is for a model with {det.scores.shape[0]} layers x {det.scores.shape[1]} neurons, "
            f"but {lm.name} has {want[0]} x {want[1]}; pass the --model the detection was made with"
        )


def resolve_mid_layers(args: argparse.Namespace, lm: LoadedModel, det: Detection | None) -> tuple[tuple[int, ...], str]:
    """The mid-layer range and how it was chosen."""
    num_layers = lm.view.num_layers
    if args.mid_layers:
        return parse_layers(args.mid_layers, num_layers, "mid_layers"), f"--mid-layers {args.mid_layers}"
    if det is not None and det.neuron_type == "type2":
        return middle_layers(num_layers, "type2", det.layers), f"the type2 candidate layers {det.layers[0]}-{det.layers[-1]}"
    return middle_layers(num_layers, "type1"), f"middle third of the model's {num_layers} layers"


def comparison_pairs(args: argparse.Namespace, det: Detection | None) -> ParallelPairs:
    """Hub–L2 test pairs for --lang (default: the detection's language); at least 2, to mismatch them."""
    lang = args.lang or (det.lang if det is not None else None)
    if not lang:
        raise TransferNeuronsError("--lang is required when no detection folder names the language")
    pairs = pairs_from_args(args, args.data, args.hub_lang, lang, "test")
    if len(pairs) < 2:
        given = f" with --pairs/--limit {args.limit}" if args.limit else ""
        raise TransferNeuronsError(f"{pairs.name}{given}: {len(pairs)} {pairs.hub_lang}–{lang} pair; the comparison "
                                   "needs at least 2, since its non-parallel pairs mismatch them")
    return pairs


def run_meta(args: argparse.Namespace, lm: LoadedModel, pairs: ParallelPairs, conditions: list[Condition],
             mid: tuple[int, ...], mid_rule: str, source: str | None) -> dict:
    """What a result depends on: model, data, neurons, conditions, layers and settings."""
    return {
        "model": lm.name, "hub_lang": pairs.hub_lang, "lang": pairs.lang, "data": pairs.name, "pairs": len(pairs),
        "neurons_from": source, "mode": args.mode, "seed": args.seed, "num_layers": lm.view.num_layers,
        "mid_layers": list(mid), "mid_layers_rule": mid_rule, "conditions": describe_conditions(conditions),
        "nonparallel": "seeded derangement of the same pairs (no sentence meets its own translation)",
        "centring": "one mean per layer over the undeactivated hub and L2 states, shared by all conditions and both pair kinds",
        "drop": "none − condition (positive: deactivation lowered the cosine)",
    }


def pair_inputs(args: argparse.Namespace) -> PairInputs:
    """Model, detection, conditions, test pairs and mid layers from the options of a pair comparison."""
    det, conditions = conditions_from_args(args)
    pairs = comparison_pairs(args, det)
    lm = model_from_args(args)
    check_fits(det, lm, args.detection)
    mid, rule = resolve_mid_layers(args, lm, det)
    return PairInputs(StateProvider(lm, args.batch_size), lm.name, pairs, det, conditions, mid, rule, args.seed,
                      args.mode, args.detection)


def run_comparison(args: argparse.Namespace, quantity: str) -> int:
    """Shared body of `similarity` (h) and `activations` (a)."""
    inputs = pair_inputs(args)
    with applying(intervention_from_args(args, inputs.pairs)):
        return write_and_print(args, lambda folder: run_similarity(inputs, folder, quantity))


def run(args: argparse.Namespace) -> int:
    return run_comparison(args, "h")


def register(subparsers) -> None:
    parser = subparsers.add_parser("similarity", help="per-layer English–L2 hidden-state cosine under deactivation (method.md §6.1)",
                                   description="Cosine of the last-token layer outputs h[l] between hub and L2 sentences, "
                                   "parallel and non-parallel pairs, raw and mean-centred, with the L2 side under no, "
                                   "transfer-neuron and control deactivation. Writes similarity.csv/_mid.csv/.json, "
                                   "similarity_values.npy ([value, condition, pair, layer]; the axes are named in "
                                   "similarity.json) and figures.")
    add_comparison_args(parser)
    add_condition_args(parser)
    add_model_args(parser)
    add_data_args(parser)
    parser.set_defaults(func=run)
