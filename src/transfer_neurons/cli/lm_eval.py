"""`transfer-neurons lm-eval`: lm-evaluation-harness tasks under deactivation (optional extra `lm-eval`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..analyses.lm_eval_bridge import DEACTIVATION_MODE, plot_lm_eval, run_lm_eval
from ..outputs import save_figure, write_csv, write_json
from .common import add_condition_args, add_model_args, conditions_from_args, model_from_args
from .similarity import check_fits, describe_conditions


def limit_value(text: str) -> float | int:
    """argparse type for lm-eval's --limit: a count (>= 1) or a fraction of each task (0 < f < 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count or a fraction, got {text!r}") from None
    if value <= 0 or (value >= 1 and not value.is_integer()):
        raise argparse.ArgumentTypeError(f"expected a count >= 1 or a fraction in (0, 1), got {text}")
    return int(value) if value >= 1 else value


def run(args: argparse.Namespace) -> int:
    det, conditions = conditions_from_args(args)
    lm = model_from_args(args)
    check_fits(det, lm, args.detection)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    rows = run_lm_eval(lm, tasks, conditions, args.batch_size, args.limit, args.include_path, args.num_fewshot,
                       args.bootstrap_iters, include_defaults=not args.only_included)
    out = Path(args.out)
    write_csv(out / "lm_eval.csv", rows)
    write_json(out / "lm_eval.json", {
        "model": lm.name, "neurons_from": args.detection, "neuron_type": det.neuron_type, "neuron_lang": det.lang,
        "tasks": tasks, "include_path": args.include_path, "limit": args.limit, "num_fewshot": args.num_fewshot,
        "mode": DEACTIVATION_MODE, "conditions": describe_conditions(conditions),
        "deactivation": "hooks active for the whole lm-eval call: log-likelihood requests deactivate every token "
                        "(context and continuation, one pass); generation deactivates prompt tokens only",
        "rows": rows,
    })
    save_figure(out / "lm_eval.png", plot_lm_eval(rows, lm.name))
    width = max(len(r["task"]) for r in rows) if rows else 4
    print(f"{'task':<{width}}  {'metric':<12}  {'condition':<20}  {'value':>8}  {'stderr':>8}")
    for r in rows:
        stderr = "-" if r["stderr"] is None else f"{r['stderr']:.4f}"
        print(f"{r['task']:<{width}}  {r['metric']:<12}  {r['label']:<20}  {r['value']:8.4f}  {stderr:>8}")
    print(f"\nwrote {out}/lm_eval.csv, lm_eval.json, lm_eval.png")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("lm-eval", help="lm-evaluation-harness tasks under deactivation (extra `lm-eval`)",
                                   description="Wrap the model, with the deactivation hooks installed (mode all, for "
                                   "the whole evaluation), in lm-eval's HFLM and run the named tasks once per "
                                   "condition. Needs: pip install 'transfer-neurons[lm-eval]'. Writes lm_eval.csv "
                                   "(task, metric, filter, condition, seed, value, stderr), lm_eval.json, lm_eval.png.")
    parser.add_argument("--tasks", required=True, help="comma-separated lm-eval task names, e.g. mmlu_prox_lite_ja")
    parser.add_argument("--include-path", help="a folder of extra task YAMLs (lm-eval's include_path)")
    parser.add_argument("--only-included", action="store_true",
                        help="index only --include-path's tasks, not lm-eval's built-in ones (faster start)")
    parser.add_argument("--limit", type=limit_value, default=None,
                        help="documents per task: a count, or a fraction below 1 (default: all)")
    parser.add_argument("--num-fewshot", type=int, default=None, help="few-shot examples (default: the task's own)")
    parser.add_argument("--bootstrap-iters", type=int, default=1000,
                        help="bootstrap resamples for metrics without a closed-form stderr (default 1000)")
    parser.add_argument("--out", required=True, help="output folder")
    add_condition_args(parser)
    add_model_args(parser)
    parser.set_defaults(func=run)
