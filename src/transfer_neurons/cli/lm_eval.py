"""`transfer-neurons lm-eval`: lm-evaluation-harness tasks under deactivation (optional extra `lm-eval`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..analyses.lm_eval_bridge import DEACTIVATION_MODE, EvalOptions, plot_lm_eval, require_lm_eval, run_lm_eval
from ..errors import TransferNeuronsError
from ..interventions import applying
from ..outputs import save_figure, staged_folder, write_csv, write_json
from ..preflight import check_writable_dir
from .common import (
    add_condition_args, add_model_args, conditions_from_args, intervention_from_args, model_from_args, non_negative_int,
    positive_int,
)
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


def eval_options(args: argparse.Namespace, batch_size: int | str, output_path: Path) -> EvalOptions:
    """The lm-eval pass-through options of the command line; lm-eval's own output goes to output_path."""
    return EvalOptions(
        batch_size=batch_size, max_batch_size=args.max_batch_size, limit=args.limit, num_fewshot=args.num_fewshot,
        log_samples=args.log_samples, apply_chat_template=args.apply_chat_template,
        fewshot_as_multiturn=args.fewshot_as_multiturn, system_instruction=args.system_instruction,
        gen_kwargs=args.gen_kwargs, bootstrap_iters=args.bootstrap_iters,
        output_path=output_path,
    )


def run(args: argparse.Namespace) -> int:
    require_lm_eval()  # these checks come before the model loads
    if args.include_path and not Path(args.include_path).is_dir():
        raise TransferNeuronsError(f"--include-path {args.include_path}: no such folder of task YAMLs")
    if args.output_path:
        check_writable_dir(args.output_path, "--output-path")
    det, conditions = conditions_from_args(args)
    requested = args.batch_size  # "auto" goes to lm-eval, which sizes batches per request length
    lm = model_from_args(args)
    check_fits(det, lm, args.detection)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    out = Path(args.out)
    given = Path(args.output_path) if args.output_path else None
    lm_eval_output = given or out / "lm-eval"
    with staged_folder(out, owner=args.command) as tmp:  # every file (lm-eval's own too, by default) or none
        options = eval_options(args, "auto" if requested == "auto" else args.batch_size, given or tmp / "lm-eval")
        with applying(intervention_from_args(args)):
            rows = run_lm_eval(lm, tasks, conditions, include_path=args.include_path,
                               include_defaults=not args.only_included, options=options)
        write_csv(tmp / "lm_eval.csv", rows)
        write_json(tmp / "lm_eval.json", {
            "model": lm.name, "neurons_from": args.detection, "neuron_type": det.neuron_type, "neuron_lang": det.lang,
            "tasks": tasks, "include_path": args.include_path, "limit": args.limit, "num_fewshot": args.num_fewshot,
            "batch_size": options.batch_size, "log_samples": args.log_samples,
            "apply_chat_template": args.apply_chat_template, "gen_kwargs": args.gen_kwargs,
            "lm_eval_output": str(lm_eval_output), "mode": DEACTIVATION_MODE, "intervention": args.intervention,
            "conditions": describe_conditions(conditions),
            "deactivation": "hooks active for the whole lm-eval call: log-likelihood requests deactivate every token "
                            "(context and continuation, one pass); generation deactivates prompt tokens only",
            "rows": rows,
        })
        save_figure(tmp / "lm_eval.png", plot_lm_eval(rows, lm.name))
    width = max(len(r["task"]) for r in rows) if rows else 4
    print(f"{'task':<{width}}  {'metric':<12}  {'condition':<20}  {'value':>8}  {'stderr':>8}")
    for r in rows:
        stderr = "-" if r["stderr"] is None else f"{r['stderr']:.4f}"
        print(f"{r['task']:<{width}}  {r['metric']:<12}  {r['label']:<20}  {r['value']:8.4f}  {stderr:>8}")
    print(f"\nwrote {out}/lm_eval.csv, lm_eval.json, lm_eval.png; lm-eval's own results per condition in {lm_eval_output}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("lm-eval", help="lm-evaluation-harness tasks under deactivation (extra `lm-eval`)",
                                   description="Wrap the model, with the deactivation hooks installed (mode all, for "
                                   "the whole evaluation), in lm-eval's HFLM and run the named tasks once per "
                                   "condition. Needs: pip install 'transfer-neurons[lm-eval]'. Writes lm_eval.csv "
                                   "(task, metric, filter, condition, seed, value, stderr), lm_eval.json, lm_eval.png, and lm-eval's own "
                                   "results.json (samples_<task>.jsonl with --log-samples) per condition in lm-eval/<condition>/.")
    parser.add_argument("--tasks", required=True, help="comma-separated lm-eval task names, e.g. mmlu_prox_lite_ja")
    parser.add_argument("--include-path", help="a folder of extra task YAMLs (lm-eval's include_path)")
    parser.add_argument("--only-included", action="store_true",
                        help="index only --include-path's tasks, not lm-eval's built-in ones (faster start)")
    parser.add_argument("--limit", type=limit_value, default=None,
                        help="documents per task: a count, or a fraction below 1 (default: all)")
    parser.add_argument("--num-fewshot", type=non_negative_int, default=None,
                        help="few-shot examples (default: the task's own)")
    parser.add_argument("--bootstrap-iters", type=non_negative_int, default=1000,
                        help="bootstrap resamples for metrics without a closed-form stderr (default 1000)")
    parser.add_argument("--output-path",
                        help="where lm-eval's own results.json (and samples) go, one folder per condition "
                        "(default: OUT/lm-eval/<condition>/)")
    parser.add_argument("--log-samples", action="store_true",
                        help="keep every request and response: samples_<task>.jsonl beside each results.json")
    parser.add_argument("--apply-chat-template", nargs="?", const=True, default=False, metavar="NAME",
                        help="format prompts with the tokenizer's chat template (optionally the named one)")
    parser.add_argument("--fewshot-as-multiturn", action=argparse.BooleanOptionalAction, default=None,
                        help="few-shot examples as chat turns (lm-eval's default with a chat template)")
    parser.add_argument("--system-instruction", help="a system message for every prompt")
    parser.add_argument("--gen-kwargs", help="generation settings for generation tasks, e.g. temperature=0,max_gen_toks=64")
    parser.add_argument("--max-batch-size", type=positive_int, default=None,
                        help="upper bound when --batch-size auto lets lm-eval find the batch size (lm-eval's default 64)")
    parser.add_argument("--out", required=True, help="output folder")
    add_condition_args(parser)
    add_model_args(parser)
    parser.set_defaults(func=run)
