"""`transfer-neurons centroids`: write only the centroids of one type and language."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data import ParallelPairs, Sentences
from ..detection import NEURON_TYPES, model_shape, versions
from ..outputs import save_npy, staged_folder, write_json
from ..runs.detection import centroids_for
from .common import DATA_HELP, add_data_args, add_model_args, model_from_args, pairs_from_args, sentences_from_args


def add_centroid_args(parser: argparse.ArgumentParser) -> None:
    """Options naming the centroid type, language and data (shared with `detect`)."""
    parser.add_argument("--type", required=True, choices=NEURON_TYPES, dest="neuron_type",
                        help="type1: shared-space centroid from hub–LANG pairs; type2: LANG-space centroid")
    parser.add_argument("--lang", required=True, help="the L2 language code, e.g. ja")
    parser.add_argument("--hub-lang", default="en", help="language paired with LANG for the Type-1 centroid (default en)")
    parser.add_argument("--centroid-data", default="parallel",
                        help=f"type1: hub–LANG pairs; type2: LANG sentences. {DATA_HELP} (default: bundled 'parallel')")


def centroid_source(args: argparse.Namespace) -> ParallelPairs | Sentences:
    """What the centroid averages: hub–LANG pairs for Type-1, LANG sentences for Type-2."""
    if args.neuron_type == "type1":
        return pairs_from_args(args, args.centroid_data, args.hub_lang, args.lang, "train")
    return sentences_from_args(args, args.centroid_data, args.lang, "train")


def run(args: argparse.Namespace) -> int:
    lm = model_from_args(args)
    cents, data = centroids_for(lm, args.neuron_type, centroid_source(args), args.batch_size)
    out = Path(args.out)
    with staged_folder(out, owner=args.command) as tmp:  # both files or none
        save_npy(tmp / "centroids.npy", cents.numpy())
        write_json(tmp / "centroids_meta.json", {
            "model": lm.name, "model_revision": lm.revision, "model_fingerprint": lm.fingerprint(), **model_shape(lm),
            "type": args.neuron_type, "language": args.lang, **data, "versions": versions(),
        })
    print(f"wrote {out / 'centroids.npy'} ({cents.shape[0]} layers x {cents.shape[1]})")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("centroids", help="compute Type-1 or Type-2 centroids only (method.md §3)",
                                   description="Compute centroids of raw layer outputs and write centroids.npy "
                                   "[layer, d_model] and centroids_meta.json (model, type, language, data), for "
                                   "`detect --centroids`.")
    add_centroid_args(parser)
    add_model_args(parser)
    add_data_args(parser)
    parser.add_argument("--out", required=True, help="output folder")
    parser.set_defaults(func=run)
