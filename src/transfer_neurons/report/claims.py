"""The paper's claims, each decided by one statistic of this run against the strictest control (issue 10).

A deactivation claim is decided on the per-item effect of the transfer neurons and on
the paired difference transfer − control, against magnitude-matched and anti neurons
when the run has them (random and layer-matched only when it has neither): "supported"
only when the 95 % intervals of the effect and of every such difference exclude zero
in the predicted direction, in every language; "not supported" when any interval crosses zero
or points the other way; "not run" when the stages it needs did not run. Share claims
are decided on a 95 % interval of a share (Wilson) or a difference of shares (Newcombe)
against the base rate of the same layers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

SUPPORTED, NOT_SUPPORTED, NOT_RUN = "supported", "not supported", "not run"
STRICT_CONTROLS = ("magnitude-matched", "anti")
WEAK_CONTROLS = ("layer-matched", "random")
Z95 = 1.959963984540054
MERGE_METRIC = "separation"  # latent_spaces: centroid distance over within-language spread (scale-free)

CLAIMS = (
    "Type-1 deactivation lowers English–L2 similarity in the middle layers more than controls",
    "Type-2 deactivation merges the language spaces in the final layers",
    "Type-2 neurons are more language-specific than Type-1",
    "Transfer neurons sit in the expected layers",
    "QA drops more for transfer neurons than for controls",
)


@dataclass
class Verdict:
    """Whether one comparison supports a claim, and the numbers that decide it."""

    status: str
    statistic: str
    details: list[dict] = field(default_factory=list)


@dataclass
class Claim:
    """One row of the claims table."""

    number: int
    claim: str
    status: str
    statistic: str
    basis: str
    details: list[dict] = field(default_factory=list)


def _fmt(x: float) -> str:
    return f"{x:+.3f}"


def layers_text(layers: Sequence[int]) -> str:
    """`layer 5` or `layers 3–7`."""
    return f"layer {layers[0]}" if layers[0] == layers[-1] else f"layers {layers[0]}–{layers[-1]}"


def interval_text(mean: float, low: float, high: float) -> str:
    """A signed value with its 95 % interval."""
    return f"{_fmt(mean)} [{_fmt(low)}, {_fmt(high)}]"


def deciding_controls(names: Sequence[str]) -> tuple[list[str], bool]:
    """The controls a claim is decided against: the strict ones present, else the weaker ones; and whether strict."""
    strict = [c for c in STRICT_CONTROLS if c in names]
    if strict:
        return strict, True
    return [c for c in WEAK_CONTROLS if c in names], False


def excludes_zero(low: float, high: float, direction: int) -> bool:
    """Whether an interval lies wholly on the predicted side of zero (+1: above, -1: below)."""
    return low > 0 if direction > 0 else high < 0


def against_controls(rows: Sequence[Mapping], direction: int) -> Verdict:
    """Decide on effects rows (one metric, one layer range): the transfer effect itself and transfer − control,
    for every deciding control, must each exclude zero in the predicted direction.

    rows are analyses.effects.summarise rows: the effect (drop) is none − condition; a control
    row's transfer_minus_control is (drop of transfer) − (drop of control). direction +1: the
    metric must drop under the transfer neurons, and by more than under each control; -1: rise.
    Requiring the transfer effect too keeps "transfer raised it less than the controls did" from
    counting as a drop.
    """
    by_name = {r["condition"]: r for r in rows}
    controls, strict = deciding_controls([n for n in by_name if n not in ("none", "transfer")])
    if "transfer" not in by_name or not controls:
        return Verdict(NOT_RUN, "no transfer or control condition in this run")
    own = by_name["transfer"]
    ok = excludes_zero(own["drop_low"], own["drop_high"], direction)
    details = [{"control": None, "difference": own["drop"], "low": own["drop_low"], "high": own["drop_high"], "passes": ok}]
    texts = [f"transfer drop {interval_text(own['drop'], own['drop_low'], own['drop_high'])}{'' if ok else ' ✗'}"]
    for name in controls:
        r = by_name[name]
        mean, low, high = r["transfer_minus_control"], r["tmc_low"], r["tmc_high"]
        passed = excludes_zero(low, high, direction)
        ok &= passed
        details.append({"control": name, "difference": mean, "low": low, "high": high, "passes": passed})
        texts.append(f"vs {name} {interval_text(mean, low, high)}{'' if passed else ' ✗'}")
    note = "" if strict else " (weak controls only)"
    return Verdict(SUPPORTED if ok else NOT_SUPPORTED, "; ".join(texts) + note, details)


def combine(verdicts: Mapping[str, Verdict]) -> Verdict:
    """All languages (or units) must support the claim; units that did not run are left out."""
    ran = {unit: v for unit, v in verdicts.items() if v.status != NOT_RUN}
    if not ran:
        return Verdict(NOT_RUN, "the stages this claim needs did not run")
    ok = all(v.status == SUPPORTED for v in ran.values())
    details = [{"unit": unit, **asdict(v)} for unit, v in ran.items()]
    text = " | ".join(f"{unit}: {v.statistic}" for unit, v in ran.items())
    return Verdict(SUPPORTED if ok else NOT_SUPPORTED, text, details)


def wilson(k: int, n: int) -> tuple[float, float, float]:
    """Share k/n with its Wilson 95 % interval."""
    if n <= 0:
        return float("nan"), 0.0, 1.0
    p = k / n
    denom = 1 + Z95**2 / n
    centre = (p + Z95**2 / (2 * n)) / denom
    half = Z95 / denom * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n))
    return p, max(0.0, centre - half), min(1.0, centre + half)


def newcombe(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float, float]:
    """Difference of shares k2/n2 − k1/n1 with Newcombe's hybrid-score 95 % interval."""
    p1, l1, u1 = wilson(k1, n1)
    p2, l2, u2 = wilson(k2, n2)
    d = p2 - p1
    return d, d - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2), d + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)


def share_above_base(k: int, n: int, base: float) -> Verdict:
    """Share k/n minus the base rate of the same population, decided on the Wilson interval."""
    p, low, high = wilson(k, n)
    passed = low - base > 0
    text = f"{k}/{n} = {p:.0%} vs base {base:.0%}: excess {interval_text(p - base, low - base, high - base)}"
    return Verdict(SUPPORTED if passed else NOT_SUPPORTED, text + ("" if passed else " ✗"),
                   [{"k": k, "n": n, "share": p, "base": base, "excess": p - base, "low": low - base, "high": high - base}])


def excess_difference(first: Mapping, second: Mapping) -> Verdict:
    """Whether `second`'s share exceeds its base rate by more than `first`'s does (Newcombe interval).

    Each mapping holds k (passing neurons), n (neurons) and base (share passing among all
    neurons of the same layers, a population value).
    """
    d, low, high = newcombe(first["k"], first["n"], second["k"], second["n"])
    shift = second["base"] - first["base"]
    d, low, high = d - shift, low - shift, high - shift
    passed = low > 0
    text = (f"type2 {second['k']}/{second['n']} (base {second['base']:.0%}) vs type1 {first['k']}/{first['n']} "
            f"(base {first['base']:.0%}): excess difference {interval_text(d, low, high)}")
    return Verdict(SUPPORTED if passed else NOT_SUPPORTED, text + ("" if passed else " ✗"),
                   [{"difference": d, "low": low, "high": high, "type1": dict(first), "type2": dict(second)}])


def _data(stages: Mapping[str, dict | None], name: str) -> dict | None:
    """The summary data of a finished stage, or None."""
    summary = stages.get(name)
    return None if summary is None else summary.get("data")


def _rows(data: dict | None, key: str, metric: str, pairs: str | None = "parallel") -> list[dict]:
    """Effects rows of one metric (and pair kind) from a stage's data."""
    if not data:
        return []
    return [r for r in data.get(key, []) if r["metric"] == metric and (pairs is None or r.get("pairs", pairs) == pairs)]


def similarity_claim(stages: Mapping[str, dict | None], langs: Sequence[str], neuron_type: str, direction: int) -> Verdict:
    """Claim 1: centred en–L2 cosine of parallel pairs over the type's summary layers (similarity.middle_layers)."""
    verdicts = {}
    for lang in langs:
        data = _data(stages, f"similarity/{neuron_type}-{lang}")
        rows = _rows(data, "mid_rows", "centred")
        verdicts[lang] = against_controls(rows, direction) if rows else Verdict(NOT_RUN, "not run")
        if rows:
            layers = data.get("mid_layers") or []
            if layers:
                verdicts[lang].statistic = f"{layers_text(layers)}: {verdicts[lang].statistic}"
    return combine(verdicts)


def latent_claim(stages: Mapping[str, dict | None]) -> Verdict:
    """Claim 2: deactivating each L2's Type-2 neurons shrinks the languages' separation in the final layers more than controls."""
    data = _data(stages, "latent_spaces/type2")
    rows = _rows(data, "final_rows", MERGE_METRIC, pairs=None)
    if not rows:
        return Verdict(NOT_RUN, "the stages this claim needs did not run")
    verdict = against_controls(rows, +1)
    layers = data.get("final_layers") or []
    if layers:
        verdict.statistic = f"{MERGE_METRIC}, {layers_text(layers)}: {verdict.statistic}"
    return verdict


def specificity_claim(stages: Mapping[str, dict | None], langs: Sequence[str]) -> Verdict:
    """Claim 3: Type-2's share of language-specific neurons exceeds its base rate by more than Type-1's."""
    verdicts = {}
    for lang in langs:
        data = _data(stages, "specificity") or {}
        shares = (data.get("claim") or {}).get(lang)
        verdicts[lang] = excess_difference(shares["type1"], shares["type2"]) if shares else Verdict(NOT_RUN, "not run")
    return combine(verdicts)


def layers_claim(stages: Mapping[str, dict | None], langs: Sequence[str]) -> Verdict:
    """Claim 4: ranked over all layers, each type's top neurons fall in its expected layers above the base rate."""
    data = _data(stages, "layers") or {}
    found = data.get("claim") or {}
    verdicts = {}
    for lang in langs:
        for t in ("type1", "type2"):
            item = found.get(f"{t}-{lang}")
            verdicts[f"{t} {lang}"] = share_above_base(item["k"], item["n"], item["base"]) if item else Verdict(NOT_RUN, "not run")
    return combine(verdicts)


def qa_claim(stages: Mapping[str, dict | None], langs: Sequence[str]) -> Verdict:
    """Claim 5: the per-question score drop (none − condition) is larger for Type-1 transfer neurons than controls."""
    verdicts = {}
    for lang in langs:
        data = _data(stages, f"qa/type1-{lang}")
        metric = (data or {}).get("claim_metric", "f1")
        rows = _rows(data, "rows", metric, pairs=None)
        verdicts[lang] = against_controls(rows, +1) if rows else Verdict(NOT_RUN, "not run")
        base = [r for r in rows if r["condition"] == "none"]
        if base and base[0].get("mean") == 0:
            verdicts[lang].statistic += f" ({metric} is 0 without deactivation: nothing can drop)"
    return combine(verdicts)


BASES = (
    "centred cosine, parallel test pairs, mean over the middle third of the Type-1 candidate layers: the drop "
    "(none − condition) under transfer neurons and transfer − control of the drops, 95 % bootstrap intervals > 0",
    "language separation (mean distance between language centroids over the within-language spread) averaged "
    "over the Type-2 candidate layers, each L2 under its own Type-2 neurons: the drop (none − condition) under "
    "transfer neurons and transfer − control of the drops, paired-bootstrap 95 % intervals > 0",
    "share of top neurons with η² ≥ 0.1 and p < 0.05, minus the base rate of all neurons of the same layers: "
    "Type-2 excess − Type-1 excess, Newcombe 95 % interval > 0",
    "the top-n neurons by score ranked over ALL layers (detection keeps only candidate layers, which would make "
    "this true by construction): share inside the type's expected layers minus those layers' share of all "
    "neurons, Wilson 95 % interval > 0, for both types and every language",
    "per-question token F1, each language under its Type-1 neurons: the drop (none − condition) under transfer "
    "neurons and transfer − control of the drops, 95 % bootstrap intervals > 0",
)


def evaluate_claims(stages: Mapping[str, dict | None], langs: Sequence[str]) -> list[Claim]:
    """The claims table from finished stages' summaries (None or absent for stages that did not finish)."""
    verdicts = (
        similarity_claim(stages, langs, "type1", +1),
        latent_claim(stages),
        specificity_claim(stages, langs),
        layers_claim(stages, langs),
        qa_claim(stages, langs),
    )
    return [Claim(i + 1, CLAIMS[i], v.status, v.statistic, BASES[i], v.details) for i, v in enumerate(verdicts)]
