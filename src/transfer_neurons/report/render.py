"""The study report: results.json (everything) and report.html (one file, figures inline, works offline).

Both are built from a study folder alone: config.yaml, run.json and each finished stage's
manifest (its summary: title, short tables, figure file names, data for the claims).
"""

from __future__ import annotations

import base64
import html
import json
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import TransferNeuronsError
from ..option_files import read_options
from ..outputs import read_manifest, write_bytes, write_json
from .claims import BASELINE_MARGIN, FLOOR, INCOMPLETE, INCONCLUSIVE, NOT_RUN, SUPPORTED, evaluate_claims

SECTIONS = (
    ("claims", "Claims", None),
    ("model", "Model and data", None),
    ("neurons", "Detected neurons", "detect"),
    ("similarity", "Hidden-state similarity (method.md §6.1)", "similarity"),
    ("activations", "Activation-pattern similarity (method.md §6.2)", "activations"),
    ("alignment", "Mutual k-nearest-neighbour alignment (method.md §6.3)", "alignment"),
    ("latent_spaces", "Language latent spaces (method.md §6.4)", "latent_spaces"),
    ("layers", "Where transfer neurons sit (method.md §6.7)", "layers"),
    ("specificity", "Language specificity (method.md §6.5, §6.6)", "specificity"),
    ("qa", "Question answering (method.md §6.8)", "qa"),
    ("reasoning", "Multiple-choice reasoning (method.md §6.8)", "reasoning"),
    ("dose", "Dose–response", "dose"),
    ("logit_lens", "Logit lens", "logit_lens"),
    ("run", "Run", None),
)
"""(anchor id, heading, stage kind shown) of every report section, in order."""

INTROS = {
    "detect": "Centroids and neuron scores on the train split (method.md §3–4); the top-n candidates of each type and language.",
    "similarity": "Cosine of last-token layer outputs between English and L2 test sentences, L2 side deactivated; "
                  "drop = none − condition, transfer − control with 95 % bootstrap intervals.",
    "activations": "Cosine of the effective activation vectors a[l] between English and L2 test sentences, L2 side deactivated.",
    "alignment": "Mutual k-nearest-neighbour alignment (per pair) and debiased linear CKA (per set) between English and "
                 "L2 states of parallel test pairs, L2 side deactivated.",
    "latent_spaces": "Last-token states of the hub and every L2, each L2 under its own neurons: PCA, centroid cosines, "
                     "variance spectra, and whether the language spaces merge (separation = centroid distance / spread).",
    "layers": "Where the ranked neurons sit, whether the same neurons serve several languages, and a test of the "
              "expected layers that does not hold by construction (ranking over all layers).",
    "specificity": "η² and ANOVA of each neuron's activation against a one-vs-rest language label on monolingual "
                   "test sentences; shares beside the base rate of the same layers; overlap with LAPE neurons.",
    "qa": "Greedy answers to short questions, scored by language-aware token F1 and exact match, under deactivation.",
    "reasoning": "Multiple-choice questions scored by option log-likelihood, under deactivation.",
    "dose": "Mid-layer similarity drop as more top-ranked neurons are deactivated, against random and anti sets of the same size.",
    "logit_lens": "Each layer's last-token state read through the model's head: probability mass on L2 vs English tokens.",
}

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0 auto;max-width:1180px;padding:12px 20px;color:#222}
h1{font-size:22px;margin:6px 0 2px}h2{font-size:18px;border-bottom:1px solid #ccc;padding-bottom:3px;margin-top:28px}
h3{font-size:15px;margin:16px 0 6px}.meta{color:#666;font-size:12px}
table{border-collapse:collapse;margin:6px 0 10px;font-size:12.5px}th,td{border:1px solid #ddd;padding:3px 7px;vertical-align:top;text-align:left}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.supported{background:#dff3df;font-weight:600}.not-supported{background:#f8dede;font-weight:600}.not-run{background:#eee;color:#666}
.inconclusive,.incomplete{background:#fff3cd;font-weight:600}.banner{background:#f6f8fa;border:1px solid #ddd;padding:6px 10px;margin:8px 0}
.failed{color:#a00}.figs img{max-width:100%;border:1px solid #eee;margin:4px 0}.half img{max-width:49%;vertical-align:top}caption{text-align:left;color:#555;font-size:12px;padding:2px 0}
nav a{margin-right:10px;font-size:12px}.stat{font-size:12px}
"""


def read_study(study: str | Path) -> dict:
    """Config, run record and every planned stage (with its manifest if finished) of a study folder.

    Reads only the folder's files (config.yaml, plan.json, run.json, manifests), not the study code.
    """
    study = Path(study)
    if not (study / "config.yaml").is_file() or not (study / "plan.json").is_file():
        raise TransferNeuronsError(f"{study}: not a study folder (no config.yaml and plan.json); "
                                   f"run `transfer-neurons run --out {study}`")
    config = read_options(study / "config.yaml", "study config", "study")
    try:
        planned = json.loads((study / "plan.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise TransferNeuronsError(f"{study / 'plan.json'}: unreadable ({err})") from None
    if not isinstance(config, dict) or not isinstance(planned, list):
        raise TransferNeuronsError(f"{study}: config.yaml or plan.json does not hold what `run` writes")
    try:
        run = json.loads((study / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        run = {"stages": []}
    last = {s["name"]: s for s in run.get("stages", [])}
    stages = {}
    for stage in planned:
        manifest = read_manifest(study / stage["name"])  # None when a result file is gone or cut
        record = last.get(stage["name"], {})
        failed = record.get("status") in ("failed", "skipped")
        why = None
        if manifest is not None and "key" in stage and manifest["key"] != stage["key"]:
            manifest, why = None, "its results are from an earlier config; `transfer-neurons run` computes it again"
        elif manifest is None and record and not failed:
            why = "its result files are gone or changed size; `transfer-neurons run` computes it again"
        stages[stage["name"]] = {
            "kind": stage["kind"],
            "status": record["status"] if failed else (record.get("status") or "finished") if manifest else NOT_RUN,
            "error": record.get("error") if failed else why,
            "seconds": manifest.get("seconds") if manifest else None,
            "key": manifest.get("key") if manifest else None,
            "files": manifest.get("files", []) if manifest else [],
            "summary": manifest.get("summary") if manifest else None,
        }
    return {"config": config, "run": run, "stages": stages}


def collect_results(study: str | Path) -> dict:
    """Everything the study found, for results.json: config, model, stages with their summaries, claims."""
    found = read_study(study)
    summaries = {name: s["summary"] for name, s in found["stages"].items() if s["summary"] is not None}
    claims = evaluate_claims(summaries, found["config"]["langs"])
    return {
        "transfer_neurons": __version__,
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": model_facts(summaries),
        "config": found["config"],
        "run": found["run"],
        "claims": [asdict(c) for c in claims],
        "stages": found["stages"],
    }


def model_facts(summaries: dict[str, dict]) -> dict:
    """Model name and shape, as the detections recorded them."""
    for name, summary in summaries.items():
        if name.startswith("detect/"):
            data = summary["data"]
            return {k: data.get(k) for k in ("model", "num_layers", "d_model", "d_ff", "dtype", "quantisation")}
    return {}


# ------------------------------------------------------------------ HTML pieces


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def cell(value: Any) -> str:
    """One table cell: numbers right-aligned with 3–4 significant digits, intervals as `mean [low, high]`."""
    if isinstance(value, dict) and {"mean", "low", "high"} <= set(value):
        if value["mean"] is None:
            return "<td>–</td>"
        return f'<td class="num">{value["mean"]:+.4f} [{value["low"]:+.4f}, {value["high"]:+.4f}]</td>'
    if isinstance(value, bool) or value is None:
        return f"<td>{'–' if value is None else esc(value)}</td>"
    if isinstance(value, int):
        return f'<td class="num">{value}</td>'
    if isinstance(value, float):
        text = f"{value:.3g}" if abs(value) < 1e-3 and value != 0 else f"{value:.4f}"
        return f'<td class="num">{text}</td>'
    if isinstance(value, (list, tuple)):
        return f"<td>{esc(', '.join(map(str, value)))}</td>"
    return f"<td>{esc(value)}</td>"


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]], caption: str | None = None, cls: str = "") -> str:
    """An HTML table; the header row is left out when every column title is empty."""
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    head = f"<thead><tr>{head}</tr></thead>" if any(columns) else ""
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return f'<table class="{cls}">{cap}{head}<tbody>{body}</tbody></table>'


def image(path: Path, alt: str) -> str:
    """A PNG embedded as a data URI (nothing is fetched when the report opens)."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{data}">'


STATUS_CLASS = {SUPPORTED: "supported", NOT_RUN: "not-run", INCONCLUSIVE: "inconclusive", INCOMPLETE: "incomplete"}


def sample_sizes(stages: dict) -> dict[str, Any]:
    """How many items each kind of stage used (the first finished stage of each kind), for the banner."""
    sizes: dict[str, Any] = {}
    for stage in stages.values():
        data = (stage.get("summary") or {}).get("data") or {}
        kind = stage["kind"]
        if kind == "detect":
            sizes.setdefault("scoring sentences", data.get("num_score_sentences"))
            sizes.setdefault("centroid items", data.get("num_centroid_items"))
            sizes.setdefault("neurons per type", data.get("count"))
        elif kind in ("similarity", "alignment", "activations") and data.get("pairs"):
            sizes.setdefault("test pairs", data["pairs"])
        elif kind == "latent_spaces" and data.get("sentences"):
            sizes.setdefault("latent-space sentences per language", max(data["sentences"].values()))
        elif kind == "qa" and data.get("questions"):
            sizes.setdefault("QA questions", data["questions"])
        elif kind == "reasoning" and data.get("items"):
            sizes.setdefault("reasoning items", data["items"])
    return {k: v for k, v in sizes.items() if v is not None}


def item_controls_note(cfg: dict) -> str:
    """The QA, reasoning and logit-lens controls when they differ from the other analyses' (config item_controls)."""
    chosen = cfg.get("item_controls")  # absent in studies run before the option existed
    return f" (QA, reasoning, logit lens: {esc(', '.join(chosen))})" if chosen and chosen != cfg["controls"] else ""


def banner(results: dict) -> str:
    """What the claims rest on: model, dtype, quantisation, sample sizes, controls, intervention, whether --quick
    ran, and the protocol."""
    cfg, model = results["config"], results["model"]
    sizes = sample_sizes(results["stages"])
    facts = [
        f"model <b>{esc(model.get('model') or cfg['model'])}</b>",
        f"dtype {esc(model.get('dtype') or cfg.get('dtype') or 'default')}",
        f"quantisation {esc(model.get('quantisation') or 'unknown')}",
        f"languages {esc(', '.join(cfg['langs']))} (hub {esc(cfg['hub_lang'])})",
        "sizes: " + (esc("; ".join(f"{k} {v}" for k, v in sizes.items())) or "none finished"),
        f"controls {esc(', '.join(cfg['controls']))}, {cfg['seeds']} seeds" + item_controls_note(cfg),
        f"intervention <b>{esc(cfg.get('intervention', 'zero'))}</b>"
        + (" (not the paper's zeroing: the claims' wording assumes deactivation)"
           if cfg.get("intervention", "zero") != "zero" else ""),
        "<b>--quick</b> (small samples: expect wide intervals)" if cfg.get("quick") else "full sizes (not --quick)",
        f"protocol <b>{esc(cfg.get('protocol', 'default'))}</b>",
    ]
    return f'<div class="banner">{" · ".join(facts)}</div>'


def claims_section(claims: Sequence[dict], results: dict | None = None) -> str:
    rows = []
    for c in claims:
        cls = STATUS_CLASS.get(c["status"], "not-supported")
        units = ", ".join(c.get("units") or []) + (f" (missing: {', '.join(c['missing'])})" if c.get("missing") else "")
        rows.append(
            f"<tr><td class=num>{c['number']}</td><td>{esc(c['claim'])}</td><td class=stat>{esc(c.get('paper', ''))}</td>"
            f"<td class='{cls}'>{esc(c['status'])}</td><td class=stat>{esc(units or '–')}</td>"
            f"<td class=stat>{'<br>'.join(esc(part) for part in c['statistic'].split(' | '))}</td></tr>"
        )
    bases = "".join(f"<li>{esc(c['basis'])}</li>" for c in claims)
    return (
        (banner(results) if results else "")
        + "<table><thead><tr><th>#</th><th>claim (Tezuka &amp; Inoue 2025)</th><th>what the paper reports</th>"
        "<th>this run</th><th>rests on</th><th>deciding statistic (95 % intervals)</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
        "<p class=meta>“transfer drop”: the effect (none − condition) of deactivating the transfer neurons; “vs X”: "
        f"transfer − X of that effect. Every statistic must clear an effect-size floor of {FLOOR:g} in its own units "
        "(cosine, share, accuracy, F1), not only zero (method.md §9.1): “supported” when the whole 95 % interval "
        "lies beyond it; “not supported” when the whole interval lies short of it (absent, reversed or negligible); "
        "“inconclusive” when the interval contains it (too few items to decide); “incomplete” when some asked-for "
        "languages did not run. Deactivation claims are decided against magnitude-matched neurons whenever they ran, "
        f"and anti neurons; claim 8's margin is ±{BASELINE_MARGIN:g}. Statistics, in claim order:</p>"
        f"<ol class=meta>{bases}</ol>"
    )


def model_section(results: dict) -> str:
    cfg, model = results["config"], results["model"]
    rows = [
        ["model", model.get("model") or cfg["model"]],
        ["layers / d_model / d_ff", f"{model.get('num_layers')} / {model.get('d_model')} / {model.get('d_ff')}"],
        ["device, dtype", f"{cfg['device']}, {cfg['dtype'] or 'default'}"],
        ["languages (L2)", ", ".join(cfg["langs"])],
        ["hub (shared-space) language", cfg["hub_lang"]],
        ["data", "; ".join(f"{k}: {v}" for k, v in cfg["data"].items())],
        ["sizes (null: all rows)", "; ".join(f"{k}: {v if v is not None else 'all'}" for k, v in cfg["sizes"].items())],
        ["detection / analyses split", "train / test (bundled sets); every row of files"],
        ["top-n", cfg["top_n"] if cfg["top_n"] is not None else "paper share of candidates"],
        ["controls, seeds", f"{', '.join(cfg['controls'])}; {cfg['seeds']} seeds"],
        ["QA, reasoning, logit lens controls", ", ".join(cfg.get("item_controls") or cfg["controls"])],
        ["dose random draws per count", cfg.get("dose_seeds") or cfg["seeds"]],
        ["seed, k (kNN), QA mode, deactivation mode", f"{cfg['seed']}, {cfg['knn_k']}, {cfg['qa_mode']}, {cfg['mode']}"],
        ["quick", cfg["quick"]],
        ["transfer-neurons", results["transfer_neurons"]],
    ]
    return table(["", ""], rows) + "<p class=meta>The full effective config is config.yaml beside this report; " \
        "<code>transfer-neurons run --config config.yaml --out DIR</code> reproduces the study.</p>"


def neurons_table(stages: dict) -> str:
    rows = []
    for name, stage in stages.items():
        if stage["kind"] != "detect" or not stage["summary"]:
            continue
        d = stage["summary"]["data"]
        busiest = sorted(d["per_layer"].items(), key=lambda kv: -kv[1])[:3]
        rows.append([
            stage["summary"]["type"], stage["summary"]["lang"], d["count"],
            f"{d['candidate_layers'][0]}–{d['candidate_layers'][-1]}",
            ", ".join(f"L{l}: {n}" for l, n in busiest),
            ", ".join(f"L{t['layer']}/{t['neuron']} ({t['score']:+.3g})" for t in d["top"][:5]),
            d["magnitude_ratio"], d["num_score_sentences"],
        ])
    return table(["type", "lang", "count", "candidate layers", "most neurons in", "top neurons (score)",
                  "|a|·‖v‖ vs candidates", "scoring sentences"], rows)


def detection_figures(study: Path, stages: dict) -> str:
    """Every detection's layer figure, two a row, and a note for detections that did not finish."""
    images, missing = [], []
    for name, stage in stages.items():
        figures = (stage["summary"] or {}).get("figures", [])
        images += [image(study / name / f, f"{name}/{f}") for f in figures if (study / name / f).is_file()]
        if stage["summary"] is None:
            missing.append(f"{name}: {stage['status']}" + (f" ({stage['error']})" if stage.get("error") else ""))
    notes = "".join(f'<p class="failed">{esc(m)}</p>' for m in missing)
    return notes + f'<div class="figs half">{"".join(images)}</div>'


def stage_block(study: Path, name: str, stage: dict) -> str:
    """One stage: its title, short tables and figures, or why it has none."""
    summary = stage["summary"]
    if summary is None:
        note = stage["status"] + (f": {stage['error']}" if stage.get("error") else "")
        return f'<h3>{esc(name)}</h3><p class="{"failed" if stage["status"] in ("failed", "skipped") else "meta"}">{esc(note)}</p>'
    parts = [f"<h3>{esc(summary.get('title', name))}</h3>"]
    if summary.get("text"):
        parts.append(f"<p>{esc(summary['text'])}</p>")
    for t in summary.get("tables", []):
        parts.append(table(t["columns"], t["rows"], t.get("caption")))
    figures = [study / name / f for f in summary.get("figures", []) if (study / name / f).is_file()]
    if figures:
        parts.append('<div class="figs">' + "".join(image(f, f"{name}/{f.name}") for f in figures) + "</div>")
    return "".join(parts)


def run_section(results: dict) -> str:
    stages = results["run"].get("stages", [])
    rows = [[s["name"], s["status"], s["seconds"], s.get("error") or ""] for s in stages]
    total = results["run"].get("seconds")
    return table(["stage", "status", "seconds", "error"], rows, f"last run: {total} s in total") if rows else \
        "<p class=meta>no run record (run.json)</p>"


def render_html(results: dict, study: str | Path) -> str:
    """The whole report as one HTML document."""
    study = Path(study)
    stages = results["stages"]
    model = results["model"].get("model") or results["config"]["model"]
    body = []
    for anchor, heading, kind in SECTIONS:
        if anchor == "claims":
            content = claims_section(results["claims"], results)
        elif anchor == "model":
            content = model_section(results)
        elif anchor == "run":
            content = run_section(results)
        else:
            mine = {n: s for n, s in stages.items() if s["kind"] == kind}
            intro = f"<p>{esc(INTROS[kind])}</p>" if kind in INTROS else ""
            if not mine:
                content = '<p class="not-run">not run (not in this study\'s stages, or not available in this version)</p>'
            elif kind == "detect":
                content = intro + neurons_table(stages) + detection_figures(study, mine)
            else:
                content = intro + "".join(stage_block(study, n, s) for n, s in mine.items())
        body.append(f'<section id="{anchor}"><h2>{esc(heading)}</h2>{content}</section>')
    nav = "".join(f'<a href="#{a}">{esc(h.split(" (")[0])}</a>' for a, h, _ in SECTIONS)
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f"<title>Transfer neurons — {esc(model)}</title><style>{CSS}</style></head><body>"
        f"<h1>Transfer neurons study — {esc(model)}</h1>"
        f"<p class=meta>languages {esc(', '.join(results['config']['langs']))} · hub {esc(results['config']['hub_lang'])} · "
        f"transfer-neurons {esc(results['transfer_neurons'])} · generated {esc(results['generated'])}</p>"
        f"<nav>{nav}</nav>{''.join(body)}</body></html>"
    )


def write_report(study: str | Path) -> tuple[Path, Path]:
    """Write results.json and report.html into a study folder; returns their paths."""
    study = Path(study)
    results = collect_results(study)
    json_path = write_json(study / "results.json", results)
    html_path = write_bytes(study / "report.html", render_html(results, study).encode("utf-8"))
    return html_path, json_path
