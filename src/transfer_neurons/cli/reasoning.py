"""`transfer-neurons reasoning`: multiple-choice accuracy by option log-likelihood under deactivation (method.md §6.8)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data import MCSet, load_mc
from ..interventions import applying
from ..runs.qa import QuestionInputs
from ..runs.reasoning import run_multiple_choice
from .common import (
    add_condition_args, add_model_args, conditions_from_args, intervention_from_args, model_from_args,
    write_and_print,
)
from .qa import add_question_args, check_chat_template, languages
from .similarity import check_fits


def mc_set(args: argparse.Namespace, lang: str) -> MCSet:
    """The items of one language from --data, honouring --limit."""
    mc = load_mc(args.data, lang)
    return MCSet(mc.name, mc.lang, mc.items[: args.limit]) if args.limit else mc


def run(args: argparse.Namespace) -> int:
    det, conditions = conditions_from_args(args)
    lm = model_from_args(args)
    check_fits(det, lm, args.detection)
    check_chat_template(args, lm)
    sets = [mc_set(args, lang) for lang in languages(args, det.lang)]
    inputs = QuestionInputs(lm, det, conditions, sets, args.mode, args.batch_size, args.seed, args.chat_template,
                            args.detection)
    with applying(intervention_from_args(args, reference=[item.question for mc in sets for item in mc.items])):
        return write_and_print(Path(args.out), lambda folder: run_multiple_choice(inputs, folder))


def register(subparsers) -> None:
    parser = subparsers.add_parser("reasoning", help="multiple-choice accuracy by option log-likelihood under "
                                   "deactivation (method.md §6.8)",
                                   description="Score each option's log-likelihood after the question and lettered "
                                   "options (MMLU-ProX style) under no, transfer-neuron and control deactivation; "
                                   "accuracy by total and per-byte log-likelihood and the right option's probability. "
                                   "--batch-size counts (question, option) rows. Writes reasoning_summary.csv, reasoning_items.csv, reasoning.json, reasoning_LANG.png.")
    add_question_args(parser, "mc", "items: bundled 'mc' (default), an mc.jsonl of the bundled format, or "
                      "hf:li-lab/MMLU-ProX (needs the `datasets` extra and network)")
    add_condition_args(parser)
    add_model_args(parser)
    parser.set_defaults(func=run)
