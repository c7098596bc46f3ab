"""`transfer-neurons latent`: language latent spaces of several languages per layer, with and without each
language's own Type-1 or Type-2 neurons deactivated (method.md §6.4)."""

from __future__ import annotations

import argparse

from ..analyses.latent_spaces import PROTOCOLS
from ..analyses.similarity import middle_layers
from ..conditions import language_conditions
from ..detection import NEURON_TYPES, Detection, read_detection
from ..errors import TransferNeuronsError
from ..interventions import MODES, applying
from ..runs.latent import LatentInputs, run_latent
from ..states import StateProvider
from .common import (
    DATA_HELP, add_data_args, add_intervention_arg, add_model_args, add_model_check_arg, boot_count, codes, control_specs,
    intervention_from_args, model_from_args, positive_int, seed_arg, sentences_from_args, write_and_print,
)
from .similarity import check_fits


def choose_detections(folders: list[str], langs: list[str], neuron_type: str | None,
                      top_k: int | None) -> tuple[str, dict[str, Detection], dict[str, str]]:
    """The neuron type and, per L2, its own detection of that type and its folder (none needed for --type none)."""
    found = [(read_detection(f, top_k), f) for f in folders]
    types = sorted({d.neuron_type for d, _ in found})
    if neuron_type is None:
        if len(types) != 1:
            raise TransferNeuronsError(f"detections of types {types or 'none'}: say which with --type type1|type2|none")
        neuron_type = types[0]
    chosen: dict[str, Detection] = {}
    where: dict[str, str] = {}
    if neuron_type == "none":
        return neuron_type, chosen, where
    for det, folder in found:
        if det.neuron_type == neuron_type and det.lang in langs:
            if det.lang in chosen:
                raise TransferNeuronsError(f"two {neuron_type} detections for {det.lang}; give one per language")
            chosen[det.lang], where[det.lang] = det, str(folder)
    missing = [lang for lang in langs if lang not in chosen]
    if missing:
        raise TransferNeuronsError(f"no {neuron_type} detection folder for {', '.join(missing)} among --detections")
    return neuron_type, chosen, where


def run(args: argparse.Namespace) -> int:
    langs = codes(args.langs) if args.langs else None
    if langs is None:
        if not args.detections:
            raise TransferNeuronsError("give --langs (and --detections for deactivation)")
        langs = list(dict.fromkeys(read_detection(f).lang for f in args.detections))
    langs = [lang for lang in langs if lang != args.hub_lang]
    if not langs:
        raise TransferNeuronsError(f"--langs names no language besides the hub language {args.hub_lang!r}")
    neuron_type, dets, folders = choose_detections(args.detections or [], langs, args.neuron_type, args.top_k)
    lm = model_from_args(args)
    for lang, det in dets.items():
        check_fits(det, lm, f"{lang} detection")
    conditions, neurons = language_conditions(dets, args.controls, args.seeds)
    texts = {lang: sentences_from_args(args, args.data, lang, "test").texts for lang in [args.hub_lang, *langs]}
    candidates = next(iter(dets.values())).layers if neuron_type == "type2" else None
    inputs = LatentInputs(StateProvider(lm, args.batch_size), lm.name, texts, args.hub_lang, neuron_type, conditions,
                          neurons, middle_layers(lm.view.num_layers, "type2", candidates), args.seed, args.mode,
                          args.n_boot, args.data, folders, args.protocol)
    reference = [text for lang in langs for text in texts[lang]]  # mean: over every L2's sentences
    with applying(intervention_from_args(args, reference=reference)):
        return write_and_print(args, lambda folder: run_latent(inputs, folder))


def register(subparsers) -> None:
    parser = subparsers.add_parser("latent", help="language latent spaces of several languages per layer (method.md §6.4)",
                                   description="Per layer: 2-D PCA scatter of the last-token states of the hub language and "
                                   "each L2, raw and centred cosine between language centroids, singular components "
                                   "reaching 90/95/99 % of each language's variance, and the mean pairwise centroid "
                                   "distance ('merge'); with no deactivation and with each L2's own Type-1 or Type-2 "
                                   "neurons (and controls) deactivated on that language's sentences.")
    parser.add_argument("--detections", nargs="+", metavar="DIR", default=[],
                        help="detection folders, one per L2 of the chosen type (meta.json names type and language)")
    parser.add_argument("--langs", help="comma-separated L2 codes, e.g. ja,nl,ko,it (default: the detections' languages)")
    parser.add_argument("--hub-lang", default="en", help="shared-space language, always shown and never deactivated (default en)")
    parser.add_argument("--type", dest="neuron_type", choices=(*NEURON_TYPES, "none"), default=None,
                        help="whose neurons to deactivate (default: the detections' type); none: no deactivation")
    parser.add_argument("--data", default="parallel", help=f"sentences of every language: {DATA_HELP} (default: bundled 'parallel', test split)")
    parser.add_argument("--top-k", type=positive_int, default=None, help="deactivate only the first K ranked neurons of each language")
    parser.add_argument("--controls", type=control_specs, default="random",
                        help="comma-separated control specs built per language from its own detection: "
                        "random[:SEEDS], layer-matched[:SEEDS], magnitude-matched, anti; empty for none (default random)")
    parser.add_argument("--seeds", type=positive_int, default=3, help="seeds per seeded control (default 3)")
    add_intervention_arg(parser)
    parser.add_argument("--n-boot", type=boot_count, default=500, help="bootstrap resamples of sentences (default 500)")
    parser.add_argument("--mode", choices=MODES, default="last", help="token positions deactivated (default last)")
    parser.add_argument("--seed", type=seed_arg, default=0, help="seed of the bootstrap and the PCA (default 0)")
    parser.add_argument("--protocol", choices=tuple(PROTOCOLS), default="default",
                        help="default: component counts from each language's centred states, and one PCA frame per "
                        "layer fitted on the undeactivated states, into which every condition is projected; paper: "
                        "component counts from the singular values of the uncentred states, and each condition's "
                        "panel in its own PCA fitted on that condition's states, as the paper drew them (everything "
                        "else is the same)")
    parser.add_argument("--out", required=True, help="output folder")
    add_model_args(parser)
    add_model_check_arg(parser)
    add_data_args(parser)
    parser.set_defaults(func=run)
