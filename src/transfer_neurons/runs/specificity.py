"""Language specificity of transfer neurons (η², ANOVA, LAPE overlap) against base rates, written to one folder."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..analyses.lape import QUANTILE, TOP_SHARE, lape_from_stats, overlap_row
from ..analyses.specificity import (
    ALPHA, THRESHOLDS, SpecificityProtocol, collect_language_stats, compare_types, eta2_figure, group_anova,
    shares_figure, specificity_protocol, specificity_shares,
)
from ..detection import Detection, versions
from ..models.loaded import LoadedModel
from ..outputs import save_figure, save_npy, write_csv, write_json
from .common import Summary

CLAIM_ETA2 = 0.1
"""η² threshold of the specificity claim (the paper's headline share)."""


@dataclass
class SpecificityInputs:
    """Monolingual sentences per language, the detections to judge, and the thresholds."""

    lm: LoadedModel
    texts: dict[str, Sequence[str]]  # {lang: sentences}
    sources: dict[str, str]  # {lang: data name}
    dets: list[Detection]
    folders: list[str]  # where each detection came from, for the record
    batch_size: int = 16
    thresholds: tuple[float, ...] = THRESHOLDS
    alpha: float = ALPHA
    lape_share: float = TOP_SHARE
    lape_quantile: float = QUANTILE
    protocol: str = "default"  # default | paper: the family label of η² (analyses.specificity.PROTOCOLS)


def claim_rows(shares: list[dict], by_family: bool) -> list[dict]:
    """The share rows the claim reads: each language's family label where the protocol decides on families
    (the paper's) and the language has one, else its one-vs-rest language label."""
    families = {(r["lang"], r["type"]) for r in shares if r["label"].startswith("family:")} if by_family else set()
    return [r for r in shares if r["label"].startswith("family:") == ((r["lang"], r["type"]) in families)]


def run_specificity(inputs: SpecificityInputs, out: Path) -> Summary:
    """Shares of transfer neurons passing η²/ANOVA vs their layers' base rate, Type-1 vs Type-2, LAPE overlaps,
    with the family labels of the inputs' protocol."""
    start = time.perf_counter()
    lm, dets, langs = inputs.lm, inputs.dets, list(inputs.texts)
    protocol = specificity_protocol(inputs.protocol)
    stats = collect_language_stats(lm, inputs.texts, inputs.batch_size, progress=False)
    shares, anovas = specificity_shares(stats, dets, inputs.thresholds, inputs.alpha, protocol)
    comparison = compare_types(shares)
    lape = lape_from_stats(stats, inputs.lape_share, inputs.lape_quantile)
    overlaps = []
    for det in dets:
        base = {"type": det.neuron_type, "lang": det.lang, "layers": f"{min(det.layers)}-{max(det.layers)}"}
        for which, specific in (("any", lape.neurons), (det.lang, lape.of_language(det.lang))):
            overlaps.append(overlap_row(det.neurons, specific, det.layers, lm.view.d_ff, base | {"lape_set": which}))
    write_csv(out / "shares.csv", shares)
    write_csv(out / "type_comparison.csv", comparison)
    write_csv(out / "lape_overlap.csv", overlaps)
    per_lang = [group_anova(stats, (lang,)) for lang in langs]
    save_npy(out / "eta2.npy", np.stack([a.eta2 for a in per_lang]).astype(np.float32))  # [lang, layer, d_ff]
    save_npy(out / "anova_p.npy", np.stack([a.p for a in per_lang]).astype(np.float32))  # [lang, layer, d_ff]
    save_npy(out / "activation_probability.npy", lape.probability.astype(np.float32))
    lape_rows = [{"layer": int(l), "neuron": int(i), "entropy": float(lape.entropy[l, i]),
                  "languages": ",".join(lang for lang, on in zip(langs, row) if on)}
                 for (l, i), row in zip(lape.neurons, lape.assigned)]
    write_csv(out / "lape_neurons.csv", lape_rows, columns=["layer", "neuron", "entropy", "languages"])
    sizes = {lang: len(t) for lang, t in inputs.texts.items()}
    meta = {
        "model": lm.name, "languages": langs, "data": inputs.sources, "sentences": sizes,
        "detections": [{"folder": str(f), "type": d.neuron_type, "lang": d.lang, "top_n": len(d.neurons),
                        "candidate_layers": list(d.layers)} for f, d in zip(inputs.folders, dets)],
        "thresholds": list(inputs.thresholds), "alpha": inputs.alpha,
        "protocol": protocol.name,
        "families": {name: list(group) for name, group in protocol.families.items()},
        "family_versus": "the other families' languages" if protocol.against_families else "every other language",
        "activation": "effective activation at the last real token; LAPE 'active' means a > 0",
        "lape": {"top_share": inputs.lape_share, "quantile": inputs.lape_quantile, "threshold": lape.threshold,
                 "selected": len(lape.neurons),
                 "per_language": {lang: int(lape.assigned[:, j].sum()) for j, lang in enumerate(langs)}},
        "seconds": round(time.perf_counter() - start, 3), "versions": versions(),
    }
    write_json(out / "specificity.json", {"meta": meta, "shares": shares, "type_comparison": comparison,
                                          "lape_overlap": overlaps, "lape_neurons": lape_rows})
    n = sizes[langs[0]]
    paper = "" if protocol.name == "default" else (
        f", protocol {protocol.name}: families " + " vs ".join("+".join(g) for g in protocol.families.values()))
    save_figure(out / "shares.png", shares_figure(
        shares, f"{lm.name}: transfer neurons passing η² (group labels over {','.join(langs)}{paper}), base rate marked"))
    save_figure(out / "eta2_hist.png", eta2_figure(
        dets, anovas, f"{lm.name}: η² of transfer vs all candidate neurons ({n} sentences per language{paper})",
        inputs.thresholds))
    main = claim_rows(shares, protocol.against_families)
    claim: dict = {}
    for r in main:
        if r["eta2_min"] == CLAIM_ETA2:
            claim.setdefault(r["lang"], {})[r["type"]] = {"k": r["k_pass"], "n": r["k"], "base": r["base_rate"],
                                                           "label": r["label"]}
    own = [o for o in overlaps if o["lape_set"] == o["lang"]]
    return Summary(
        title=f"language specificity over {', '.join(langs)} ({n} sentences each{paper})",
        figures=["shares.png", "eta2_hist.png"],
        tables=[
            {"caption": "share of transfer neurons with η² ≥ threshold and ANOVA p < 0.05 (the claim's label: own "
                        "language vs rest, or under the paper's protocol own family vs the other), beside the base "
                        "rate of all neurons of the same layers",
             "columns": ["type", "lang", "label", "η² ≥", "passing", "share", "base rate", "p vs base"],
             "rows": [[r["type"], r["lang"], r["label"], r["eta2_min"], f"{r['k_pass']}/{r['k']}", r["share"],
                       r["base_rate"], r["p_vs_base"]] for r in main]},
            {"caption": "LAPE language-specific neurons among transfer neurons vs chance (own language; 'any': "
                        "specific to some language)",
             "columns": ["type", "lang", "LAPE set", "overlap", "expected", "p"],
             "rows": [[o["type"], o["lang"], o["lape_set"], o["overlap"], o["expected"], o["p_overlap"]] for o in overlaps]},
        ],
        data={"claim": claim, "shares": shares, "type_comparison": comparison, "lape_overlap": overlaps,
              "lape_own": own, "protocol": protocol.name},
        text=_protocol_line(protocol, meta["family_versus"]) + _text(shares, comparison, overlaps),
        files=["specificity.json", "shares.csv", "type_comparison.csv", "lape_overlap.csv", "lape_neurons.csv",
               "eta2.npy", "anova_p.npy", "activation_probability.npy", "shares.png", "eta2_hist.png"],
    )


def _protocol_line(protocol: SpecificityProtocol, versus: str) -> str:
    """A first line naming the family labels when the protocol is not the default; nothing under the default."""
    if protocol.name == "default":
        return ""
    groups = "; ".join(f"{name} {'+'.join(group)}" for name, group in protocol.families.items())
    return f"protocol {protocol.name}: η² family labels {groups}, each vs {versus}\n"


def _text(shares: list[dict], comparison: list[dict], overlaps: list[dict]) -> str:
    """The share table, the type comparison and the LAPE overlaps, as plain text."""
    lines = [f"{'type':6} {'lang':4} {'label':18} {'eta2>=':>6} {'share':>12} {'base rate':>16} {'p vs base':>10}"]
    for r in shares:
        lines.append(f"{r['type']:6} {r['lang']:4} {r['label']:18} {r['eta2_min']:6g} {r['k_pass']:4}/{r['k']:<4} "
                     f"{r['share']:5.2f} {r['base_pass']:6}/{r['base_total']:<6} {r['base_rate']:5.2f} {r['p_vs_base']:10.2g}")
    for r in comparison:
        lines.append(f"type1 vs type2 {r['lang']} {r['label']} eta2>={r['eta2_min']:g}: {r['type1_share']:.2f} vs "
                     f"{r['type2_share']:.2f} (base {r['type1_base_rate']:.2f} vs {r['type2_base_rate']:.2f}), "
                     f"Fisher p={r['p_type1_vs_type2']:.2g}")
    for r in overlaps:
        lines.append(f"LAPE[{r['lape_set']}] ∩ {r['type']} {r['lang']}: {r['overlap']} of {r['transfer']} "
                     f"(chance {r['expected']:.2f}, p={r['p_overlap']:.2g}; {r['lape_in_layers']} LAPE neurons in "
                     f"layers {r['layers']})")
    return "\n".join(lines)
