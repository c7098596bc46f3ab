"""Open QA under deactivation (method.md §6.8): greedy answers, token F1 and exact match per condition.

Two protocols (`PROTOCOLS`) fix everything that differs between our default and the paper's QA:
- `default`: a short instruction prompt in the question's language (PROMPTS: "Answer briefly.
  Question: ... Answer:" translated; other languages get the neutral "Q: ... A:"), at most 12 new
  tokens, the answer is the first non-empty line (a row stops at the first newline after some text);
- `paper` (Tezuka & Inoue's MKQA runs): the question, a "?" if it has no question mark, and the
  language's answer cue ("答え:", data/questions.ANSWER_CUES) followed by a space; 10 new tokens
  (the paper used 5 or 10); the answer is all generated text, stopped only by end of sequence; F1 is
  also reported on the questions whose F1 without deactivation is at least 0.8 and 0.5.
Either protocol can wrap the prompt in the tokenizer's chat template (`chat_template`).

Answers come from generation.greedy_generate: the questions of a condition in left-padded batches,
each row stopped at its own end. Deactivation wraps the generation (interventions.deactivated) in
mode `all` (every real prompt token, not generated ones: the paper's "prompt" mode) or
`prompt_last` (the prompt's last token only). Scores are answer_norm's language-aware token F1 and
exact match, the best over the gold answer and its aliases; effects come from effects.summarise with
one "layer" named "all". The scatter (`scatter_rows`, `plot_f1_scatter`) puts each question's F1
without deactivation against its F1 under each condition.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
from matplotlib.figure import Figure

from ..conditions import Condition, condition_groups
from ..data import QAItem, QASet
from ..data.questions import answer_cue
from ..errors import TransferNeuronsError
from ..protocols import choose
from ..interventions import Intervention, deactivated
from ..models.loaded import LoadedModel
from .answer_norm import best_exact_match, best_f1
from .effects import pooled, summarise
from .generation import greedy_generate, prompt_texts, prompt_token_ids
from .similarity import COLOURS

GENERATION_MODES = ("all", "prompt_last")
METRICS = ("f1", "em")
METRIC_TITLES = {"f1": "token F1", "em": "exact match"}
ALL_LAYERS = "all"

PROMPTS: dict[str, str] = {
    "en": "Answer briefly.\nQuestion: {question}\nAnswer:",
    "ja": "簡潔に答えてください。\n質問：{question}\n答え：",
    "ko": "간단히 답하세요.\n질문: {question}\n답:",
    "zh": "请简短回答。\n问题：{question}\n答案：",
    "nl": "Antwoord kort.\nVraag: {question}\nAntwoord:",
    "it": "Rispondi brevemente.\nDomanda: {question}\nRisposta:",
    "de": "Antworte kurz.\nFrage: {question}\nAntwort:",
    "fr": "Réponds brièvement.\nQuestion : {question}\nRéponse :",
    "es": "Responde brevemente.\nPregunta: {question}\nRespuesta:",
}
"""Default protocol's per-language QA prompt: an instruction, the question, and the word "Answer" as the cue."""

NEUTRAL_PROMPT = "Q: {question}\nA:"
"""Default protocol's prompt for languages without a translated template."""

QUESTION_MARKS = ("?", "？", "؟")
"""Endings that already mark a question (ASCII, full-width, Arabic)."""


@dataclass(frozen=True)
class QAProtocol:
    """Everything a QA protocol fixes: prompt form, answer length and end, and the F1 subsets reported."""

    name: str
    max_new_tokens: int  # default answer length cap in tokens
    cue_prompt: bool  # True: question + answer cue (paper); False: the instruction template (PROMPTS)
    first_line: bool  # True: a row stops at a newline after text and the answer is its first line
    f1_subsets: tuple[float, ...] = ()  # also report F1 on questions whose F1 without deactivation >= each

    def prompt(self, question: str, lang: str) -> str:
        """The question in this protocol's prompt for its language."""
        if self.cue_prompt:
            mark = "" if question.rstrip().endswith(QUESTION_MARKS) else "?"
            return f"{question}{mark} {answer_cue(lang)} "
        return PROMPTS.get(lang, NEUTRAL_PROMPT).format(question=question)

    def template(self, lang: str) -> str:
        """The prompt with a {question} placeholder, for the record."""
        return f"{{question}}[?] {answer_cue(lang)} " if self.cue_prompt else PROMPTS.get(lang, NEUTRAL_PROMPT)


PROTOCOLS: dict[str, QAProtocol] = {
    "default": QAProtocol("default", max_new_tokens=12, cue_prompt=False, first_line=True),
    "paper": QAProtocol("paper", max_new_tokens=10, cue_prompt=True, first_line=False, f1_subsets=(0.8, 0.5)),
}


def qa_protocol(name: str | QAProtocol) -> QAProtocol:
    """A protocol by name (`default` or `paper`)."""
    return choose(PROTOCOLS, name, "QA")


def qa_prompt(question: str, lang: str, protocol: str | QAProtocol = "default") -> str:
    """The question in the protocol's prompt for its language."""
    return qa_protocol(protocol).prompt(question, lang)


def line_ended(text: str) -> bool:
    """The default answer's end: a newline after some non-space text."""
    return "\n" in text.lstrip()


def first_line(text: str) -> str:
    """The first non-empty line of generated text, stripped: the default protocol's answer."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def generate_answers(
    lm: LoadedModel,
    prompts: Sequence[str],
    neurons: np.ndarray | None = None,
    mode: str = "all",
    max_new_tokens: int = 12,
    batch_size: int = 8,
    progress: str | None = "generate",
    *,
    first_line_only: bool = True,
    chat_template: bool = False,
    intervention: Intervention | None = None,
) -> list[str]:
    """Greedy answers in input order: the first line of up to max_new_tokens tokens (or all of them)."""
    if mode not in GENERATION_MODES:
        raise TransferNeuronsError(f"QA deactivation mode must be one of {GENERATION_MODES}, got {mode!r}")
    if not prompts:
        raise TransferNeuronsError("no questions to answer")
    tokenizer = lm.tokenizer
    ids = prompt_token_ids(tokenizer, prompt_texts(tokenizer, prompts, chat_template), chat_template)

    def ended(tokens: list[int]) -> bool:
        return first_line_only and line_ended(tokenizer.decode(tokens, skip_special_tokens=True))

    context = deactivated(lm, neurons, mode, intervention) if neurons is not None else nullcontext()
    with context:
        generated = greedy_generate(lm, ids, max_new_tokens, ended, batch_size, progress=progress)
    texts = [tokenizer.decode(tokens, skip_special_tokens=True) for tokens in generated]
    return [first_line(text) if first_line_only else text.strip() for text in texts]


def score_answers(answers: Sequence[str], items: Sequence[QAItem], lang: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-item best token F1 and exact match over each item's answers: ([item], [item])."""
    f1 = np.array([best_f1(a, item.answers, lang) for a, item in zip(answers, items, strict=True)])
    em = np.array([best_exact_match(a, item.answers, lang) for a, item in zip(answers, items, strict=True)])
    return f1, em


@dataclass
class QAResult:
    """Generated answers and their scores under each condition, for one language."""

    lang: str
    mode: str
    items: tuple[QAItem, ...]
    prompts: list[str]  # the text the model read (chat template applied when asked)
    answers: dict[str, list[str]]  # condition label -> answer per item
    f1: dict[str, np.ndarray]  # condition label -> [item]
    em: dict[str, np.ndarray]  # condition label -> [item]
    protocol: str = "default"
    max_new_tokens: int = 12
    chat_template: bool = False
    f1_subsets: tuple[float, ...] = field(default=())


def run_qa(
    lm: LoadedModel,
    qa: QASet,
    conditions: Sequence[Condition],
    mode: str = "all",
    max_new_tokens: int | None = None,
    batch_size: int = 8,
    progress: bool = True,
    *,
    protocol: str | QAProtocol = "default",
    chat_template: bool = False,
    intervention: Intervention | None = None,
) -> QAResult:
    """Answer every question under every condition (batched per condition) and score the answers.

    max_new_tokens None: the protocol's (default 12, paper 10).
    """
    chosen = qa_protocol(protocol)
    tokens = chosen.max_new_tokens if max_new_tokens is None else max_new_tokens
    prompts = [chosen.prompt(item.question, qa.lang) for item in qa.items]
    result = QAResult(qa.lang, mode, qa.items, prompt_texts(lm.tokenizer, prompts, chat_template), {}, {}, {},
                      chosen.name, tokens, chat_template, chosen.f1_subsets)
    for condition in conditions:
        desc = f"QA {qa.lang} {condition.label}" if progress else None
        answers = generate_answers(lm, prompts, condition.neurons, mode, tokens, batch_size, desc,
                                   first_line_only=chosen.first_line, chat_template=chat_template,
                                   intervention=intervention)
        result.answers[condition.label] = answers
        result.f1[condition.label], result.em[condition.label] = score_answers(answers, qa.items, qa.lang)
    return result


def subset_metric(threshold: float) -> str:
    """Name of the F1 metric on the questions whose F1 without deactivation is >= threshold."""
    return f"f1_none_ge_{threshold:g}"


def metric_titles(thresholds: Sequence[float] = ()) -> dict[str, str]:
    """Titles of the metrics, the F1 subsets' included."""
    return {**METRIC_TITLES, **{subset_metric(t): f"token F1 on questions with F1 ≥ {t:g} without deactivation"
                                for t in thresholds}}


def subset_items(result: QAResult, threshold: float) -> np.ndarray:
    """Indices of the questions whose F1 without deactivation is >= threshold: [n]."""
    return np.flatnonzero(result.f1["none"] >= threshold)


def subset_counts(result: QAResult) -> dict[str, int]:
    """Questions in each F1 subset of the result's protocol (0 when none qualifies)."""
    return {subset_metric(t): int(len(subset_items(result, t))) for t in result.f1_subsets}


def qa_summary(result: QAResult, conditions: Sequence[Condition], seed: int = 0) -> list[dict]:
    """effects.summarise rows for F1 and exact match (one layer column "all"), with the language; under
    a protocol with F1 subsets also F1 on each subset of at least two questions (`items` is its size)."""
    rows = []
    for metric in METRICS:
        scores = getattr(result, metric)
        values = {label: v[:, None] for label, v in scores.items()}  # [item, 1]
        rows += [{"lang": result.lang, **row} for row in summarise(values, conditions, metric, [ALL_LAYERS], seed)]
    for threshold in result.f1_subsets:
        keep = subset_items(result, threshold)
        if len(keep) < 2:
            continue
        values = {label: v[keep, None] for label, v in result.f1.items()}  # [subset item, 1]
        rows += [{"lang": result.lang, **row}
                 for row in summarise(values, conditions, subset_metric(threshold), [ALL_LAYERS], seed)]
    return rows


def answer_rows(result: QAResult, conditions: Sequence[Condition]) -> list[dict]:
    """One row per (question, condition): question, gold answers, the generated answer, F1, EM."""
    rows = []
    for i, item in enumerate(result.items):
        for condition in conditions:
            label = condition.label
            rows.append({
                "lang": result.lang, "item": i, "question": item.question, "gold": " | ".join(item.answers),
                "condition": label, "answer": result.answers[label][i],
                "f1": float(result.f1[label][i]), "em": float(result.em[label][i]),
            })
    return rows


def scatter_rows(result: QAResult, conditions: Sequence[Condition]) -> list[dict]:
    """One row per (question, deactivating condition): F1 without deactivation and under the condition
    (seeded controls: the mean over seeds); the numbers behind plot_f1_scatter."""
    rows = []
    for name, members in condition_groups(conditions).items():
        if name == "none":
            continue
        after = pooled(result.f1, members)  # [item]
        for i, item in enumerate(result.items):
            rows.append({"lang": result.lang, "item": i, "question": item.question, "condition": name,
                         "seeds": len(members) if members[0].seed is not None else None,
                         "f1_none": float(result.f1["none"][i]), "f1_after": float(after[i])})
    return rows


def plot_f1_scatter(result: QAResult, conditions: Sequence[Condition], model_name: str,
                    neurons: str = "transfer neurons") -> Figure:
    """Per-question F1 without deactivation (x) against F1 under each condition (y), one panel per condition;
    points below the diagonal lost F1. Dot area counts the questions at the same point."""
    names = [name for name in condition_groups(conditions) if name != "none"]
    fig = Figure(figsize=(3.6 * len(names), 3.9))
    axes = np.atleast_1d(fig.subplots(1, len(names), squeeze=False)[0])
    rows = scatter_rows(result, conditions)
    for ax, name in zip(axes, names):
        points = [(r["f1_none"], r["f1_after"]) for r in rows if r["condition"] == name]
        unique, counts = np.unique(np.round(points, 6), axis=0, return_counts=True)
        ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1)
        ax.scatter(unique[:, 0], unique[:, 1], s=18 * counts, color=COLOURS.get(name, "tab:gray"), alpha=0.6,
                   edgecolors="black", linewidths=0.4)
        for threshold in result.f1_subsets:
            ax.axvline(threshold, color="gray", linestyle=":", linewidth=0.8)
        ax.set(xlim=(-0.05, 1.05), ylim=(-0.05, 1.05), aspect="equal", title=name,
               xlabel="F1 without deactivation", ylabel=f"F1 under {name}")
    fig.suptitle(f"{model_name}: per-question F1 in {result.lang} ({len(result.items)} questions), "
                 f"{neurons} deactivated in mode {result.mode}, protocol {result.protocol}")
    fig.tight_layout()
    return fig


def condition_bars(
    ax,
    summary: Sequence[Mapping],
    per_seed: Mapping[str, Sequence[float]],
    ylabel: str,
) -> None:
    """Bars of each condition's mean with its 95 % interval; seeded controls add one dot per seed."""
    names = [row["condition"] for row in summary]
    means = np.array([row["mean"] for row in summary])
    errors = np.array([[row["mean"] - row["mean_low"] for row in summary],
                       [row["mean_high"] - row["mean"] for row in summary]])
    x = np.arange(len(names))
    ax.bar(x, means, yerr=errors, capsize=4, color=[COLOURS.get(n, "tab:gray") for n in names], alpha=0.8,
           label="mean (95 % bootstrap interval)")
    seeded = [(j, v) for j, n in enumerate(names) for v in per_seed.get(n, ()) if len(per_seed.get(n, ())) > 1]
    if seeded:
        ax.scatter([j for j, _ in seeded], [v for _, v in seeded], color="black", s=14, zorder=3,
                   label="one seed's mean")
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_xlabel("deactivation condition")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)


def seed_means(scores: Mapping[str, np.ndarray], conditions: Sequence[Condition]) -> dict[str, list[float]]:
    """Each condition name's per-seed mean score (one value for unseeded conditions)."""
    out: dict[str, list[float]] = {}
    for condition in conditions:
        out.setdefault(condition.name, []).append(float(np.mean(scores[condition.label])))
    return out


def plot_qa(result: QAResult, summary: Sequence[Mapping], conditions: Sequence[Condition], model_name: str,
            neurons: str = "transfer neurons") -> Figure:
    """Mean F1 and exact match per condition with intervals and seed dots; `neurons` names the set in the title."""
    fig = Figure(figsize=(5.5 * len(METRICS), 4.2))
    axes = fig.subplots(1, len(METRICS))
    for ax, metric in zip(axes, METRICS):
        rows = [row for row in summary if row["metric"] == metric]
        condition_bars(ax, rows, seed_means(getattr(result, metric), conditions), f"mean {METRIC_TITLES[metric]}")
        ax.set_title(METRIC_TITLES[metric])
        ax.set_ylim(0, min(1.05, max(0.1, 1.2 * max(row["mean_high"] for row in rows))))
    fig.suptitle(f"{model_name}: QA in {result.lang} ({len(result.items)} questions), "
                 f"{neurons} deactivated in mode {result.mode}, protocol {result.protocol}")
    fig.tight_layout()
    return fig
