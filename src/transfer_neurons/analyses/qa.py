"""Open QA under deactivation (SPEC.md 6.8): greedy answers, token F1 and exact match per condition.

Each question is put in a short prompt of its own language (PROMPTS: "Answer briefly. Question: ...
Answer:" translated; other languages get the neutral "Q: ... A:"), answered by batched greedy
generation with LEFT padding (the tokenizer's side is switched for the call and restored), at most
`max_new_tokens` (default 12) new tokens, stopping at the first newline after some text; the answer
is the first non-empty line. Deactivation wraps `model.generate` with interventions.deactivated in
mode `all` (every real prompt token, not generated ones: the paper's QA "prompt" mode) or
`prompt_last` (the prompt's last token only). Scores are answer_norm's language-aware token F1 and
exact match, the best over the gold answer and its aliases; effects come from effects.summarise with
one "layer" named "all".
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402
from transformers import StoppingCriteria, StoppingCriteriaList  # noqa: E402

from ..conditions import Condition  # noqa: E402
from ..data import QAItem, QASet  # noqa: E402
from ..errors import TransferNeuronsError  # noqa: E402
from ..log import progress_enabled  # noqa: E402
from ..interventions import deactivated  # noqa: E402
from ..models.loading import LoadedModel  # noqa: E402
from .answer_norm import best_exact_match, best_f1  # noqa: E402
from .effects import summarise  # noqa: E402
from .similarity import COLOURS  # noqa: E402

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
"""Per-language QA prompt: an instruction, the question, and the word "Answer" as the cue."""

NEUTRAL_PROMPT = "Q: {question}\nA:"
"""Prompt for languages without a translated template."""


def qa_prompt(question: str, lang: str) -> str:
    """The question in its language's prompt template (neutral "Q: ... A:" when none exists)."""
    return PROMPTS.get(lang, NEUTRAL_PROMPT).format(question=question)


@contextmanager
def padding_side(tokenizer, side: str) -> Iterator[None]:
    """Within the block the tokenizer pads on `side`; its previous side is restored afterwards."""
    previous = tokenizer.padding_side
    tokenizer.padding_side = side
    try:
        yield
    finally:
        tokenizer.padding_side = previous


class StopAtNewline(StoppingCriteria):
    """Stop each row once its generated text has a newline after some non-space text."""

    def __init__(self, tokenizer, prompt_length: int):
        self.tokenizer = tokenizer
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_length :], skip_special_tokens=True)
        return torch.tensor(["\n" in text.lstrip() for text in texts], dtype=torch.bool, device=input_ids.device)


def first_line(text: str) -> str:
    """The first non-empty line of generated text, stripped: the answer."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


@torch.no_grad()
def generate_answers(
    lm: LoadedModel,
    prompts: Sequence[str],
    neurons: np.ndarray | None = None,
    mode: str = "all",
    max_new_tokens: int = 12,
    batch_size: int = 8,
    progress: str | None = "generate",
) -> list[str]:
    """Greedy answers (first line of up to max_new_tokens tokens), left-padded batches, in input order."""
    if mode not in GENERATION_MODES:
        raise TransferNeuronsError(f"QA deactivation mode must be one of {GENERATION_MODES}, got {mode!r}")
    if not prompts:
        raise TransferNeuronsError("no questions to answer")
    tokenizer, device = lm.tokenizer, lm.view.device
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths, less padding
    answers: list[str] = [""] * len(prompts)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    steps = range(0, len(order), batch_size)
    with padding_side(tokenizer, "left"), (deactivated(lm, neurons, mode) if neurons is not None else nullcontext()):
        for start in tqdm(steps, desc=progress, disable=progress is None or not progress_enabled(), unit="batch"):
            idx = order[start : start + batch_size]
            batch = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True)
            length = batch["input_ids"].shape[1]
            out = lm.model.generate(
                input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad_id,
                stopping_criteria=StoppingCriteriaList([StopAtNewline(tokenizer, length)]),
            )
            texts = tokenizer.batch_decode(out[:, length:], skip_special_tokens=True)
            for i, text in zip(idx, texts):
                answers[i] = first_line(text)
    return answers


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
    prompts: list[str]
    answers: dict[str, list[str]]  # condition label -> answer per item
    f1: dict[str, np.ndarray]  # condition label -> [item]
    em: dict[str, np.ndarray]  # condition label -> [item]


def run_qa(
    lm: LoadedModel,
    qa: QASet,
    conditions: Sequence[Condition],
    mode: str = "all",
    max_new_tokens: int = 12,
    batch_size: int = 8,
    progress: bool = True,
) -> QAResult:
    """Answer every question under every condition and score the answers."""
    prompts = [qa_prompt(item.question, qa.lang) for item in qa.items]
    result = QAResult(qa.lang, mode, qa.items, prompts, {}, {}, {})
    for condition in conditions:
        desc = f"QA {qa.lang} {condition.label}" if progress else None
        answers = generate_answers(lm, prompts, condition.neurons, mode, max_new_tokens, batch_size, desc)
        result.answers[condition.label] = answers
        result.f1[condition.label], result.em[condition.label] = score_answers(answers, qa.items, qa.lang)
    return result


def qa_summary(result: QAResult, conditions: Sequence[Condition], seed: int = 0) -> list[dict]:
    """effects.summarise rows for F1 and exact match (one layer column "all"), with the language."""
    rows = []
    for metric in METRICS:
        scores = getattr(result, metric)
        values = {label: v[:, None] for label, v in scores.items()}  # [item, 1]
        rows += [{"lang": result.lang, **row} for row in summarise(values, conditions, metric, [ALL_LAYERS], seed)]
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
            neurons: str = "transfer neurons"):
    """Mean F1 and exact match per condition with intervals and seed dots; `neurons` names the set in the title."""
    fig, axes = plt.subplots(1, len(METRICS), figsize=(5.5 * len(METRICS), 4.2))
    for ax, metric in zip(axes, METRICS):
        rows = [row for row in summary if row["metric"] == metric]
        condition_bars(ax, rows, seed_means(getattr(result, metric), conditions), f"mean {METRIC_TITLES[metric]}")
        ax.set_title(METRIC_TITLES[metric])
        ax.set_ylim(0, min(1.05, max(0.1, 1.2 * max(row["mean_high"] for row in rows))))
    fig.suptitle(f"{model_name}: QA in {result.lang} ({len(result.items)} questions), "
                 f"{neurons} deactivated in mode {result.mode}")
    fig.tight_layout()
    return fig
