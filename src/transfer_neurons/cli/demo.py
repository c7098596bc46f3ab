"""`transfer-neurons demo`: a one-minute look at a model: per-layer English–L2 similarity."""

from __future__ import annotations

import argparse
import logging

from ..analyses.similarity import pair_similarity
from ..data import ParallelPairs, load_parallel, nonparallel_pairs
from ..errors import TransferNeuronsError
from .common import add_model_args, codes, model_from_args, positive_int

LOG = logging.getLogger("transfer_neurons")


def demo_pairs(args: argparse.Namespace) -> list[ParallelPairs]:
    """The first --pairs bundled test pairs of each of --langs, checked before the model loads."""
    langs = codes(args.langs)
    if not langs or "en" in langs or len(set(langs)) != len(langs):
        raise TransferNeuronsError(f"--langs {args.langs!r}: expected distinct L2 codes other than en, e.g. ja,ko")
    corpus = load_parallel("parallel", languages=["en", *langs], split="test")
    out = []
    for lang in langs:
        pairs = corpus.pairs("en", lang)
        if len(pairs) < args.pairs:
            LOG.warning("--pairs %d: the bundled test split has %d en–%s pairs; using them all", args.pairs,
                        len(pairs), lang)
        if min(len(pairs), args.pairs) < 2:
            raise TransferNeuronsError(f"--pairs {args.pairs}: the non-parallel baseline needs at least 2 pairs")
        out.append(ParallelPairs(pairs.name, "en", lang, pairs.hub[: args.pairs], pairs.l2[: args.pairs]))
    return out


def run(args: argparse.Namespace) -> int:
    chosen = demo_pairs(args)
    lm = model_from_args(args)
    print(f"model {lm.name}: {lm.view.num_layers} layers, d_model {lm.view.d_model}, d_ff {lm.view.d_ff}")
    for pairs in chosen:
        lang = pairs.lang
        parallel = pair_similarity(lm, pairs.hub, pairs.l2, batch_size=args.batch_size)
        unrelated = pair_similarity(lm, pairs.hub, nonparallel_pairs(pairs, seed=0).l2, batch_size=args.batch_size)
        print(f"\nen–{lang}, {len(pairs)} pairs: mean cosine of last-token layer outputs")
        print("layer  raw parallel  raw non-par.  centred parallel  centred non-par.")
        for layer in range(lm.view.num_layers):
            print(f"{layer:>5}  {parallel.raw[:, layer].mean():12.3f}  {unrelated.raw[:, layer].mean():12.3f}"
                  f"  {parallel.centred[:, layer].mean():16.3f}  {unrelated.centred[:, layer].mean():16.3f}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="quick per-layer cross-lingual similarity on bundled pairs",
                                   description="Load a model and print, per layer, the raw and mean-centred cosine "
                                   "between English and L2 sentences, parallel vs non-parallel (bundled test pairs).")
    parser.add_argument("--langs", default="ja,nl,ko,it", help="comma-separated L2 codes (default ja,nl,ko,it)")
    parser.add_argument("--pairs", type=positive_int, default=24, help="pairs per language (default 24)")
    add_model_args(parser)
    parser.set_defaults(func=run)
