"""`transfer-neurons alignment`: per-layer mutual kNN and debiased CKA between hub and L2 states (SPEC 6.3)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..analyses.alignment import CKA, alignment_tables, kernel_alignment, knn_metric, metric_title, plot_alignment
from ..errors import TransferNeuronsError
from ..outputs import save_figure, write_csv, write_json
from .common import add_condition_args, add_data_args, add_model_args, conditions_from_args, model_from_args, positive_int
from .similarity import add_comparison_args, check_fits, comparison_pairs, describe_conditions, resolve_mid_layers


def parse_ks(text: str) -> tuple[int, ...]:
    """--k as comma-separated positive integers, e.g. 5,10."""
    try:
        ks = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise TransferNeuronsError(f"--k {text!r}: expected comma-separated integers, e.g. 5,10") from None
    if not ks or min(ks) < 1:
        raise TransferNeuronsError(f"--k {text!r}: expected positive integers, e.g. 5,10")
    return tuple(dict.fromkeys(ks))


def _fmt(value, spec: str = "+.4f") -> str:
    return "-" if value is None else format(value, spec)


def rows_text(rows: list[dict]) -> str:
    """Effects rows of one metric as an aligned text table for the terminal."""
    table = [("condition", "seeds", "mean", "drop", "95% CI", "p vs none", "transfer−control", "95% CI", "seed sd")]
    for r in rows:
        table.append((r["condition"], _fmt(r["seeds"], "d"), _fmt(r["mean"], ".4f"), _fmt(r["drop"]),
                      f"[{_fmt(r['drop_low'])}, {_fmt(r['drop_high'])}]", _fmt(r["p_vs_none"], ".2g"),
                      _fmt(r["transfer_minus_control"]),
                      "-" if r["tmc_low"] is None else f"[{_fmt(r['tmc_low'])}, {_fmt(r['tmc_high'])}]",
                      _fmt(r["seed_drop_std"], ".4f")))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
                     for row in table)


def run(args: argparse.Namespace) -> int:
    ks = parse_ks(args.k)
    lm = model_from_args(args)
    det, conditions = conditions_from_args(args)
    check_fits(det, lm, args.detection)
    pairs = comparison_pairs(args, det)
    mid, rule = resolve_mid_layers(args, lm, det)
    al = kernel_alignment(lm, pairs, conditions, ks, args.n_boot, args.seed, args.batch_size, args.mode)
    per_layer, mid_rows = alignment_tables(al, conditions, mid, args.seed)
    out = Path(args.out)
    meta = {
        "model": lm.name, "hub_lang": pairs.hub_lang, "lang": pairs.lang, "data": pairs.name, "pairs": len(pairs),
        "neurons_from": args.detection, "mode": args.mode, "seed": args.seed, "k": list(ks), "n_boot": args.n_boot,
        "num_layers": lm.view.num_layers, "mid_layers": list(mid), "mid_layers_rule": rule,
        "conditions": describe_conditions(conditions),
        "mutual_knn": "per pair |N_hub(i) ∩ N_L2(i)| / k, k nearest other sentences of the same language by cosine; "
                      "intervals: bootstrap over pairs, p_vs_none: Wilcoxon signed-rank",
        "centring": "mknn_*_centred subtracts one mean per layer over the undeactivated hub and L2 states, shared by all "
                    "conditions; CKA centres by construction",
        "cka": "debiased linear CKA (unbiased HSIC, Song et al. 2012); intervals: paired bootstrap over pairs "
               "(same resamples for all conditions, copies of one pair never count as a pair), p_vs_none: bootstrap",
        "drop": "none − condition (positive: deactivation lowered the alignment)",
    }
    write_csv(out / "alignment.csv", per_layer)
    write_csv(out / "alignment_mid.csv", mid_rows)
    write_json(out / "alignment.json", {**meta, "per_layer": per_layer, "mid": mid_rows})
    metrics = [knn_metric(k, c) for c in ("raw", "centred") for k in ks] + [CKA]
    title = (f"{lm.name} — kernel alignment {pairs.hub_lang}–{pairs.lang} per layer "
             f"({len(pairs)} pairs, {det.neuron_type} neurons of {det.lang} deactivated on the L2 side, mode {args.mode})")
    save_figure(out / "alignment_layers.png", plot_alignment(per_layer, metrics, title, len(pairs), mid))
    save_figure(out / "alignment_drop.png", plot_alignment(per_layer, metrics, title, len(pairs), mid, "drop"))
    print(f"kernel alignment {pairs.hub_lang}–{pairs.lang}, {len(pairs)} pairs; mid layers {mid[0]}-{mid[-1]} ({rule})")
    for metric in metrics:
        rows = [r for r in mid_rows if r["metric"] == metric]
        print(f"\n{metric_title(metric)}, layers {rows[0]['layer']} (drop = none − condition)\n{rows_text(rows)}")
    print(f"\nwrote {out}/alignment.csv, alignment_mid.csv, alignment.json, alignment_layers.png, alignment_drop.png")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("alignment", help="per-layer mutual kNN and debiased CKA between hub and L2 states (SPEC 6.3)",
                                   description="Kernel alignment of the last-token layer outputs h[l] of parallel hub–L2 "
                                   "pairs: mutual k-nearest-neighbour alignment (raw and mean-centred states) and debiased "
                                   "linear CKA, with the L2 side under no, transfer-neuron and control deactivation. "
                                   "Writes alignment.csv/_mid.csv/.json, alignment_layers.png and alignment_drop.png.")
    add_comparison_args(parser)
    parser.add_argument("--k", default="5,10", help="neighbour counts of mutual kNN, comma-separated (default 5,10)")
    parser.add_argument("--n-boot", type=positive_int, default=1000, help="bootstrap resamples of pairs for CKA (default 1000)")
    add_condition_args(parser)
    add_model_args(parser)
    add_data_args(parser)
    parser.set_defaults(func=run)
