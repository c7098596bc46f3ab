"""Multiple-choice reasoning under deactivation (method.md §6.8, MMLU-ProX style), by option log-likelihood.

The prompt is the question, the lettered options ("A. ...") and the language's answer cue
("Answer:", "答え:", ...); each option is scored as the continuation " " + option text. An item is
right when the correct option has the highest total log-likelihood (`acc`) or the highest
log-likelihood per UTF-8 byte of the option text (`acc_norm`, lm-eval's length normalisation);
`p_correct` is the softmax over the options' total log-likelihoods at the right option, a graded
score with more statistical power than accuracy.

Positions deactivated. Each prompt runs once (left-padded, cache on); its cache is repeated per option
and the options (right-padded) run against it. interventions.deactivated treats the first pass as the
prompt and the second as generated tokens, so mode `all` zeroes the neurons at every real prompt token
and `prompt_last` at the prompt's last token (the cue) only, while the option tokens themselves are
never deactivated, exactly as if the model generated the answer (the QA analysis). Zeroing the option
tokens too would measure how deactivation disturbs reading the option, not choosing it. (The
lm-eval bridge cannot make this split: lm-eval scores context and continuation in one pass.)

The paper's protocol instead generates a chain of thought for an lm-eval task (MMLU-ProX, 5-shot)
with the prompt deactivated and the generated tokens not, and scores the answer its filter
extracts; its per-question scores (lm_eval_bridge.score_task) get the same summary rows here
(`lm_eval_summary`), so both protocols decide the reasoning claim alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from ..batching import logit_rows
from ..capture import cache_argument, returned_cache
from ..conditions import Condition
from ..data import MCItem, MCSet
from ..distributed import gather_items, shard_batches
from ..data.questions import answer_cue
from ..errors import TransferNeuronsError
from ..interventions import Intervention, deactivated
from ..log import progress_enabled
from ..models.loaded import LoadedModel
from .effects import summarise
from .generation import left_padded, pad_id, prompt_texts, prompt_token_ids
from .lm_eval_bridge import TaskScores
from .qa import ALL_LAYERS, GENERATION_MODES, condition_bars, seed_means

METRICS = ("acc", "acc_norm", "p_correct")
METRIC_TITLES = {"acc": "accuracy (total log-lik.)", "acc_norm": "accuracy (log-lik. per byte)",
                 "p_correct": "probability of the right option"}
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def mc_prompt(item: MCItem, lang: str) -> str:
    """Question, lettered options one per line, and the language's answer cue."""
    if len(item.options) > len(LETTERS):
        raise TransferNeuronsError(f"an item has {len(item.options)} options; at most {len(LETTERS)} are supported")
    options = [f"{LETTERS[i]}. {option}" for i, option in enumerate(item.options)]
    return "\n".join([item.question, *options, answer_cue(lang)])


def _right_padded(rows: Sequence[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists -> (ids [batch, seq], mask [batch, seq]) padded on the right."""
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    return ids, mask


def token_log_probs(lm: LoadedModel, final: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) under the model's head at final-norm states: final [n, d_model], targets [n] -> [n] float32,
    in steps of batching.logit_rows so the logits' memory stays bounded."""
    rows = logit_rows(int(lm.view.unembed().weight.shape[0]))
    out = []
    for start in range(0, final.shape[0], rows):
        logits = lm.view.head_logits(final[start : start + rows])  # [rows, vocab]
        picked = logits.gather(-1, targets[start : start + rows, None].to(logits.device))[:, 0]
        out.append(picked - torch.logsumexp(logits, -1))
    return torch.cat(out) if out else torch.zeros(0)


@torch.no_grad()
def _batch_logliks(lm: LoadedModel, prompts: list[list[int]], options: list[list[list[int]]], pad: int) -> list[np.ndarray]:
    """Summed log-probabilities of each item's options after its prompt: per item [option].

    Each prompt runs once (left-padded, cache on); the cache is repeated per option and the options
    (right-padded) run against it, so the prompt is not recomputed for every option. The head runs
    only where a log-probability is read: the prompt's last position and each option token but the last.
    """
    device = lm.view.device
    p_ids, p_mask = left_padded(prompts, pad)  # [item, prompt]
    first = lm.view.decoder(
        input_ids=p_ids.to(device), attention_mask=p_mask.to(device),
        position_ids=(p_mask.cumsum(1) - 1).clamp(min=0).to(device), use_cache=True,
    )
    owner = torch.tensor([i for i, opts in enumerate(options) for _ in opts])  # [row] item of each option
    cache = returned_cache(first)
    cache.reorder_cache(owner.to(device))
    c_ids, c_mask = _right_padded([ids for opts in options for ids in opts], pad)  # [row, option token]
    # [row, option token]; a padding slot repeats its row's last position, so no position exceeds the row's own
    positions = p_mask.sum(1)[owner, None] + (c_mask.cumsum(1) - 1).clamp(min=0)
    rest = lm.view.decoder(
        input_ids=c_ids.to(device), attention_mask=torch.cat([p_mask[owner], c_mask], 1).to(device),
        position_ids=positions.to(device), use_cache=True, **cache_argument(lm.view.decoder, cache),
    ).last_hidden_state  # [row, option token, d_model]
    # indices go to the device of what they index: under device_map the head and last layer sit on the last GPU
    logits = lm.view.head_logits(first.last_hidden_state[:, -1])  # [item, vocab]
    first_logits = logits[owner.to(logits.device)]  # [row, vocab]: the prompt's prediction of token 0
    totals = first_logits.gather(-1, c_ids[:, :1].to(logits.device))[:, 0] - torch.logsumexp(first_logits, -1)  # [row]
    reads = c_mask.clone()  # positions whose state predicts the next option token: every real one but the last
    reads[torch.arange(len(reads)), c_mask.sum(1) - 1] = 0
    row, col = reads.nonzero(as_tuple=True)
    inner = token_log_probs(lm, rest[row.to(rest.device), col.to(rest.device)], c_ids[row, col + 1])  # [read]
    totals = totals.index_add(0, row.to(totals.device), inner.to(totals.device)).cpu().numpy()  # [row]
    bounds = np.cumsum([0] + [len(opts) for opts in options])
    return [totals[bounds[i] : bounds[i + 1]] for i in range(len(options))]


def _row_batches(order: Sequence[int], rows: Sequence[int], batch_size: int) -> list[list[int]]:
    """Consecutive items of `order` grouped so that each group has at most batch_size rows (at least one item)."""
    batches: list[list[int]] = []
    current, count = [], 0
    for i in order:
        if current and count + rows[i] > batch_size:
            batches.append(current)
            current, count = [], 0
        current.append(i)
        count += rows[i]
    return batches + [current] if current else batches


def option_logliks(
    lm: LoadedModel,
    prompts: Sequence[str],
    options: Sequence[Sequence[str]],
    neurons: np.ndarray | None = None,
    mode: str = "all",
    batch_size: int = 8,
    progress: str | None = "score",
    *,
    chat_template: bool = False,
    intervention: Intervention | None = None,
) -> list[np.ndarray]:
    """Total log-likelihood of each item's continuations given its prompt, prompt positions deactivated.

    batch_size counts (prompt, option) rows, which bound the logits' memory; each prompt runs once,
    and an item with more options than batch_size forms a batch of its own. chat_template: the prompt
    is the user turn of the tokenizer's chat template and the options continue the assistant's turn.
    Returns per item [option], on every rank under torchrun (each rank scores its batches).
    """
    if mode not in GENERATION_MODES:
        raise TransferNeuronsError(f"reasoning deactivation mode must be one of {GENERATION_MODES}, got {mode!r}")
    if len(prompts) != len(options) or not prompts:
        raise TransferNeuronsError(f"need a list of options per prompt, got {len(prompts)} prompts and {len(options)} lists")
    tokenizer = lm.tokenizer
    prompt_ids = prompt_token_ids(tokenizer, prompt_texts(tokenizer, prompts, chat_template), chat_template)
    option_ids = [tokenizer(list(opts), add_special_tokens=False)["input_ids"] for opts in options]
    if any(not ids for opts in option_ids for ids in opts) or any(not opts for opts in options):
        raise TransferNeuronsError("every prompt needs options, and every option must tokenise to something")
    pad = pad_id(tokenizer)
    order = sorted(range(len(prompts)), key=lambda i: len(prompt_ids[i]))
    out: dict[int, np.ndarray] = {}
    batches = shard_batches(_row_batches(order, [len(o) for o in options], batch_size))  # this rank's, under torchrun
    with deactivated(lm, neurons, mode, intervention) if neurons is not None else nullcontext():
        for idx in tqdm(batches, desc=progress, disable=progress is None or not progress_enabled(), unit="batch"):
            out.update(zip(idx, _batch_logliks(lm, [prompt_ids[i] for i in idx], [option_ids[i] for i in idx], pad)))
    out = gather_items(out)
    return [out[i] for i in range(len(prompts))]


def option_choices(loglik: Sequence[np.ndarray], sizes: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Chosen option per item by total and by per-byte log-likelihood: ([item], [item]) indices."""
    total = np.array([int(np.argmax(ll)) for ll in loglik])
    normed = np.array([int(np.argmax(ll / size)) for ll, size in zip(loglik, sizes, strict=True)])
    return total, normed


def right_option_probability(loglik: Sequence[np.ndarray], answers: Sequence[int]) -> np.ndarray:
    """Softmax over each item's options' total log-likelihoods, at the right option: [item]."""
    out = []
    for ll, answer in zip(loglik, answers, strict=True):
        z = np.exp(ll - ll.max())
        out.append(z[answer] / z.sum())
    return np.array(out)


@dataclass
class MCResult:
    """Per-option log-likelihoods and per-item scores under each condition, for one language."""

    lang: str
    mode: str
    items: tuple[MCItem, ...]
    loglik: dict[str, list[np.ndarray]]  # condition label -> per item [option] total log-likelihood
    sizes: list[np.ndarray]  # per item [option] UTF-8 bytes of the option text
    scores: dict[str, dict[str, np.ndarray]]  # metric -> condition label -> [item]
    chosen: dict[str, np.ndarray]  # condition label -> [item] option chosen by total log-likelihood
    chat_template: bool = False

    @property
    def chance(self) -> float:
        """Expected accuracy of guessing: mean of 1 / options."""
        return float(np.mean([1 / len(item.options) for item in self.items]))


def run_reasoning(
    lm: LoadedModel,
    mc: MCSet,
    conditions: Sequence[Condition],
    mode: str = "all",
    batch_size: int = 8,
    progress: bool = True,
    *,
    chat_template: bool = False,
    intervention: Intervention | None = None,
) -> MCResult:
    """Score every option of every item under every condition (all (item, option) rows of a condition
    in batches); accuracy, per-byte accuracy, p(right)."""
    prompts = [mc_prompt(item, mc.lang) for item in mc.items]
    options = [[" " + option for option in item.options] for item in mc.items]
    sizes = [np.array([len(o.encode("utf-8")) for o in item.options], dtype=float) for item in mc.items]
    answers = np.array([item.answer for item in mc.items])
    result = MCResult(mc.lang, mode, mc.items, {}, sizes, {m: {} for m in METRICS}, {}, chat_template)
    for condition in conditions:
        desc = f"MC {mc.lang} {condition.label}" if progress else None
        loglik = option_logliks(lm, prompts, options, condition.neurons, mode, batch_size, desc,
                                chat_template=chat_template, intervention=intervention)
        total, normed = option_choices(loglik, sizes)
        label = condition.label
        result.loglik[label], result.chosen[label] = loglik, total
        result.scores["acc"][label] = (total == answers).astype(float)
        result.scores["acc_norm"][label] = (normed == answers).astype(float)
        result.scores["p_correct"][label] = right_option_probability(loglik, answers)
    return result


def reasoning_summary(result: MCResult, conditions: Sequence[Condition], seed: int = 0) -> list[dict]:
    """effects.summarise rows for each metric (one layer column "all"), with the language."""
    rows = []
    for metric in METRICS:
        values = {label: v[:, None] for label, v in result.scores[metric].items()}  # [item, 1]
        rows += [{"lang": result.lang, **row} for row in summarise(values, conditions, metric, [ALL_LAYERS], seed)]
    return rows


def item_rows(result: MCResult, conditions: Sequence[Condition]) -> list[dict]:
    """One row per (item, condition): question, right and chosen option, scores, option log-likelihoods."""
    rows = []
    for i, item in enumerate(result.items):
        for condition in conditions:
            label = condition.label
            rows.append({
                "lang": result.lang, "item": i, "question": item.question, "answer": LETTERS[item.answer],
                "condition": label, "chosen": LETTERS[int(result.chosen[label][i])],
                **{metric: float(result.scores[metric][label][i]) for metric in METRICS},
                "option_logliks": " ".join(f"{v:.3f}" for v in result.loglik[label][i]),
            })
    return rows


def plot_reasoning(result: MCResult, summary: Sequence[dict], conditions: Sequence[Condition], model_name: str,
                   neurons: str = "transfer neurons") -> Figure:
    """Accuracy, per-byte accuracy and p(right option) per condition, with intervals, seed dots and chance."""
    fig = Figure(figsize=(5.2 * len(METRICS), 4.2))
    axes = fig.subplots(1, len(METRICS))
    for ax, metric in zip(axes, METRICS):
        rows = [row for row in summary if row["metric"] == metric]
        ax.axhline(result.chance, color="gray", linestyle="--", linewidth=1, label="chance (mean 1 / options)")
        condition_bars(ax, rows, seed_means(result.scores[metric], conditions), METRIC_TITLES[metric])
        ax.set_ylim(0, 1)
        ax.set_title(METRIC_TITLES[metric])
    fig.suptitle(f"{model_name}: multiple choice in {result.lang} ({len(result.items)} items), "
                 f"{neurons} deactivated in mode {result.mode}")
    fig.tight_layout()
    return fig


def lm_eval_summary(scores: TaskScores, conditions: Sequence[Condition], lang: str, seed: int = 0) -> list[dict]:
    """effects.summarise rows of an lm-eval task's per-question metric (one layer column "all"), with the language:
    the same rows as reasoning_summary, so the reasoning claim reads either."""
    values = {label: v[:, None] for label, v in scores.scores.items()}  # [question, 1]
    return [{"lang": lang, **row} for row in summarise(values, conditions, scores.metric, [ALL_LAYERS], seed)]


def lm_eval_item_rows(scores: TaskScores, conditions: Sequence[Condition], lang: str) -> list[dict]:
    """One row per (question, condition): subtask, document, target, the filtered answer and its score."""
    return [{"lang": lang, "item": i, "task": task, "doc_id": doc, "target": scores.targets[i],
             "condition": c.label, "answer": scores.answers[c.label][i], scores.metric: float(scores.scores[c.label][i])}
            for i, (task, doc) in enumerate(scores.keys) for c in conditions]


def plot_lm_eval_reasoning(scores: TaskScores, summary: Sequence[dict], conditions: Sequence[Condition],
                           model_name: str, lang: str, neurons: str = "transfer neurons") -> Figure:
    """The task's per-question metric per condition, with intervals and seed dots."""
    fig = Figure(figsize=(6.0, 4.2))
    ax = fig.subplots()
    title = f"{scores.metric} (filter {scores.filter})"
    condition_bars(ax, [r for r in summary if r["metric"] == scores.metric], seed_means(scores.scores, conditions), title)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    shots = sorted(set(scores.n_shot.values()))
    fig.suptitle(f"{model_name}: lm-eval {scores.task} in {lang} ({len(scores.keys)} questions, "
                 f"{'/'.join(map(str, shots)) or '?'}-shot),\n{neurons} deactivated at {scores.positions}", fontsize=10)
    fig.tight_layout()
    return fig
