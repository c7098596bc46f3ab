"""`transfer-neurons specificity`: how language-specific transfer neurons are, against the base rate."""

from __future__ import annotations

import argparse

from ..analyses.lape import QUANTILE, TOP_SHARE
from ..analyses.specificity import ALPHA, PROTOCOLS, THRESHOLDS
from ..data import load_sentences
from ..detection import read_detection
from ..errors import TransferNeuronsError
from ..runs.specificity import SpecificityInputs, run_specificity
from .common import (
    DATA_HELP, LANG_FIELD, add_model_args, add_model_check_arg, codes, data_options, model_from_args, positive_int,
    resolve_split, write_and_print,
)


def _fraction_list(text: str) -> tuple[float, ...]:
    """argparse type: comma-separated numbers in [0, 1]."""
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or any(not 0 <= v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected numbers between 0 and 1, got {text!r}")
    return values


def _texts_by_lang(args: argparse.Namespace, langs: list[str]) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    """Monolingual sentences per language (first --per-lang of the split) and their source names."""
    texts, sources = {}, {}
    for lang in langs:
        spec = args.data.replace(LANG_FIELD, lang)
        split = resolve_split(args, spec, "test")
        sentences = load_sentences(spec, lang, split=split, limit=args.per_lang, **data_options(args))
        if len(sentences.texts) < 2:
            given = f" (--per-lang {args.per_lang})" if args.per_lang else f" in split {split or 'all'}"
            raise TransferNeuronsError(f"{spec}: {len(sentences.texts)} {lang} sentence(s){given}; η² and the ANOVA "
                                       "need at least 2 per language")
        texts[lang], sources[lang] = tuple(sentences.texts[: args.per_lang]), sentences.name
    return texts, sources


def _check_detections(dets, langs: list[str], lm) -> None:
    """Detections must be for measured languages and for a model of this shape."""
    for det in dets:
        if det.lang not in langs:
            raise TransferNeuronsError(f"detection {det.neuron_type} {det.lang}: {det.lang!r} is not in --langs {','.join(langs)}")
        shape = (det.meta.get("num_layers"), det.meta.get("d_ff"))
        if shape != (lm.view.num_layers, lm.view.d_ff):
            raise TransferNeuronsError(
                f"detection {det.neuron_type} {det.lang} is for a model with {shape[0]} layers x {shape[1]} neurons; "
                f"{lm.name} has {lm.view.num_layers} x {lm.view.d_ff} (pass the same --model as `detect`)"
            )
        if det.meta.get("model") != lm.name:
            print(f"note: detection {det.neuron_type} {det.lang} was made with {det.meta.get('model')}, measuring {lm.name}")


def run(args: argparse.Namespace) -> int:
    langs = codes(args.langs)
    if len(set(langs)) < 2 or len(set(langs)) != len(langs):
        raise TransferNeuronsError(f"--langs needs at least two distinct language codes, got {args.langs!r}")
    dets = [read_detection(folder, args.top_k) for folder in args.detections]
    texts, sources = _texts_by_lang(args, langs)
    lm = model_from_args(args)
    _check_detections(dets, langs, lm)
    inputs = SpecificityInputs(lm, texts, sources, dets, list(args.detections), args.batch_size, args.thresholds,
                               args.alpha, args.lape_share, args.lape_quantile, args.protocol)
    return write_and_print(args, lambda folder: run_specificity(inputs, folder))


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "specificity", help="language specificity (η², ANOVA, LAPE) of transfer neurons vs base rates (method.md §6.5–6.6)",
        description="Stream last-token activations over monolingual sentences of several languages; per detection, "
        "the share of transfer neurons whose activation separates the target language (η² one-vs-rest, ANOVA p) "
        "beside the base rate of all neurons in the same layers, Type-1 vs Type-2, and the overlap with LAPE "
        "language-specific neurons vs chance. Writes specificity.json, shares.csv, type_comparison.csv, "
        "lape_overlap.csv, lape_neurons.csv, eta2.npy, anova_p.npy, activation_probability.npy, shares.png, "
        "eta2_hist.png to --out.")
    parser.add_argument("--detections", nargs="+", required=True, metavar="DIR", help="detection folders from `detect`")
    parser.add_argument("--langs", required=True, help="comma-separated languages to measure (must include every detection's)")
    parser.add_argument("--data", default="parallel",
                        help=f"sentences of each language: {DATA_HELP}; '{{lang}}' in it is replaced by the code "
                        "(e.g. mono/{lang}.txt). Default: the bundled parallel set, one side per language")
    parser.add_argument("--split", choices=("auto", "train", "test", "all"), default="auto",
                        help="auto (default): 'test' of bundled sets, all rows of files")
    parser.add_argument("--per-lang", type=positive_int, default=None, help="first N sentences of each language (default all)")
    parser.add_argument("--skip-invalid", action="store_true", help="skip malformed rows with a warning")
    parser.add_argument("--strict-pairs", action="store_true",
                        help="refuse an English sentence with two different translations (default: keep every row)")
    parser.add_argument("--dedupe", action="store_true", help="use each distinct sentence once (default: repeats count)")
    parser.add_argument("--top-k", type=positive_int, default=None, help="use only each detection's first K neurons")
    parser.add_argument("--thresholds", type=_fraction_list, default=THRESHOLDS,
                        help="η² thresholds, comma-separated (default 0.1,0.25)")
    parser.add_argument("--alpha", type=float, default=ALPHA, help="ANOVA p-value cut (default 0.05)")
    parser.add_argument("--lape-share", type=float, default=TOP_SHARE,
                        help="LAPE: lowest-entropy share of all neurons kept (default 0.01)")
    parser.add_argument("--lape-quantile", type=float, default=QUANTILE,
                        help="LAPE: activation-probability quantile a language must exceed (default 0.95)")
    parser.add_argument("--protocol", choices=tuple(PROTOCOLS), default="default",
                        help="which η² family label is added to the per-language one. default: Germanic (en,de,nl), "
                        "Romance (it,fr,es), East Asian (ja,ko,zh), each vs every other measured language; paper: the "
                        "paper's two groups, ja+ko vs nl+it+en, each vs the other group only (sentences of other "
                        "languages are left out of that label; a target in neither group gets none)")
    add_model_args(parser)
    add_model_check_arg(parser)
    parser.add_argument("--out", required=True, help="output folder")
    parser.set_defaults(func=run)
