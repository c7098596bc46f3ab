"""`transfer-neurons qa`: open QA (token F1, exact match) under deactivation (method.md §6.8)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..analyses.qa import (
    GENERATION_MODES, PROTOCOLS, answer_rows, metric_titles, plot_f1_scatter, plot_qa, qa_protocol, qa_summary, run_qa,
    scatter_rows, subset_counts,
)
from ..data import QASet, load_qa
from ..detection import Detection
from ..errors import TransferNeuronsError
from ..interventions import applying
from ..outputs import save_figure, write_csv, write_json
from .common import (
    add_condition_args, add_model_args, conditions_from_args, intervention_from_args, model_from_args, positive_int,
)
from .similarity import check_fits, describe_conditions


def _fmt(value, spec: str = "+.3f") -> str:
    """A number for the terminal table, '-' for None."""
    return "-" if value is None else format(value, spec)


def summary_text(rows: Sequence[Mapping], titles: Mapping[str, str]) -> str:
    """effects rows as one aligned text table per (language, metric), for the terminal."""
    header = ("condition", "seeds", "mean", "95% CI", "drop", "95% CI", "p vs none", "transfer−control", "95% CI", "seed sd")
    blocks = []
    for lang, metric in dict.fromkeys((r["lang"], r["metric"]) for r in rows):
        table = [header]
        for r in (r for r in rows if r["lang"] == lang and r["metric"] == metric):
            table.append((
                r["condition"], _fmt(r["seeds"], "d"), _fmt(r["mean"], ".3f"),
                f"[{_fmt(r['mean_low'], '.3f')}, {_fmt(r['mean_high'], '.3f')}]", _fmt(r["drop"]),
                f"[{_fmt(r['drop_low'])}, {_fmt(r['drop_high'])}]", _fmt(r["p_vs_none"], ".2g"),
                _fmt(r["transfer_minus_control"]),
                "-" if r["tmc_low"] is None else f"[{_fmt(r['tmc_low'])}, {_fmt(r['tmc_high'])}]",
                _fmt(r["seed_drop_std"], ".3f"),
            ))
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        lines = [f"{lang}: {titles[metric]} ({r['items']} items; drop = none − condition)"]
        lines += ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
                  for row in table]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def neuron_label(det: Detection) -> str:
    """How figure titles name the deactivated set, e.g. "79 type1 ja neurons"."""
    return f"{len(det.neurons)} {det.neuron_type} {det.lang} neurons"


def languages(args: argparse.Namespace, default: str) -> list[str]:
    """--langs as a list, or the detection's language."""
    return [code.strip() for code in (args.langs or default).split(",") if code.strip()]


def qa_set(args: argparse.Namespace, lang: str) -> QASet:
    """The questions of one language from --data, honouring --limit."""
    qa = load_qa(args.data, lang)
    return QASet(qa.name, qa.lang, qa.items[: args.limit]) if args.limit else qa


def check_chat_template(args: argparse.Namespace, lm) -> None:
    """Refuse --chat-template for a tokenizer without a chat template, naming the flag."""
    if args.chat_template and not getattr(lm.tokenizer, "chat_template", None):
        raise TransferNeuronsError(f"--chat-template: the tokenizer of {lm.name} has no chat template (base models "
                                   "usually have none); drop --chat-template or pass an instruction-tuned --model")


def run(args: argparse.Namespace) -> int:
    det, conditions = conditions_from_args(args)
    protocol = qa_protocol(args.protocol)
    max_new_tokens = args.max_new_tokens or protocol.max_new_tokens
    lm = model_from_args(args)
    check_fits(det, lm, args.detection)
    check_chat_template(args, lm)
    out = Path(args.out)
    summary, answers, scatter, sets = [], [], [], {}
    for lang in languages(args, det.lang):
        qa = qa_set(args, lang)
        with applying(intervention_from_args(args, reference=[item.question for item in qa.items])):
            result = run_qa(lm, qa, conditions, args.mode, max_new_tokens, args.batch_size, protocol=protocol,
                            chat_template=args.chat_template)
        rows = qa_summary(result, conditions, seed=args.seed)
        save_figure(out / f"qa_{lang}.png", plot_qa(result, rows, conditions, lm.name, neuron_label(det)))
        save_figure(out / f"qa_scatter_{lang}.png", plot_f1_scatter(result, conditions, lm.name, neuron_label(det)))
        summary += rows
        answers += answer_rows(result, conditions)
        scatter += scatter_rows(result, conditions)
        sets[lang] = {"data": qa.name, "questions": len(qa), "prompt": protocol.template(lang),
                      "example_prompt": result.prompts[0], "f1_subset_questions": subset_counts(result)}
    write_csv(out / "qa_summary.csv", summary)
    write_csv(out / "qa_answers.csv", answers)
    write_csv(out / "qa_scatter.csv", scatter)
    answer_rule = ("the first line of the answer" if protocol.first_line
                   else "all generated text (stopped only by end of sequence)")
    write_json(out / "qa.json", {
        "model": lm.name, "neurons_from": args.detection, "neuron_type": det.neuron_type, "neuron_lang": det.lang,
        "protocol": protocol.name, "mode": args.mode, "intervention": args.intervention,
        "max_new_tokens": max_new_tokens, "chat_template": args.chat_template, "f1_subsets": list(protocol.f1_subsets),
        "seed": args.seed, "languages": sets, "conditions": describe_conditions(conditions),
        "scoring": "best token F1 / exact match over the gold answer and its aliases, language-aware normalisation "
                   f"(analyses/answer_norm.py); greedy decoding, {answer_rule}",
        "drop": "none − condition (positive: deactivation lowered the score)", "summary": summary,
    })
    print(summary_text(summary, metric_titles(protocol.f1_subsets)))
    figures = [f"qa_{lang}.png, qa_scatter_{lang}.png" for lang in sets]
    print(f"\nwrote {out}/qa_summary.csv, qa_answers.csv, qa_scatter.csv, qa.json, " + ", ".join(figures))
    return 0


def add_question_args(parser: argparse.ArgumentParser, default_data: str, data_help: str) -> None:
    """--data, --langs, --limit, --mode, --seed, --out: shared by `qa` and `reasoning`."""
    parser.add_argument("--data", default=default_data, help=data_help)
    parser.add_argument("--langs", help="comma-separated language codes (default: the detection's language)")
    parser.add_argument("--limit", type=positive_int, default=None, help="use only the first N questions per language")
    parser.add_argument("--mode", choices=GENERATION_MODES, default="all",
                        help="positions deactivated: all = every prompt token (the paper's QA mode, default), "
                        "prompt_last = the prompt's last token only; answer tokens are never deactivated")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap intervals (default 0)")
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
