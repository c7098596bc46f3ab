"""`transfer-neurons logit-lens`: per-layer probability mass on input-language vs English tokens."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ..analyses.logit_lens import SCRIPT_LANGS, lens_rows, logit_lens, plot_lens, token_sets
from ..conditions import Condition
from ..data import load_parallel
from ..data.catalog import BUNDLED_KINDS
from ..detection import versions
from ..interventions import applying
from ..outputs import save_figure, write_csv, write_json
from .common import (DATA_HELP, add_condition_args, add_data_args, add_model_args, conditions_from_args,
                     data_options, intervention_from_args, model_from_args, positive_int, sentences_from_args)

SAMPLE_TOKENS = 30


def run(args: argparse.Namespace) -> int:
    det, conditions = conditions_from_args(args) if args.detection else (None, [Condition("none", None)])
    if det is not None and det.lang != args.lang:
        print(f"note: deactivating {det.lang} neurons on {args.lang} sentences", file=sys.stderr)
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
        print(f"warning: empty token set ({int(sets.l2.sum())} {args.lang}, {int(sets.en.sum())} en tokens)", file=sys.stderr)
    with applying(intervention_from_args(args, reference=sentences.texts)):
        result = logit_lens(lm, sentences.texts, conditions, sets, args.batch_size, args.chunk)
    rows = lens_rows(result)
    sample = {name: lm.tokenizer.convert_ids_to_tokens(np.flatnonzero(mask)[:: max(1, int(mask.sum()) // SAMPLE_TOKENS)]
                                                       [:SAMPLE_TOKENS].tolist())
              for name, mask in (("l2", sets.l2), ("en", sets.en))}
    meta = {
        "model": lm.name, "language": args.lang, "data": sentences.name, "sentences": len(sentences),
        "detection": None if det is None else str(Path(args.detection).resolve()),
        "type": None if det is None else det.neuron_type, "detection_language": None if det is None else det.lang,
        "conditions": [c.label for c in conditions], "token_rule": sets.rule, "vocab_data": vocab_source,
        "l2_tokens": int(sets.l2.sum()), "en_tokens": int(sets.en.sum()), "token_samples": sample,
        "head": "final norm -> unembedding -> final logit softcapping if the model has it -> softmax",
        "mode": "last", "intervention": args.intervention, "versions": versions(),
    }
    out = Path(args.out)
    write_csv(out / "logit_lens.csv", rows)
    write_json(out / "logit_lens.json", {"meta": meta, "rows": rows})
    what = "no deactivation" if det is None else f"{det.neuron_type} {det.lang} deactivation vs controls"
    title = (f"{lm.name}: logit lens on {len(sentences)} {args.lang} sentences (last token), {what}\n"
             f"L2 tokens: {sets.l2.sum()} ({sets.rule.split(':')[0]} rule), English tokens: {sets.en.sum()}")
    save_figure(out / "logit_lens.png", plot_lens(result, title))
    print(f"{args.lang}: {int(sets.l2.sum())} L2 tokens, {int(sets.en.sum())} English tokens ({sets.rule})")
    print("layer  " + "  ".join(f"{c:>22}" for c in dict.fromkeys(c.name for c in conditions)))
    for layer in range(lm.view.num_layers):
        cells = []
        for name in dict.fromkeys(c.name for c in conditions):
            mean = {m: np.mean([result.values[m][c.label][:, layer].mean() for c in conditions if c.name == name])
                    for m in ("l2_mass", "en_mass")}
            cells.append(f"L2 {mean['l2_mass']:.4f} en {mean['en_mass']:.4f}")
        print(f"{layer:>5}  " + "  ".join(f"{c:>22}" for c in cells))
    print(f"wrote {out}/logit_lens.csv, logit_lens.json, logit_lens.png")
    return 0


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
    parser.add_argument("--chunk", type=positive_int, default=64,
                        help="states per unembedding step (memory: chunk x vocabulary floats; default 64)")
    add_condition_args(parser, detection_required=False)
    add_model_args(parser)
    add_data_args(parser)
    parser.add_argument("--out", required=True, help="output folder")
    parser.set_defaults(func=run)
