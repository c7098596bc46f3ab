"""`transfer-neurons reasoning`: reasoning accuracy under deactivation, built-in or the paper's lm-eval protocol (method.md §6.8)."""

from __future__ import annotations

import argparse

from ..analyses.lm_eval_bridge import check_task_spec
from ..data import MCSet, load_mc
from ..interventions import applying
from ..protocols import NAMES as PROTOCOL_NAMES
from ..runs.qa import QuestionInputs
from ..runs.reasoning import DEFAULT_LM_EVAL_TASK, PaperReasoning, run_lm_eval_reasoning, run_multiple_choice
from .common import (
    add_condition_args, add_model_args, conditions_from_args, intervention_from_args, model_from_args,
    write_and_print,
)
from .qa import add_question_args, check_chat_template, languages
from .similarity import check_fits


def mc_set(args: argparse.Namespace, lang: str) -> MCSet:
    """The items of one language from --data, honouring --limit and --skip-invalid."""
    mc = load_mc(args.data, lang, skip_invalid=args.skip_invalid)
    return MCSet(mc.name, mc.lang, mc.items[: args.limit]) if args.limit else mc


def analysis(args: argparse.Namespace):
    """The run function of the chosen --protocol: built-in multiple choice, or the paper's lm-eval task per language."""
    if args.protocol != "paper":
        return run_multiple_choice
    paper = PaperReasoning(check_task_spec(args.lm_eval_task, "--lm-eval-task"), args.include_path, args.limit)
    return lambda inputs, folder: run_lm_eval_reasoning(inputs, folder, paper)


def run(args: argparse.Namespace) -> int:
    chosen = analysis(args)
    det, conditions = conditions_from_args(args)
    lm = model_from_args(args)
    check_fits(det, lm, args.detection)
    check_chat_template(args, lm)
    sets = [mc_set(args, lang) for lang in languages(args, det.lang)]
    inputs = QuestionInputs(lm, det, conditions, sets, args.mode, args.batch_size, args.seed, args.chat_template,
                            args.detection)
    with applying(intervention_from_args(args, reference=[item.question for mc in sets for item in mc.items])):
        return write_and_print(args, lambda folder: chosen(inputs, folder))


def register(subparsers) -> None:
    parser = subparsers.add_parser("reasoning", help="reasoning accuracy under deactivation: multiple choice by option "
                                   "log-likelihood, or the paper's MMLU-ProX generation through lm-eval (method.md §6.8)",
                                   description="Score each option's log-likelihood after the question and lettered "
                                   "options (MMLU-ProX style) under no, transfer-neuron and control deactivation; "
                                   "accuracy by total and per-byte log-likelihood and the right option's probability. "
                                   "--batch-size counts (question, option) rows. With --protocol paper, lm-eval generates each answer after 5 "
                                   "worked examples instead and its filter's exact match is scored per question. Writes "
                                   "reasoning_summary.csv, reasoning_items.csv (or reasoning_lm_eval_items.csv), reasoning.json, "
                                   "reasoning_LANG.png, and lm-eval's own output in lm-eval/LANG/CONDITION/.")
    add_question_args(parser, "mc", "items: bundled 'mc' (default), an mc.jsonl of the bundled format, or "
                      "hf:li-lab/MMLU-ProX (needs the `datasets` extra and network)")
    parser.add_argument("--protocol", choices=PROTOCOL_NAMES, default="default",
                        help="default: the items of --data, 0-shot, options scored by log-likelihood; paper: the "
                        "paper's 5-shot chain-of-thought generation of --lm-eval-task through lm-eval (extra "
                        "`lm-eval`), prompt tokens deactivated, exact match of the extracted answer; a language "
                        "whose task lm-eval cannot build here (not installed, unknown, data offline) runs the "
                        "default and reasoning.json says why. --limit then caps the questions per lm-eval task "
                        "(per subject of a group)")
    parser.add_argument("--lm-eval-task", default=DEFAULT_LM_EVAL_TASK,
                        help="lm-eval task under --protocol paper, {lang} filled in per language (default "
                        f"{DEFAULT_LM_EVAL_TASK}: 658 questions per language; mmlu_prox_{{lang}} is the full 11,829)")
    parser.add_argument("--include-path", help="a folder of extra lm-eval task YAMLs (lm-eval's include_path)")
    add_condition_args(parser)
    add_model_args(parser)
    parser.set_defaults(func=run)
