"""`transfer-neurons ablate`: what do these neurons do to English–L2 similarity? One compact table.

Per condition (none, the given neurons, each control): the mid-layer drop of the raw and
centred cosine of h[l] over parallel pairs, with bootstrap intervals, transfer − control,
a paired test against no deactivation, the spread over seeds and the contribution-norm ratio.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from ..analyses.similarity import METRIC_TITLES, ablate_rows, hidden_similarity, plot_mid_drop
from ..conditions import DEFAULT_CONTROLS, Condition, build_conditions
from ..detection import Detection, read_detection, read_neurons
from ..errors import TransferNeuronsError
from ..models.loaded import LoadedModel
from ..interventions import applying
from ..outputs import save_figure, staged_folder, write_csv, write_json
from ..runs.common import effects_text
from .common import (
    add_data_args, add_intervention_arg, add_model_args, add_model_check_arg, control_specs, intervention_from_args,
    model_from_args, positive_int,
)
from .similarity import add_comparison_args, check_fits, comparison_pairs, resolve_mid_layers, run_meta


def neuron_source(args: argparse.Namespace) -> tuple[Detection | None, np.ndarray, str]:
    """The detection (if any), the neurons to test [n, 2] and where they came from."""
    det = read_detection(args.detection) if args.detection else None
    if args.neurons:
        path = Path(args.neurons)
        if det is None and path.is_dir() and (path / "meta.json").is_file():
            det = read_detection(path)
        neurons, source = read_neurons(path, args.top_k), str(path)
    elif det is not None:
        neurons, source = det.neurons[: args.top_k], args.detection
    else:
        raise TransferNeuronsError("give the neurons to test: --neurons PATH (neurons.json or detection folder) and/or --detection DIR")
    if len(neurons) == 0:
        raise TransferNeuronsError(f"{source}: no neurons to deactivate")
    return det, neurons, source


def control_list(args: argparse.Namespace, det: Detection | None, source: str) -> list[str]:
    """The --controls specs (default: all four with a detection, none with a bare neurons list)."""
    specs = args.controls.split(",") if args.controls is not None else (DEFAULT_CONTROLS if det is not None else ())
    specs = [s.strip() for s in specs if s.strip()]
    if det is None and specs:
        raise TransferNeuronsError(
            f"--controls {','.join(specs)} need --detection DIR (candidate layers, scores, magnitudes); "
            f"{source} is a bare neurons list: give --detection or --controls ''"
        )
    return specs


def ablate_conditions(args: argparse.Namespace, lm: LoadedModel, det: Detection | None, neurons: np.ndarray,
                      source: str, specs: list[str]) -> list[Condition]:
    """none, the given neurons as `transfer`, and the controls, for neurons that fit the model."""
    view = lm.view
    if neurons[:, 0].max() >= view.num_layers or neurons[:, 1].max() >= view.d_ff or neurons.min() < 0:
        raise TransferNeuronsError(
            f"{source}: neurons outside {lm.name}'s {view.num_layers} layers x {view.d_ff} neurons; "
            "pass the --model they were found in"
        )
    if det is None:
        return [Condition("none", None), Condition("transfer", neurons)]
    check_fits(det, lm, args.detection or source)
    return build_conditions(dataclasses.replace(det, neurons=neurons), specs, seeds=args.seeds)


def run(args: argparse.Namespace) -> int:
    det, neurons, source = neuron_source(args)
    specs = control_list(args, det, source)
    pairs = comparison_pairs(args, det)
    lm = model_from_args(args)
    conditions = ablate_conditions(args, lm, det, neurons, source, specs)
    mid, rule = resolve_mid_layers(args, lm, det)
    intervention = intervention_from_args(args, pairs)
    with applying(intervention):
        cos = hidden_similarity(lm, pairs, conditions, args.seed, args.batch_size, args.mode)
    rows = ablate_rows(cos, conditions, mid, det.magnitudes if det is not None else None, args.seed)
    out = Path(args.out)
    meta = {**run_meta(args, lm, pairs, conditions, mid, rule, source), "intervention": intervention.spec}
    title = (f"{lm.name} — mid-layer drop of {pairs.hub_lang}–{pairs.lang} similarity of h[l] "
             f"({len(pairs)} parallel pairs, {len(conditions[1].neurons)} neurons per set)")
    with staged_folder(out, owner=args.command) as tmp:  # the three files or none
        write_csv(tmp / "ablate.csv", rows)
        write_json(tmp / "ablate.json", {**meta, "rows": rows})
        save_figure(tmp / "ablate.png", plot_mid_drop(cos, conditions, rows, mid, title, kinds=("parallel",)))
    print(f"{lm.name}: {len(conditions[1].neurons)} neurons from {source}, {pairs.hub_lang}–{pairs.lang}, "
          f"{len(pairs)} parallel pairs ({pairs.name}); mid layers {mid[0]}-{mid[-1]} ({rule})\n")
    print("\n\n".join(effects_text([r for r in rows if r["metric"] == m], f"{METRIC_TITLES[m]}, parallel pairs, layers "
                                    f"{rows[0]['layer']} (drop = none − condition)") for m in dict.fromkeys(r["metric"] for r in rows)))
    ratio = next((c.note["magnitude_ratio"] for c in conditions if "magnitude_ratio" in c.note), None)
    if ratio is not None:
        print(f"\nmagnitude-matched neurons reach {ratio:.0%} of the transfer neurons' mean contribution norm |a|·‖v‖"
              + (" (no close match for the largest ones)" if ratio < 0.8 else ""))
    print(f"\nwrote {out / 'ablate.csv'}, ablate.json, ablate.png")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("ablate", help="compact table: what deactivating neurons does to English–L2 similarity",
                                   description="Deactivate the given neurons (and controls) on the L2 side and report the "
                                   "mid-layer drop of the raw and centred English–L2 cosine of h[l] over parallel pairs, "
                                   "with bootstrap intervals, transfer − control, p vs none and seed spread. "
                                   "Writes ablate.csv, ablate.json and ablate.png and prints the table.")
    group = parser.add_argument_group("neurons")
    group.add_argument("--neurons", help="neurons to deactivate: a neurons.json from `detect` or a detection folder")
    group.add_argument("--detection", help="a detection folder: its neurons (unless --neurons) and what controls need "
                       "(candidate layers, scores, magnitudes)")
    group.add_argument("--top-k", type=positive_int, default=None, help="deactivate only the first K ranked neurons")
    group.add_argument("--controls", type=control_specs, default=None,
                       help="comma-separated control specs: random[:SEEDS], layer-matched[:SEEDS], magnitude-matched, "
                       "anti; '' for none (default: all four with a detection, none with a bare neurons.json)")
    group.add_argument("--seeds", type=positive_int, default=5, help="seeds per seeded control (default 5)")
    add_intervention_arg(group)
    add_model_check_arg(group)
    add_comparison_args(parser)
    add_model_args(parser)
    add_data_args(parser)
    parser.set_defaults(func=run)
