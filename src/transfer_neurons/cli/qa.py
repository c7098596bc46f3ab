"""`transfer-neurons qa`: open QA (token F1, exact match) under deactivation (SPEC 6.8)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..analyses.qa import GENERATION_MODES, METRIC_TITLES, NEUTRAL_PROMPT, PROMPTS, answer_rows, plot_qa, qa_summary, run_qa
from ..data import QASet, load_qa
from ..detection import Detection
from ..outputs import save_figure, write_csv, write_json
from .common import add_condition_args, add_model_args, conditions_from_args, model_from_args, positive_int
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


def run(args: argparse.Namespace) -> int:
    det, conditions = conditions_from_args(args)
    lm = model_from_args(args)
    check_fits(det, lm, args.detection)
    out = Path(args.out)
    summary, answers, sets = [], [], {}
    for lang in languages(args, det.lang):
        qa = qa_set(args, lang)
        result = run_qa(lm, qa, conditions, args.mode, args.max_new_tokens, args.batch_size)
        rows = qa_summary(result, conditions, seed=args.seed)
        save_figure(out / f"qa_{lang}.png", plot_qa(result, rows, conditions, lm.name, neuron_label(det)))
        summary += rows
        answers += answer_rows(result, conditions)
        sets[lang] = {"data": qa.name, "questions": len(qa), "prompt": PROMPTS.get(lang, NEUTRAL_PROMPT)}
    write_csv(out / "qa_summary.csv", summary)
    write_csv(out / "qa_answers.csv", answers)
    write_json(out / "qa.json", {
        "model": lm.name, "neurons_from": args.detection, "neuron_type": det.neuron_type, "neuron_lang": det.lang,
        "mode": args.mode, "max_new_tokens": args.max_new_tokens, "seed": args.seed, "languages": sets,
        "conditions": describe_conditions(conditions),
        "scoring": "best token F1 / exact match over the gold answer and its aliases, language-aware normalisation "
                   "(analyses/answer_norm.py); greedy decoding, first line of the answer",
        "drop": "none − condition (positive: deactivation lowered the score)", "summary": summary,
    })
    print(summary_text(summary, METRIC_TITLES))
    print(f"\nwrote {out}/qa_summary.csv, qa_answers.csv, qa.json, " + ", ".join(f"qa_{lang}.png" for lang in sets))
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
    parser.add_argument("--out", required=True, help="output folder")


def register(subparsers) -> None:
    parser = subparsers.add_parser("qa", help="open QA (token F1 / exact match) under deactivation (SPEC 6.8)",
                                   description="Answer questions by greedy generation (left-padded batches, short "
                                   "per-language prompt, first line) under no, transfer-neuron and control "
                                   "deactivation; score token F1 and exact match against the answer and its aliases. "
                                   "Writes qa_summary.csv, qa_answers.csv, qa.json and qa_LANG.png.")
    add_question_args(parser, "qa", "questions: bundled 'qa' (default) or a path to MKQA's mkqa.jsonl.gz "
                      "or a qa.jsonl of the bundled format")
    parser.add_argument("--max-new-tokens", type=positive_int, default=12, help="answer length cap in tokens (default 12)")
    add_condition_args(parser)
    add_model_args(parser)
    parser.set_defaults(func=run)
