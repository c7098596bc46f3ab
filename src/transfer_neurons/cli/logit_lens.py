"""`transfer-neurons logit-lens`: per-layer probability mass on input-language vs English tokens."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..analyses.logit_lens import SCRIPT_LANGS, token_sets
from ..conditions import Condition
from ..data import load_parallel
from ..data.catalog import BUNDLED_KINDS
from ..interventions import applying
from ..runs.logit_lens import LensInputs, run_logit_lens
from .common import (
    DATA_HELP, add_condition_args, add_data_args, add_model_args, conditions_from_args, data_options,
    intervention_from_args, model_from_args, positive_int, sentences_from_args, write_and_print,
)


LOG = logging.getLogger("transfer_neurons.cli.logit_lens")


def run(args: argparse.Namespace) -> int:
    det, conditions = conditions_from_args(args) if args.detection else (None, [Condition("none", None)])
    if det is not None and det.lang != args.lang:
        LOG.warning("deactivating %s neurons on %s sentences", det.lang, args.lang)
    lm = model_from_args(args)
    sentences = sentences_from_args(args, args.data, args.lang, "test")
    en_texts, l2_texts, vocab_source = (), (), None
    if args.lang not in SCRIPT_LANGS:
        split = "train" if args.vocab_data in BUNDLED_KINDS else None  # never the sentences the lens reads
        corpus = load_parallel(args.vocab_data, split=split, **data_options(args))
        pairs = corpus.pairs("en", args.lang)
        en_texts, l2_texts, vocab_source = pairs.hub, pairs.l2, pairs.name
    sets = token_sets(lm, args.lang, en_texts, l2_texts)
    if not sets.l2.any() or not sets.en.any():
        LOG.warning("empty token set (%d %s, %d en tokens)", int(sets.l2.sum()), args.lang, int(sets.en.sum()))
    inputs = LensInputs(lm, args.lang, sentences.texts, sentences.name, sets, conditions, det,
                        None if det is None else str(Path(args.detection).resolve()), vocab_source, args.batch_size,
                        args.chunk)
    with applying(intervention_from_args(args, reference=sentences.texts)):
        return write_and_print(args, lambda folder: run_logit_lens(inputs, folder))


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "logit-lens", help="per-layer lens probability mass on input-language vs English tokens",
        description="Project each layer's last-token state through the model's final norm and unembedding and sum "
        "the softmax probability on tokens of LANG and of English, per sentence and layer, with and without "
        "deactivation of a detection's neurons and controls. Token sets: ja/ko/zh by script, other languages by "
        "the tokens only one side of a parallel corpus uses. Writes logit_lens.csv, logit_lens.json and "
        "logit_lens.png to --out.")
    parser.add_argument("--lang", required=True, help="the language of the input sentences, e.g. ja")
    parser.add_argument("--data", default="parallel", help=f"LANG sentences: {DATA_HELP} (default: bundled 'parallel')")
    parser.add_argument("--vocab-data", default="parallel",
                        help="parallel corpus whose en and LANG sides define the token sets of Latin-script languages "
                        "(its 'train' split for bundled sets; default: bundled 'parallel')")
    parser.add_argument("--chunk", type=positive_int, default=None,
                        help="states per unembedding step (memory: chunk x vocabulary floats; default: about 256 MiB "
                        "of logits, 256 states for a 262k vocabulary)")
    add_condition_args(parser, detection_required=False)
    add_model_args(parser)
    add_data_args(parser)
    parser.add_argument("--out", required=True, help="output folder")
    parser.set_defaults(func=run)
