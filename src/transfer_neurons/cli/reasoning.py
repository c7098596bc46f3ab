"""`transfer-neurons reasoning`: multiple-choice accuracy by option log-likelihood under deactivation (method.md §6.8)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..analyses.generation import prompt_texts
from ..analyses.reasoning import METRIC_TITLES, item_rows, mc_prompt, plot_reasoning, reasoning_summary, run_reasoning
from ..data import MCSet, load_mc
from ..interventions import applying
from ..outputs import save_figure, write_csv, write_json
from .common import add_condition_args, add_model_args, conditions_from_args, intervention_from_args, model_from_args
from .qa import add_question_args, check_chat_template, languages, neuron_label, summary_text
from .similarity import check_fits, describe_conditions


def mc_set(args: argparse.Namespace, lang: str) -> MCSet:
    """The items of one language from --data, honouring --limit."""
    mc = load_mc(args.data, lang)
    return MCSet(mc.name, mc.lang, mc.items[: args.limit]) if args.limit else mc


def run(args: argparse.Namespace) -> int:
    det, conditions = conditions_from_args(args)
    lm = model_from_args(args)
    check_fits(det, lm, args.detection)
    check_chat_template(args, lm)
    out = Path(args.out)
    summary, items, sets = [], [], {}
    for lang in languages(args, det.lang):
        mc = mc_set(args, lang)
        with applying(intervention_from_args(args, reference=[item.question for item in mc.items])):
            result = run_reasoning(lm, mc, conditions, args.mode, args.batch_size, chat_template=args.chat_template)
        rows = reasoning_summary(result, conditions, seed=args.seed)
        save_figure(out / f"reasoning_{lang}.png", plot_reasoning(result, rows, conditions, lm.name, neuron_label(det)))
        summary += rows
        items += item_rows(result, conditions)
        sets[lang] = {"data": mc.name, "items": len(mc), "chance": result.chance,
                      "example_prompt": prompt_texts(lm.tokenizer, [mc_prompt(mc.items[0], lang)], args.chat_template)[0]}
    write_csv(out / "reasoning_summary.csv", summary)
    write_csv(out / "reasoning_items.csv", items)
    write_json(out / "reasoning.json", {
        "model": lm.name, "neurons_from": args.detection, "neuron_type": det.neuron_type, "neuron_lang": det.lang,
        "mode": args.mode, "intervention": args.intervention, "chat_template": args.chat_template, "seed": args.seed, "languages": sets, "conditions": describe_conditions(conditions),
        "scoring": "log-likelihood of ' ' + option text after the prompt; acc: highest total, acc_norm: highest per "
                   "UTF-8 byte, p_correct: softmax over the options' totals at the right option; prompt positions "
                   "deactivated, option tokens never (analyses/reasoning.py)",
        "drop": "none − condition (positive: deactivation lowered the score)", "summary": summary,
    })
    print(summary_text(summary, METRIC_TITLES))
    print(f"\nwrote {out}/reasoning_summary.csv, reasoning_items.csv, reasoning.json, "
          + ", ".join(f"reasoning_{lang}.png" for lang in sets))
    return 0


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
