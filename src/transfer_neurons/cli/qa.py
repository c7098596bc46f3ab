"""`transfer-neurons qa`: open QA (token F1, exact match) under deactivation (method.md §6.8)."""

from __future__ import annotations

import argparse

from ..analyses.qa import GENERATION_MODES, PROTOCOLS
from ..data import QASet, load_qa
from ..errors import TransferNeuronsError
from ..interventions import applying
from ..runs.qa import QuestionInputs, run_open_qa
from .common import (
    add_condition_args, add_model_args, codes, conditions_from_args, intervention_from_args, model_from_args,
    positive_int, seed_arg, write_and_print,
)
from .similarity import check_fits


def languages(args: argparse.Namespace, default: str) -> list[str]:
    """--langs as a list, or the detection's language."""
    return codes(args.langs or default)


def qa_set(args: argparse.Namespace, lang: str) -> QASet:
    """The questions of one language from --data, honouring --limit and --skip-invalid."""
    qa = load_qa(args.data, lang, skip_invalid=args.skip_invalid)
    return QASet(qa.name, qa.lang, qa.items[: args.limit]) if args.limit else qa


def check_chat_template(args: argparse.Namespace, lm) -> None:
    """Refuse --chat-template for a tokenizer without a chat template, naming the flag."""
    if args.chat_template and not getattr(lm.tokenizer, "chat_template", None):
        raise TransferNeuronsError(f"--chat-template: the tokenizer of {lm.name} has no chat template (base models "
                                   "usually have none); drop --chat-template or pass an instruction-tuned --model")


def run(args: argparse.Namespace) -> int:
    det, conditions = conditions_from_args(args)
    lm = model_from_args(args)
    check_fits(det, lm, args.detection)
    check_chat_template(args, lm)
    sets = [qa_set(args, lang) for lang in languages(args, det.lang)]
    inputs = QuestionInputs(lm, det, conditions, sets, args.mode, args.batch_size, args.seed, args.chat_template,
                            args.detection)
    with applying(intervention_from_args(args, reference=[item.question for qa in sets for item in qa.items])):
        return write_and_print(args, lambda folder: run_open_qa(inputs, folder, args.protocol,
                                                                          args.max_new_tokens))


def add_question_args(parser: argparse.ArgumentParser, default_data: str, data_help: str) -> None:
    """--data, --langs, --limit, --skip-invalid, --mode, --seed, --out: shared by `qa` and `reasoning`."""
    parser.add_argument("--data", default=default_data, help=data_help)
    parser.add_argument("--skip-invalid", action="store_true",
                        help="skip malformed questions with one warning counting them instead of failing")
    parser.add_argument("--langs", help="comma-separated language codes (default: the detection's language)")
    parser.add_argument("--limit", type=positive_int, default=None, help="use only the first N questions per language")
    parser.add_argument("--mode", choices=GENERATION_MODES, default="all",
                        help="positions deactivated: all = every prompt token (the paper's QA mode, default), "
                        "prompt_last = the prompt's last token only; answer tokens are never deactivated")
    parser.add_argument("--seed", type=seed_arg, default=0, help="seed of the bootstrap intervals (default 0)")
    parser.add_argument("--chat-template", action="store_true",
                        help="wrap each prompt as the user turn of the tokenizer's chat template, followed by the "
                        "assistant's turn opening (instruction-tuned models)")
    parser.add_argument("--out", required=True, help="output folder")


def register(subparsers) -> None:
    parser = subparsers.add_parser("qa", help="open QA (token F1 / exact match) under deactivation (method.md §6.8)",
                                   description="Answer questions by greedy generation (left-padded batches, each "
                                   "answer stopped at its own end) under no, transfer-neuron and control "
                                   "deactivation; score token F1 and exact match against the answer and its aliases. "
                                   "Writes qa_summary.csv, qa_answers.csv, qa_scatter.csv (per-question F1 without "
                                   "vs with deactivation), qa.json, qa_LANG.png and qa_scatter_LANG.png.")
    add_question_args(parser, "qa", "questions: bundled 'qa' (default) or a path to MKQA's mkqa.jsonl.gz "
                      "or a qa.jsonl of the bundled format")
    parser.add_argument("--protocol", choices=tuple(PROTOCOLS), default="default",
                        help="default: short instruction prompt in the question's language, first line of the "
                        "answer, 12 tokens; paper: the paper's MKQA protocol, question + answer cue ('答え:'), all "
                        "generated text, 10 tokens, F1 also on the questions with F1 >= 0.8 and >= 0.5 without "
                        "deactivation")
    parser.add_argument("--max-new-tokens", type=positive_int, default=None,
                        help="answer length cap in tokens (default: 12, or 10 under --protocol paper; the paper used 5 or 10)")
    add_condition_args(parser)
    add_model_args(parser)
    parser.set_defaults(func=run)
