"""Open QA under deactivation, for one or more languages, written to one folder."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..analyses.qa import (
    answer_rows, metric_titles, plot_f1_scatter, plot_qa, qa_protocol, qa_summary, run_qa, scatter_rows, subset_counts,
)
from ..conditions import Condition
from ..detection import Detection
from ..interventions import active_intervention
from ..models.loaded import LoadedModel
from ..outputs import save_figure, write_csv, write_json
from .common import Summary, _fmt, describe_conditions, effects_table


@dataclass
class QuestionInputs:
    """Question sets per language, the detection and its conditions, and how prompts are built and answered."""

    lm: LoadedModel
    det: Detection
    conditions: list[Condition]
    sets: list  # QASet (qa) or MCSet (reasoning), one per language
    mode: str = "all"  # deactivated positions: all prompt tokens or the last one (answers never)
    batch_size: int | str = 16
    seed: int = 0
    chat_template: bool = False
    detection: str | None = None  # where the detection came from, for the record


def neuron_label(det: Detection) -> str:
    """How figure titles name the deactivated set, e.g. "79 type1 ja neurons"."""
    return f"{len(det.neurons)} {det.neuron_type} {det.lang} neurons"


def summary_text(rows: Sequence[Mapping], titles: Mapping[str, str]) -> str:
    """Effects rows with the mean's interval, one aligned table per (language, metric), for the terminal."""
    header = ("condition", "seeds", "mean", "95% CI", "drop", "95% CI", "p vs none", "transfer−control", "95% CI", "seed sd")
    blocks = []
    for lang, metric in dict.fromkeys((r["lang"], r["metric"]) for r in rows):
        table = [header]
        for r in (r for r in rows if r["lang"] == lang and r["metric"] == metric):
            table.append((
                r["condition"], _fmt(r["seeds"], "d"), _fmt(r["mean"], ".3f"),
                f"[{_fmt(r['mean_low'], '.3f')}, {_fmt(r['mean_high'], '.3f')}]", _fmt(r["drop"], "+.3f"),
                f"[{_fmt(r['drop_low'], '+.3f')}, {_fmt(r['drop_high'], '+.3f')}]", _fmt(r["p_vs_none"], ".2g"),
                _fmt(r["transfer_minus_control"], "+.3f"),
                "-" if r["tmc_low"] is None else f"[{_fmt(r['tmc_low'], '+.3f')}, {_fmt(r['tmc_high'], '+.3f')}]",
                _fmt(r["seed_drop_std"], ".3f"),
            ))
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        lines = [f"{lang}: {titles[metric]} ({r['items']} items; drop = none − condition)"]
        lines += ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
                  for row in table]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def run_open_qa(inputs: QuestionInputs, out: Path, protocol: str = "default", max_new_tokens: int | None = None) -> Summary:
    """Greedy answers per condition and language; token F1 and exact match (and the paper's F1 subsets)."""
    lm, det, conditions = inputs.lm, inputs.det, inputs.conditions
    chosen = qa_protocol(protocol)
    tokens = max_new_tokens or chosen.max_new_tokens
    summary, answers, scatter, per_lang, figures = [], [], [], {}, []
    for qa in inputs.sets:
        result = run_qa(lm, qa, conditions, inputs.mode, tokens, inputs.batch_size, progress=False, protocol=chosen,
                        chat_template=inputs.chat_template)
        rows = qa_summary(result, conditions, seed=inputs.seed)
        for name, figure in ((f"qa_{qa.lang}.png", plot_qa(result, rows, conditions, lm.name, neuron_label(det))),
                             (f"qa_scatter_{qa.lang}.png", plot_f1_scatter(result, conditions, lm.name, neuron_label(det)))):
            save_figure(out / name, figure)
            figures.append(name)
        summary += rows
        answers += answer_rows(result, conditions)
        scatter += scatter_rows(result, conditions)
        per_lang[qa.lang] = {"data": qa.name, "questions": len(qa), "prompt": chosen.template(qa.lang),
                             "example_prompt": result.prompts[0], "f1_subset_questions": subset_counts(result)}
    write_csv(out / "qa_summary.csv", summary)
    write_csv(out / "qa_answers.csv", answers)
    write_csv(out / "qa_scatter.csv", scatter)
    rule = "the first line of the answer" if chosen.first_line else "all generated text (stopped only by end of sequence)"
    write_json(out / "qa.json", {
        "model": lm.name, "neurons_from": inputs.detection, "neuron_type": det.neuron_type, "neuron_lang": det.lang,
        "protocol": chosen.name, "mode": inputs.mode, "intervention": active_intervention().spec,
        "max_new_tokens": tokens, "chat_template": inputs.chat_template, "f1_subsets": list(chosen.f1_subsets),
        "seed": inputs.seed, "languages": per_lang, "conditions": describe_conditions(conditions),
        "scoring": "best token F1 / exact match over the gold answer and its aliases, language-aware normalisation "
                   f"(analyses/answer_norm.py); greedy decoding, {rule}",
        "drop": "none − condition (positive: deactivation lowered the score)", "summary": summary,
    })
    langs = ", ".join(per_lang)
    counts = "/".join(str(v["questions"]) for v in per_lang.values())
    return Summary(
        title=f"open QA in {langs} ({counts} questions, protocol {chosen.name}), {det.neuron_type} neurons deactivated "
              f"(mode {inputs.mode})",
        type=det.neuron_type, lang=inputs.sets[0].lang if len(inputs.sets) == 1 else None, figures=figures,
        tables=[effects_table(summary, "per-question token F1 and exact match: drop = none − condition")],
        data={"rows": summary, "claim_metric": "f1", "questions": sum(v["questions"] for v in per_lang.values()),
              "protocol": chosen.name, "max_new_tokens": tokens, "f1_subset_questions":
              {lang: v["f1_subset_questions"] for lang, v in per_lang.items()}},
        text=summary_text(summary, metric_titles(chosen.f1_subsets)),
        files=["qa_summary.csv", "qa_answers.csv", "qa_scatter.csv", "qa.json", *figures],
    )

