"""Reasoning under deactivation, for one or more languages, written to one folder.

Two protocols share the files and the summary rows:
- built-in (`run_multiple_choice`): the bundled multiple-choice items, 0-shot, each option
  scored by its log-likelihood (fast; no extra needed);
- paper (`run_lm_eval_reasoning`): the paper's MMLU-ProX 5-shot chain-of-thought generation
  through lm-eval, scored by exact match of the extracted answer letter, for every language
  whose task lm-eval can build here; any other language runs the built-in, and the record
  says which ran and why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..analyses.generation import prompt_texts
from ..analyses.lm_eval_bridge import UNBUILT, EvalOptions, buildable, score_task, task_name
from ..analyses.reasoning import (
    METRIC_TITLES, item_rows, lm_eval_item_rows, lm_eval_summary, mc_prompt, plot_lm_eval_reasoning, plot_reasoning,
    reasoning_summary, run_reasoning,
)
from ..data import MCSet
from ..interventions import active_intervention
from ..outputs import save_figure, write_csv, write_json
from .common import Summary, describe_conditions, effects_table
from .qa import QuestionInputs, neuron_label, summary_text

BUILT_IN, LM_EVAL = "built-in", "lm-eval"
DEFAULT_LM_EVAL_TASK = "mmlu_prox_lite_{lang}"
"""MMLU-ProX Lite: the same 14 subjects and 5-shot chain-of-thought prompts as MMLU-ProX, 658 questions per
language instead of 11,829, so every condition of a study fits in hours, not days, on one GPU."""
BUILT_IN_SCORING = ("log-likelihood of ' ' + option text after the prompt; acc: highest total, acc_norm: highest per "
                    "UTF-8 byte, p_correct: softmax over the options' totals at the right option; prompt positions "
                    "deactivated, option tokens never (analyses/reasoning.py)")


@dataclass
class PaperReasoning:
    """The paper's reasoning protocol: one lm-eval task per language, run through the bridge."""

    task: str | Mapping[str, str] = DEFAULT_LM_EVAL_TASK  # a name, a template with {lang}, or language -> name
    include_path: str | None = None  # a folder of extra task YAMLs
    limit: int | None = None  # questions per lm-eval task (each subject of a group); None: all
    include_defaults: bool = True  # index lm-eval's built-in tasks too


@dataclass
class LanguageRun:
    """One language's reasoning: summary rows, item rows, its record, figure and which protocol ran."""

    lang: str
    protocol: str  # BUILT_IN or LM_EVAL
    rows: list[dict]
    items: list[dict]
    record: dict
    figure: str
    claim_metric: str
    titles: dict[str, str] = field(default_factory=dict)


def _built_in(inputs: QuestionInputs, mc: MCSet, out: Path, why: str | None = None) -> LanguageRun:
    """Option log-likelihood accuracy (total and per byte) and p(right option) per condition in one language."""
    lm, conditions = inputs.lm, inputs.conditions
    result = run_reasoning(lm, mc, conditions, inputs.mode, inputs.batch_size, progress=False,
                           chat_template=inputs.chat_template)
    rows = reasoning_summary(result, conditions, seed=inputs.seed)
    figure = f"reasoning_{mc.lang}.png"
    save_figure(out / figure, plot_reasoning(result, rows, conditions, lm.name, neuron_label(inputs.det)))
    record = {"protocol": BUILT_IN, "data": mc.name, "items": len(mc), "chance": result.chance,
              "mode": inputs.mode, "scoring": BUILT_IN_SCORING,
              "example_prompt": prompt_texts(lm.tokenizer, [mc_prompt(mc.items[0], mc.lang)], inputs.chat_template)[0]}
    if why:
        record["why_built_in"] = why
    return LanguageRun(mc.lang, BUILT_IN, rows, item_rows(result, conditions), record, figure, "acc", METRIC_TITLES)


def _lm_eval(inputs: QuestionInputs, lang: str, task: str, manager, paper: PaperReasoning, out: Path) -> LanguageRun:
    """The lm-eval task in one language under each condition, scored per question from its logged samples."""
    lm, conditions = inputs.lm, inputs.conditions
    options = EvalOptions(batch_size=inputs.batch_size, limit=paper.limit, log_samples=True,
                          apply_chat_template=inputs.chat_template, output_path=out / "lm-eval" / lang)
    scores = score_task(lm, task, conditions, manager, options)
    rows = lm_eval_summary(scores, conditions, lang, seed=inputs.seed)
    figure = f"reasoning_{lang}.png"
    save_figure(out / figure, plot_lm_eval_reasoning(scores, rows, conditions, lm.name, lang, neuron_label(inputs.det)))
    record = {"protocol": LM_EVAL, "task": task, "include_path": paper.include_path, "limit": paper.limit,
              "items": len(scores.keys), "chance": None, "metric": scores.metric, "filter": scores.filter,
              "n_shot": scores.n_shot, "output_types": scores.output_types, "mode": "all",
              "deactivated": scores.positions, "lm_eval_rows": scores.rows,
              "lm_eval_output": f"lm-eval/{lang}/<condition>/ (results.json, samples_<task>.jsonl)",
              "scoring": f"lm-eval's {scores.metric} of each question after its filter {scores.filter!r}, read from "
                         "the logged samples and paired across conditions by (subtask, doc_id)"}
    title = f"{scores.metric} after filter {scores.filter} (lm-eval {task})"
    return LanguageRun(lang, LM_EVAL, rows, lm_eval_item_rows(scores, conditions, lang), record, figure,
                       scores.metric, {scores.metric: title})


def run_multiple_choice(inputs: QuestionInputs, out: Path) -> Summary:
    """The built-in protocol: option log-likelihood accuracy and p(right option) per condition and language."""
    return _write(inputs, out, [_built_in(inputs, mc, out) for mc in inputs.sets])


def run_lm_eval_reasoning(inputs: QuestionInputs, out: Path, paper: PaperReasoning | None = None) -> Summary:
    """The paper's protocol: per language the lm-eval task when it can be built here, else the built-in (and why)."""
    paper = paper or PaperReasoning()
    runs = []
    for mc in inputs.sets:
        task = task_name(paper.task, mc.lang)
        manager, why = buildable(task, paper.include_path, paper.include_defaults) if task else (
            None, f"no lm-eval task configured for {mc.lang}")
        runs.append(_lm_eval(inputs, mc.lang, task, manager, paper, out) if manager is not None
                    else _built_in(inputs, mc, out, why))
    return _write(inputs, out, runs)


def protocol_text(run: LanguageRun) -> str:
    """Which reasoning protocol ran for a language, and why the built-in ran when it did."""
    if run.protocol == LM_EVAL:
        shots = "/".join(map(str, sorted(set(run.record["n_shot"].values())))) or "?"
        return f"lm-eval {run.record['task']} ({shots}-shot, {run.claim_metric} after {run.record['filter']})"
    why = run.record.get("why_built_in")
    return "built-in multiple choice (option log-likelihood)" + (f", because {why}" if why else "")


def _write(inputs: QuestionInputs, out: Path, runs: list[LanguageRun]) -> Summary:
    """Summary rows, item rows and the record of every language in one folder; the run's Summary."""
    lm, det = inputs.lm, inputs.det
    summary = [row for run in runs for row in run.rows]
    write_csv(out / "reasoning_summary.csv", summary)
    item_files = []
    for protocol, name in ((BUILT_IN, "reasoning_items.csv"), (LM_EVAL, "reasoning_lm_eval_items.csv")):
        items = [row for run in runs if run.protocol == protocol for row in run.items]
        if items:
            write_csv(out / name, items)
            item_files.append(name)
    lines = [f"{run.lang}: {protocol_text(run)}" for run in runs]
    protocols = sorted({run.protocol for run in runs})
    modes = {run.record["mode"] for run in runs}  # deactivated positions; lm-eval runs always use `all`
    write_json(out / "reasoning.json", {
        "model": lm.name, "neurons_from": inputs.detection, "neuron_type": det.neuron_type, "neuron_lang": det.lang,
        "mode": modes.pop() if len(modes) == 1 else "per language", "intervention": active_intervention().spec,
        "chat_template": inputs.chat_template, "seed": inputs.seed,
        "protocols": lines, "languages": {run.lang: run.record for run in runs},
        "conditions": describe_conditions(inputs.conditions),
        "drop": "none − condition (positive: deactivation lowered the score)", "summary": summary,
    })
    claim_metrics = {run.claim_metric for run in runs}
    headline = [r for r in summary if r["metric"] in ("acc", "p_correct") or r["metric"] in claim_metrics]
    count = "/".join(str(run.record["items"]) for run in runs)
    chances = [run.record["chance"] for run in runs if run.record["chance"] is not None]
    chance = sum(chances) / len(chances) if chances else None
    chosen = protocols != [BUILT_IN] or any("why_built_in" in run.record for run in runs)  # the paper's protocol asked
    what = f"reasoning ({'; '.join(lines)})" if chosen else "multiple-choice reasoning"
    data = {"rows": summary, "items": sum(run.record["items"] for run in runs), "chance": chance,
            "protocols": {run.lang: run.protocol for run in runs}}
    if len(claim_metrics) == 1:
        data["claim_metric"] = next(iter(claim_metrics))
    if chosen:
        data["claim_source"] = "; ".join(lines) if len(runs) > 1 else protocol_text(runs[0])
    titles = {metric: title for run in runs for metric, title in run.titles.items()}
    unbuilt = [run.record["why_built_in"] for run in runs if str(run.record.get("why_built_in")).startswith(UNBUILT)]
    text = "\n".join(lines) + "\n\n" + summary_text(summary, titles) if chosen else summary_text(summary, titles)
    caption = "accuracy and p(right option)" if protocols == [BUILT_IN] else "accuracy"
    return Summary(
        title=f"{what} in {', '.join(run.lang for run in runs)} ({count} items"
              f"{'' if chance is None else f', chance {chance:.2f}'}), {det.neuron_type} neurons deactivated",
        type=det.neuron_type, lang=runs[0].lang if len(runs) == 1 else None, figures=[run.figure for run in runs],
        tables=[effects_table(headline, f"{caption}: drop = none − condition")],
        data=data, text=text, retry="; ".join(unbuilt) or None,
        files=["reasoning_summary.csv", *item_files, "reasoning.json", *(run.figure for run in runs),
               *(["lm-eval/"] if LM_EVAL in protocols else [])],
    )
