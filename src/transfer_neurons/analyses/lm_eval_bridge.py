"""Any lm-evaluation-harness task under deactivation (optional extra `lm-eval`).

The loaded model is wrapped, as it is, in lm-eval's Hugging Face class (HFLM) and
`lm_eval.simple_evaluate` runs the named tasks once per condition, with the condition's
neurons deactivated (interventions.deactivated, mode `all`) for the whole evaluate call.
What `all` covers follows from how lm-eval runs the model:
- log-likelihood tasks (multiple choice, perplexity) score context and continuation in ONE
  forward pass without a cache, so every token of it is deactivated, the continuation too
  (unlike `reasoning`, which deactivates the prompt only);
- generation tasks go through `model.generate` (left-padded prompts with their attention
  mask, cache on): the prompt pass finds an empty cache, so every real prompt token (few-shot
  examples included) is deactivated; each decoding step finds the cache filled, so the
  generated tokens are not (as in `qa`; tested).
lm-eval's own `steered` model is not used: its actions add or clamp one vector per hook and
cannot zero a thousand arbitrary neurons. lm-eval is imported lazily; without it a clear
error names the extra to install.

What lm-eval users set is passed through as its CLI names it: batch_size (a number or
"auto", with max_batch_size), limit, num_fewshot, log_samples, apply_chat_template,
fewshot_as_multiturn, system_instruction, gen_kwargs, bootstrap_iters. With an
output_path, lm-eval's own results JSON (and, with log_samples, its per-task sample
logs) is kept for each condition in `<output_path>/<condition label>/`.

For the paper's reasoning protocol one task is scored per question (`score_task`): its
logged samples give each question's metric after the task's filter (e.g. exact_match of
the answer letter that mmlu_prox's `custom-extract` regex pulls out of the chain of
thought), paired across conditions by (subtask, doc_id), so the drop and transfer −
control get the same paired bootstrap as every other analysis.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

from matplotlib.figure import Figure
import numpy as np

from ..conditions import Condition
from ..distributed import agree
from ..errors import TransferNeuronsError
from ..interventions import deactivated
from ..log import quiet_libraries
from ..models.loaded import LoadedModel
from ..outputs import write_bytes
from .similarity import COLOURS

INSTALL_HINT = "pip install 'transfer-neurons[lm-eval]'"
DEACTIVATION_MODE = "all"


def installed_lm_eval() -> str | None:
    """The installed lm-eval's version, or None: found without importing it (a study key records it)."""
    try:
        return importlib.metadata.version("lm-eval")
    except importlib.metadata.PackageNotFoundError:
        return None


def require_lm_eval():
    """The lm_eval module, or a TransferNeuronsError naming the optional extra to install."""
    try:
        import lm_eval
        import lm_eval.models.huggingface  # noqa: F401
        import lm_eval.tasks  # noqa: F401
    except ImportError as err:
        raise TransferNeuronsError(
            f"the lm-eval bridge needs the optional extra `lm-eval` ({err}); install it with: {INSTALL_HINT}"
        ) from None
    return lm_eval


@dataclass
class EvalOptions:
    """What the bridge passes through to lm-eval, named as lm-eval's CLI and simple_evaluate name it."""

    batch_size: int | str = 8  # a number, or "auto" / "auto:N" (lm-eval finds the largest that fits)
    max_batch_size: int | None = None  # upper bound for "auto" (lm-eval's default 64)
    limit: float | None = None  # documents per task: a count, or a fraction below 1
    num_fewshot: int | None = None  # None: each task's own
    log_samples: bool = False  # keep every request and response (written with output_path)
    apply_chat_template: bool | str = False  # True, or the name of one of the tokenizer's templates
    fewshot_as_multiturn: bool | None = None  # None: lm-eval's default (multi-turn when a chat template is applied)
    system_instruction: str | None = None
    gen_kwargs: str | dict | None = None  # "temperature=0,max_gen_toks=64" or a dict; generation tasks only
    bootstrap_iters: int = 1000
    output_path: str | Path | None = None  # lm-eval's own results per condition: <output_path>/<label>/

    def evaluate_kwargs(self) -> dict:
        """Keyword arguments of lm_eval.simple_evaluate."""
        kwargs = dict(batch_size=self.batch_size, limit=self.limit, num_fewshot=self.num_fewshot,
                      log_samples=self.log_samples, apply_chat_template=self.apply_chat_template,
                      system_instruction=self.system_instruction, gen_kwargs=self.gen_kwargs,
                      bootstrap_iters=self.bootstrap_iters)
        if self.fewshot_as_multiturn is not None:
            kwargs["fewshot_as_multiturn"] = self.fewshot_as_multiturn
        return kwargs


def lm_eval_batch_size(value: int | str) -> int | str:
    """lm-eval's batch size: a positive int, "auto" or "auto:N"; else a TransferNeuronsError."""
    text = str(value)
    if text.isdigit() and int(text) >= 1:
        return int(text)
    head, _, times = text.partition(":")
    if head == "auto" and (not times or (times.isdigit() and int(times) >= 1)):
        return text
    raise TransferNeuronsError(f"batch_size must be a positive integer, 'auto' or 'auto:N', got {value!r}",
                               option="batch_size")


def wrap_model(lm: LoadedModel, batch_size: int | str = 8, max_batch_size: int | None = None):
    """lm-eval's HFLM around the already loaded model and tokenizer (hooks on the model apply to it)."""
    lm_eval = require_lm_eval()
    extra = {} if max_batch_size is None else {"max_batch_size": max_batch_size}
    return lm_eval.models.huggingface.HFLM(
        pretrained=lm.model, tokenizer=lm.tokenizer, batch_size=lm_eval_batch_size(batch_size), **extra)


def task_manager(include_path: str | None = None, include_defaults: bool = True):
    """lm-eval's TaskManager over its built-in tasks (unless include_defaults is False) and include_path's YAMLs."""
    lm_eval = require_lm_eval()
    if not include_defaults and not include_path:
        raise TransferNeuronsError("without lm-eval's built-in tasks, give a folder of task YAMLs (include path)")
    return lm_eval.tasks.TaskManager(include_path=include_path, include_defaults=include_defaults)


def _number(value) -> float | None:
    """A finite float, or None for lm-eval's "N/A" and other non-numbers."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def result_rows(results: dict, condition: Condition) -> list[dict]:
    """One row per (task, metric, filter) of an lm-eval results dict (keys "metric,filter"), for one condition."""
    rows = []
    for task, metrics in results["results"].items():
        for key, value in metrics.items():
            metric, comma, filt = key.partition(",")
            if not comma or metric.endswith("_stderr") or _number(value) is None:
                continue  # alias, sample counts, stderr (read beside its metric), "N/A"
            rows.append({
                "task": task, "metric": metric, "filter": filt, "condition": condition.name,
                "seed": condition.seed, "label": condition.label, "value": _number(value),
                "stderr": _number(metrics.get(f"{metric}_stderr,{filt}")),
                "neurons": 0 if condition.neurons is None else len(condition.neurons),
            })
    return rows


def condition_folder(output_path: str | Path, condition: Condition) -> Path:
    """Where lm-eval's own output for one condition goes: <output_path>/<condition label>/."""
    return Path(output_path) / condition.label.replace("/", "_").replace("\\", "_")


def save_lm_eval_output(results: dict, folder: Path) -> list[Path]:
    """lm-eval's results JSON (as its CLI writes it, samples left out) and one samples_<task>.jsonl per task."""
    from lm_eval.utils import handle_non_serializable

    samples = results.get("samples") or {}
    plain = {key: value for key, value in results.items() if key != "samples"}
    dump = json.dumps(plain, indent=2, default=handle_non_serializable, ensure_ascii=False)
    written = [write_bytes(folder / "results.json", dump.encode("utf-8"))]
    for task, rows in samples.items():
        lines = "".join(json.dumps(r, default=handle_non_serializable, ensure_ascii=False) + "\n" for r in rows)
        written.append(write_bytes(folder / f"samples_{task}.jsonl", lines.encode("utf-8")))
    return written


def check_options(lm: LoadedModel, options: EvalOptions) -> None:
    """Refuse a chat template the tokenizer does not have, naming the flag."""
    if options.apply_chat_template and not getattr(lm.tokenizer, "chat_template", None):
        raise TransferNeuronsError(f"apply_chat_template: the tokenizer of {lm.name} has no chat template",
                                   option="apply_chat_template")


def evaluate_conditions(lm: LoadedModel, tasks: Sequence[str], conditions: Sequence[Condition], manager,
                        options: EvalOptions) -> Iterator[tuple[Condition, dict]]:
    """lm-eval's results dict of each condition in turn (with `samples` under options.log_samples), each
    evaluated with the condition's neurons deactivated (mode `all`) for the whole call."""
    lm_eval = require_lm_eval()
    check_options(lm, options)
    hflm = wrap_model(lm, options.batch_size, options.max_batch_size)
    for condition in conditions:
        with deactivated(lm, condition.neurons, DEACTIVATION_MODE) if condition.neurons is not None else nullcontext(), \
                quiet_libraries("lm_eval", "datasets"):
            try:
                results = lm_eval.simple_evaluate(model=hflm, tasks=list(tasks), task_manager=manager,
                                                  **options.evaluate_kwargs())
            except ConnectionError as err:  # a task whose dataset is neither cached nor downloadable here
                raise TransferNeuronsError(f"lm-eval tasks {', '.join(tasks)}: their data cannot be fetched "
                                           f"({' '.join(str(err).split())}); run once where the hub is reachable, "
                                           "or use tasks with local data (include_path)") from None
        results = agree(results)  # under torchrun every rank evaluates it all; lm-eval returns it on rank 0 alone
        if options.output_path is not None:
            save_lm_eval_output(results, condition_folder(options.output_path, condition))
        yield condition, results


def run_lm_eval(
    lm: LoadedModel,
    tasks: Sequence[str],
    conditions: Sequence[Condition],
    batch_size: int | str = 8,
    limit: float | None = None,
    include_path: str | None = None,
    num_fewshot: int | None = None,
    bootstrap_iters: int = 1000,
    include_defaults: bool = True,
    options: EvalOptions | None = None,
) -> list[dict]:
    """Evaluate the tasks under each condition (deactivation mode `all` for the whole call): table rows.

    `options` carries every lm-eval pass-through (it overrides batch_size, limit, num_fewshot
    and bootstrap_iters given directly); with options.output_path, lm-eval's own output of
    each condition is written beside ours.
    """
    if options is None:
        options = EvalOptions(batch_size=batch_size, limit=limit, num_fewshot=num_fewshot, bootstrap_iters=bootstrap_iters)
    if not tasks:
        raise TransferNeuronsError("name at least one lm-eval task")
    manager = task_manager(include_path, include_defaults)
    unknown = [t for t in tasks if not manager.match_tasks([t]) and not Path(t).is_file()]
    if unknown:
        where = f" (searched also {include_path})" if include_path else ""
        raise TransferNeuronsError(f"lm-eval knows no task {', '.join(unknown)}{where}; its CLI lists the known tasks")
    rows = []
    for condition, results in evaluate_conditions(lm, tasks, conditions, manager, options):
        rows += result_rows(results, condition)
    return rows


# ---------------------------------------------------------------- one task, scored per question


def task_name(spec: str | Mapping[str, str], lang: str) -> str | None:
    """The lm-eval task of one language: a mapping's entry (None when absent), or a name with {lang} filled in."""
    if isinstance(spec, Mapping):
        return spec.get(lang)
    return spec.format(lang=lang)


def check_task_spec(spec, where: str) -> str | dict[str, str]:
    """A task name, a template with {lang}, or a mapping language -> task name; else an error naming `where`."""
    if isinstance(spec, Mapping):
        if not spec or not all(isinstance(k, str) and isinstance(v, str) and v for k, v in spec.items()):
            raise TransferNeuronsError(f"{where}: expected a mapping of language code to lm-eval task name, got {spec!r}")
        return dict(spec)
    if not isinstance(spec, str) or not spec.strip():
        raise TransferNeuronsError(f"{where}: expected an lm-eval task name such as mmlu_prox_lite_{{lang}}, got {spec!r}")
    try:
        spec.format(lang="xx")
    except (KeyError, IndexError, ValueError, AttributeError):
        raise TransferNeuronsError(f"{where}: {spec!r} may hold {{lang}} and no other braces") from None
    return spec


UNBUILT = "lm-eval could not build task"
"""How buildable's reason begins when the task exists but its data could not be had here (e.g. offline)."""


def buildable(task: str, include_path: str | None = None, include_defaults: bool = True):
    """(lm-eval's TaskManager, None) when the task can run here, else (None, a one-line reason).

    The task is built once, as lm-eval builds it, so a missing extra, an unknown name or a
    data set that cannot be loaded (e.g. offline) is found before any condition runs.
    """
    try:
        lm_eval = require_lm_eval()
    except TransferNeuronsError:
        return None, f"lm-eval is not installed ({INSTALL_HINT})"
    manager = task_manager(include_path, include_defaults)
    if not manager.match_tasks([task]):
        where = f" (searched also {include_path})" if include_path else ""
        return None, f"lm-eval knows no task {task}{where}"
    try:
        lm_eval.tasks.get_task_dict([task], manager)
    except Exception as err:  # datasets, the hub client and lm-eval's loaders raise their own types
        message = str(err).strip().splitlines()[0] if str(err).strip() else ""
        return None, f"{UNBUILT} {task} ({type(err).__name__}: {message[:200]})"
    return manager, None


@dataclass
class SampleScores:
    """One metric after one filter for every question of a task (a group: every subtask's questions)."""

    metric: str
    filter: str
    keys: list[tuple[str, int]]  # (subtask, doc_id) of each question, sorted
    values: np.ndarray  # [question] the metric per question, e.g. exact_match 0 or 1
    answers: list[str]  # [question] the filtered response the metric scored
    targets: list[str]  # [question]


def _first_metric(samples: Sequence[dict]) -> str:
    """exact_match when the samples hold it, else their first metric."""
    names = list(dict.fromkeys(m for s in samples for m in s.get("metrics", ())))
    if not names:
        raise TransferNeuronsError("lm-eval's samples hold no metric")
    return "exact_match" if "exact_match" in names else names[0]


def sample_scores(samples: Mapping[str, Sequence[dict]], metric: str | None = None,
                  filt: str | None = None) -> SampleScores:
    """Per-question scores from lm-eval's logged samples (results["samples"]: task -> one record per question and filter).

    metric: default exact_match (or the first metric); filt: default the task's first filter that
    scores that metric (its own order, e.g. mmlu_prox's `custom-extract`).
    """
    flat = [(task, s) for task, rows in samples.items() for s in rows]
    if not flat:
        raise TransferNeuronsError("lm-eval logged no samples (is log_samples on, and does the task have documents?)")
    metric = metric or _first_metric([s for _, s in flat])
    filters = list(dict.fromkeys(s["filter"] for _, s in flat if metric in s.get("metrics", ())))
    if not filters:
        raise TransferNeuronsError(f"lm-eval's samples hold no metric {metric!r}")
    filt = filt or filters[0]
    if filt not in filters:
        raise TransferNeuronsError(f"lm-eval's samples hold {metric!r} under filters {', '.join(filters)}, not {filt!r}")
    chosen = sorted(((task, int(s["doc_id"])), s) for task, s in flat if s["filter"] == filt and metric in s)
    values = [_number(s[metric]) for _, s in chosen]
    if any(v is None for v in values):
        raise TransferNeuronsError(f"lm-eval's {metric!r} is not a number per question (it is aggregated over the "
                                   "corpus); choose a per-question metric such as exact_match or acc")
    return SampleScores(metric, filt, [key for key, _ in chosen], np.array(values, dtype=np.float64),
                        [str((s.get("filtered_resps") or [""])[0]) for _, s in chosen],
                        [str(s.get("target", "")) for _, s in chosen])


@dataclass
class TaskScores:
    """One lm-eval task under every condition: per-question scores, lm-eval's own table rows, shots."""

    task: str
    metric: str
    filter: str
    keys: list[tuple[str, int]]  # (subtask, doc_id) per question
    scores: dict[str, np.ndarray]  # condition label -> [question]
    answers: dict[str, list[str]]  # condition label -> [question] filtered response
    targets: list[str]  # [question]
    rows: list[dict]  # result_rows of every condition (lm-eval's aggregates)
    n_shot: dict  # subtask -> few-shot examples lm-eval used
    output_types: list[str]  # lm-eval request kinds of its subtasks, e.g. ["generate_until"]

    @property
    def positions(self) -> str:
        """Which tokens the deactivation reached, given how lm-eval ran the task."""
        if set(self.output_types) == {"generate_until"}:
            return "every prompt token (few-shot examples included), not the generated tokens"
        return "every token of context and continuation (lm-eval scores them in one pass)"


def score_task(lm: LoadedModel, task: str, conditions: Sequence[Condition], manager, options: EvalOptions,
               metric: str | None = None, filt: str | None = None) -> TaskScores:
    """Run one task under each condition (samples logged) and read its metric per question, paired across conditions."""
    options = replace(options, log_samples=True)
    out = None
    for condition, results in evaluate_conditions(lm, [task], conditions, manager, options):
        scores = sample_scores(results["samples"], metric, filt)
        if out is None:
            kinds = sorted({c.get("output_type", "?") for c in results.get("configs", {}).values()})
            out = TaskScores(task, scores.metric, scores.filter, scores.keys, {}, {}, scores.targets, [],
                             dict(results.get("n-shot", {})), kinds)
        elif scores.keys != out.keys:
            raise TransferNeuronsError(f"lm-eval scored other questions of {task} under {condition.label} than "
                                       "under the first condition; per-question drops need the same questions")
        out.scores[condition.label] = scores.values
        out.answers[condition.label] = scores.answers
        out.rows += result_rows(results, condition)
    return out


def plot_lm_eval(rows: Sequence[dict], model_name: str):
    """One panel per (task, metric): each condition's value (seeds averaged) with stderr bars and seed dots."""
    panels = list(dict.fromkeys((r["task"], r["metric"], r["filter"]) for r in rows))
    fig = Figure(figsize=(5 * len(panels), 4.2))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (task, metric, filt) in zip(axes[0], panels):
        mine = [r for r in rows if (r["task"], r["metric"], r["filter"]) == (task, metric, filt)]
        names = list(dict.fromkeys(r["condition"] for r in mine))
        values = [[r["value"] for r in mine if r["condition"] == n] for n in names]
        errors = [next((r["stderr"] for r in mine if r["condition"] == n), None) if len(v) == 1 else np.std(v)
                  for n, v in zip(names, values)]
        x = np.arange(len(names))
        ax.bar(x, [np.mean(v) for v in values], yerr=[e or 0.0 for e in errors], capsize=4, alpha=0.8,
               color=[COLOURS.get(n, "tab:gray") for n in names], label="value (± stderr; seeds: ± std)")
        dots = [(j, v) for j, vs in enumerate(values) if len(vs) > 1 for v in vs]
        if dots:
            ax.scatter(*zip(*dots), color="black", s=14, zorder=3, label="one seed")
        ax.set_xticks(x, names, rotation=30, ha="right")
        ax.set_xlabel("deactivation condition")
        ax.set_ylabel(metric)
        ax.set_title(f"{task} ({metric}{', filter ' + filt if filt != 'none' else ''})", fontsize=10)
        ax.legend(fontsize=8)
    fig.suptitle(f"{model_name}: lm-eval tasks under deactivation (mode {DEACTIVATION_MODE})")
    fig.tight_layout()
    return fig
