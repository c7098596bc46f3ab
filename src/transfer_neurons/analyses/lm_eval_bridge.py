"""Any lm-evaluation-harness task under deactivation (optional extra `lm-eval`).

The loaded model is wrapped, as it is, in lm-eval's Hugging Face class (HFLM) and
`lm_eval.simple_evaluate` runs the named tasks once per condition, with the condition's
neurons deactivated (interventions.deactivated, mode `all`) for the whole evaluate call.
What `all` covers follows from how lm-eval runs the model:
- log-likelihood tasks (multiple choice, perplexity) score context and continuation in ONE
  forward pass without a cache, so every token of it is deactivated, the continuation too
  (unlike `reasoning`, which deactivates the prompt only);
- generation tasks go through `model.generate`: every prompt token is deactivated, the
  generated tokens are not (as in `qa`).
lm-eval's own `steered` model is not used: its actions add or clamp one vector per hook and
cannot zero a thousand arbitrary neurons. lm-eval is imported lazily; without it a clear
error names the extra to install.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..conditions import Condition  # noqa: E402
from ..errors import TransferNeuronsError  # noqa: E402
from ..interventions import deactivated  # noqa: E402
from ..models.loading import LoadedModel  # noqa: E402
from .similarity import COLOURS  # noqa: E402

INSTALL_HINT = "pip install 'transfer-neurons[lm-eval]'"
DEACTIVATION_MODE = "all"


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


def wrap_model(lm: LoadedModel, batch_size: int = 8):
    """lm-eval's HFLM around the already loaded model and tokenizer (hooks on the model apply to it)."""
    lm_eval = require_lm_eval()
    return lm_eval.models.huggingface.HFLM(pretrained=lm.model, tokenizer=lm.tokenizer, batch_size=batch_size)


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


def run_lm_eval(
    lm: LoadedModel,
    tasks: Sequence[str],
    conditions: Sequence[Condition],
    batch_size: int = 8,
    limit: float | None = None,
    include_path: str | None = None,
    num_fewshot: int | None = None,
    bootstrap_iters: int = 1000,
    include_defaults: bool = True,
) -> list[dict]:
    """Evaluate the tasks under each condition (deactivation mode `all` for the whole call): table rows."""
    lm_eval = require_lm_eval()
    if not tasks:
        raise TransferNeuronsError("name at least one lm-eval task")
    hflm, manager = wrap_model(lm, batch_size), task_manager(include_path, include_defaults)
    unknown = [t for t in tasks if not manager.match_tasks([t]) and not Path(t).is_file()]
    if unknown:
        where = f" (searched also {include_path})" if include_path else ""
        raise TransferNeuronsError(f"lm-eval knows no task {', '.join(unknown)}{where}; its CLI lists the known tasks")
    rows = []
    for condition in conditions:
        with deactivated(lm, condition.neurons, DEACTIVATION_MODE) if condition.neurons is not None else nullcontext():
            results = lm_eval.simple_evaluate(
                model=hflm, tasks=list(tasks), task_manager=manager, limit=limit, num_fewshot=num_fewshot,
                log_samples=False, bootstrap_iters=bootstrap_iters,
            )
        rows += result_rows(results, condition)
    return rows


def plot_lm_eval(rows: Sequence[dict], model_name: str):
    """One panel per (task, metric): each condition's value (seeds averaged) with stderr bars and seed dots."""
    panels = list(dict.fromkeys((r["task"], r["metric"], r["filter"]) for r in rows))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.2), squeeze=False)
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
