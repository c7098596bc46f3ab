"""Multiple-choice reasoning under deactivation, for one or more languages, written to one folder."""

from __future__ import annotations

from pathlib import Path

from ..analyses.generation import prompt_texts
from ..analyses.reasoning import METRIC_TITLES, item_rows, mc_prompt, plot_reasoning, reasoning_summary, run_reasoning
from ..interventions import active_intervention
from ..outputs import save_figure, write_csv, write_json
from .common import Summary, describe_conditions, effects_table
from .qa import QuestionInputs, neuron_label, summary_text


def run_multiple_choice(inputs: QuestionInputs, out: Path) -> Summary:
    """Option log-likelihood accuracy (total and per byte) and p(right option) per condition and language."""
    lm, det, conditions = inputs.lm, inputs.det, inputs.conditions
    summary, items, per_lang, figures = [], [], {}, []
    for mc in inputs.sets:
        result = run_reasoning(lm, mc, conditions, inputs.mode, inputs.batch_size, progress=False,
                               chat_template=inputs.chat_template)
        rows = reasoning_summary(result, conditions, seed=inputs.seed)
        save_figure(out / f"reasoning_{mc.lang}.png", plot_reasoning(result, rows, conditions, lm.name, neuron_label(det)))
        figures.append(f"reasoning_{mc.lang}.png")
        summary += rows
        items += item_rows(result, conditions)
        per_lang[mc.lang] = {"data": mc.name, "items": len(mc), "chance": result.chance, "example_prompt": prompt_texts(
            lm.tokenizer, [mc_prompt(mc.items[0], mc.lang)], inputs.chat_template)[0]}
    write_csv(out / "reasoning_summary.csv", summary)
    write_csv(out / "reasoning_items.csv", items)
    write_json(out / "reasoning.json", {
        "model": lm.name, "neurons_from": inputs.detection, "neuron_type": det.neuron_type, "neuron_lang": det.lang,
        "mode": inputs.mode, "intervention": active_intervention().spec, "chat_template": inputs.chat_template,
        "seed": inputs.seed, "languages": per_lang, "conditions": describe_conditions(conditions),
        "scoring": "log-likelihood of ' ' + option text after the prompt; acc: highest total, acc_norm: highest per "
                   "UTF-8 byte, p_correct: softmax over the options' totals at the right option; prompt positions "
                   "deactivated, option tokens never (analyses/reasoning.py)",
        "drop": "none − condition (positive: deactivation lowered the score)", "summary": summary,
    })
    chance = sum(v["chance"] for v in per_lang.values()) / len(per_lang)
    count = "/".join(str(v["items"]) for v in per_lang.values())
    return Summary(
        title=f"multiple-choice reasoning in {', '.join(per_lang)} ({count} items, chance {chance:.2f}), "
              f"{det.neuron_type} neurons deactivated",
        type=det.neuron_type, lang=inputs.sets[0].lang if len(inputs.sets) == 1 else None, figures=figures,
        tables=[effects_table([r for r in summary if r["metric"] in ("acc", "p_correct")],
                              "accuracy and p(right option): drop = none − condition")],
        data={"rows": summary, "items": sum(v["items"] for v in per_lang.values()), "chance": chance},
        text=summary_text(summary, METRIC_TITLES),
        files=["reasoning_summary.csv", "reasoning_items.csv", "reasoning.json", *figures],
    )
