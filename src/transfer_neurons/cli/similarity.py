"""`transfer-neurons similarity`: per-layer English–L2 cosine of h[l] under deactivation (SPEC 6.1).

Also holds the options and output writing that `activations` and `ablate` share.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..analyses.activations import activation_similarity
from ..analyses.similarity import (
    ConditionCosines,
    effect_tables,
    effects_text,
    hidden_similarity,
    middle_layers,
    plot_layer_curves,
    plot_mid_drop,
    with_magnitude_ratios,
)
from ..conditions import Condition
from ..data import ParallelPairs
from ..detection import Detection
from ..errors import TransferNeuronsError
from ..interventions import MODES
from ..models.loading import LoadedModel
from ..outputs import save_figure, save_npy, write_csv, write_json
from ..scoring import parse_layers
from .common import (
    DATA_HELP,
    add_condition_args,
    add_data_args,
    add_model_args,
    conditions_from_args,
    model_from_args,
    pairs_from_args,
    positive_int,
)


def add_comparison_args(parser: argparse.ArgumentParser) -> None:
    """--lang, --hub-lang, --data, --pairs, --mid-layers, --seed, --mode, --out."""
    parser.add_argument("--lang", help="L2 language code (default: the detection's language)")
    parser.add_argument("--hub-lang", default="en", help="shared-space language, never deactivated (default en)")
    parser.add_argument("--data", default="parallel", help=f"hub–LANG parallel pairs: {DATA_HELP} (default: bundled 'parallel', test split)")
    parser.add_argument("--pairs", dest="limit", metavar="N", type=positive_int, default=None, help="use only the first N pairs (same as --limit)")
    parser.add_argument("--mid-layers", metavar="START:END", help="layers of the mid-layer summary START:END (0-based, END exclusive; default: "
                        "middle third of the model's layers for Type-1 neurons, the candidate layers for Type-2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the non-parallel pairing and the bootstrap (default 0)")
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
        return parse_layers(args.mid_layers, num_layers), f"--mid-layers {args.mid_layers}"
    if det is not None and det.neuron_type == "type2":
        return middle_layers(num_layers, "type2", det.layers), f"the type2 candidate layers {det.layers[0]}-{det.layers[-1]}"
    return middle_layers(num_layers, "type1"), f"middle third of the model's {num_layers} layers"


def comparison_pairs(args: argparse.Namespace, det: Detection | None) -> ParallelPairs:
    """Hub–L2 test pairs for --lang (default: the detection's language)."""
    lang = args.lang or (det.lang if det is not None else None)
    if not lang:
        raise TransferNeuronsError("--lang is required when no detection folder names the language")
    return pairs_from_args(args, args.data, args.hub_lang, lang, "test")


def describe_conditions(conditions: list[Condition]) -> list[dict]:
    """Each condition's label, neuron count and notes, for the JSON record."""
    return [{"label": c.label, "name": c.name, "seed": c.seed,
             "neurons": 0 if c.neurons is None else int(len(c.neurons)), "note": c.note} for c in conditions]


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


def write_comparison(out: Path, name: str, cos: ConditionCosines, conditions: list[Condition], meta: dict,
                     mid: tuple[int, ...], what: str, quantity_label: str, magnitudes: np.ndarray | None) -> list[dict]:
    """Write NAME.csv (per layer), NAME_mid.csv, NAME.json, NAME_values.npy (per-pair cosines) and two figures.

    Returns the mid-layer rows."""
    per_layer, mid_rows = effect_tables(cos, conditions, mid, seed=meta["seed"])
    mid_rows = with_magnitude_ratios(mid_rows, conditions, magnitudes)
    write_csv(out / f"{name}.csv", per_layer)
    write_csv(out / f"{name}_mid.csv", mid_rows)
    keys, labels = list(cos.values), [c.label for c in conditions]
    save_npy(out / f"{name}_values.npy", np.stack([[cos.values[k][l] for l in labels] for k in keys]).astype(np.float32))
    axes = {"axes": ["value", "condition", "pair", "layer"], "value": keys, "condition": labels}
    write_json(out / f"{name}.json", {**meta, "values_npy": axes, "per_layer": per_layer, "mid": mid_rows})
    title = f"{meta['model']} — {what}, {meta['hub_lang']}–{meta['lang']} ({meta['pairs']} pairs, L2 side deactivated)"
    save_figure(out / f"{name}_layers.png", plot_layer_curves(cos, conditions, title, mid, quantity_label))
    save_figure(out / f"{name}_mid_drop.png", plot_mid_drop(cos, conditions, mid_rows, mid, title))
    return mid_rows


def run_comparison(args: argparse.Namespace, quantity: str) -> int:
    """Shared body of `similarity` (h) and `activations` (a)."""
    lm = model_from_args(args)
    det, conditions = conditions_from_args(args)
    check_fits(det, lm, args.detection)
    pairs = comparison_pairs(args, det)
    mid, rule = resolve_mid_layers(args, lm, det)
    analyse, name, what, label = {
        "h": (hidden_similarity, "similarity", "hidden-state similarity", "h[l]"),
        "a": (activation_similarity, "activations", "activation-pattern similarity", "a[l]"),
    }[quantity]
    cos = analyse(lm, pairs, conditions, args.seed, args.batch_size, args.mode)
    out = Path(args.out)
    meta = run_meta(args, lm, pairs, conditions, mid, rule, args.detection)
    mid_rows = write_comparison(out, name, cos, conditions, meta, mid, what, label, det.magnitudes)
    print(f"{what}, {pairs.hub_lang}–{pairs.lang}, {len(pairs)} pairs; mid layers {mid[0]}-{mid[-1]} ({rule})\n")
    print(effects_text(mid_rows))
    print(f"\nwrote {out / name}.csv, {name}_mid.csv, {name}.json, {name}_values.npy, {name}_layers.png, {name}_mid_drop.png")
    return 0


def run(args: argparse.Namespace) -> int:
    return run_comparison(args, "h")


def register(subparsers) -> None:
    parser = subparsers.add_parser("similarity", help="per-layer English–L2 hidden-state cosine under deactivation (SPEC 6.1)",
                                   description="Cosine of the last-token layer outputs h[l] between hub and L2 sentences, "
                                   "parallel and non-parallel pairs, raw and mean-centred, with the L2 side under no, "
                                   "transfer-neuron and control deactivation. Writes similarity.csv/_mid.csv/.json and figures.")
    add_comparison_args(parser)
    add_condition_args(parser)
    add_model_args(parser)
    add_data_args(parser)
    parser.set_defaults(func=run)
