"""The paper's claims, each decided by one statistic of this run with a 95 % interval (method.md §9).

Every claim's statistic is oriented so that the paper predicts it to be positive, and it
must clear an effect-size floor, not only zero: score-selected neurons always nudge a
state towards the centroid they were selected for, even in a model with random weights,
so an effect that is merely different from zero proves nothing. A criterion is
- "supported" when its whole interval lies above the floor;
- "not supported" when its whole interval lies below the floor (the effect is absent,
  reversed, or too small to matter);
- "inconclusive" when the interval contains the floor (the sample is too small to decide).

A deactivation claim has several criteria per language: the transfer neurons' own effect,
and transfer − control (paired) for every deciding control: magnitude-matched whenever it
ran, and anti; random and layer-matched only when magnitude-matched did not run. A claim
is "supported" only when every criterion in every asked-for language is; "not supported"
as soon as one criterion in one language is; "incomplete" when some asked-for languages
did not run (and none of those that ran decided against it); "not run" when none ran.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, INCOMPLETE, NOT_RUN = (
    "supported", "not supported", "inconclusive", "incomplete", "not run")
STRICT_CONTROLS = ("magnitude-matched", "anti")
WEAK_CONTROLS = ("layer-matched", "random")
Z95 = 1.959963984540054
FLOOR = 0.02
"""Smallest effect a claim counts, in the statistic's own units (method.md §9.1).

Every statistic here is a cosine (range 2), a share, an accuracy, an F1 or a mutual-kNN
overlap (range 1). 0.02 is one percent of a cosine's range and two percentage points of a
share: below it, a change cannot move a retrieval, a nearest centroid or an answer for
more than one item in fifty, whatever the model.
"""
BASELINE_MARGIN = FLOOR
"""Claim 8 ("random neurons leave similarity almost unchanged"): |change| below the floor."""

MIN_ITEMS = 10
"""Fewest items (pairs, sentences, questions) an effect is decided on: a bootstrap of fewer has no trustworthy
interval (one item gives a zero-width one), so it stays inconclusive (method.md §9.2)."""


@dataclass
class Verdict:
    """Whether one comparison supports a claim, and the numbers that decide it."""

    status: str
    statistic: str
    details: list[dict] = field(default_factory=list)
    units: list[str] = field(default_factory=list)  # languages (or type+language) it rests on
    missing: list[str] = field(default_factory=list)  # asked for, but their stages did not finish


@dataclass
class Claim:
    """One row of the claims table."""

    number: int
    claim: str
    status: str
    statistic: str
    basis: str
    paper: str
    units: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    details: list[dict] = field(default_factory=list)


def _fmt(x: float) -> str:
    return f"{x:+.3f}"


def layers_text(layers: Sequence[int]) -> str:
    """`layer 5` or `layers 3–7`."""
    return f"layer {layers[0]}" if layers[0] == layers[-1] else f"layers {layers[0]}–{layers[-1]}"


def interval_text(mean: float, low: float, high: float) -> str:
    """A signed value with its 95 % interval."""
    return f"{_fmt(mean)} [{_fmt(low)}, {_fmt(high)}]"


def decide(low: float, high: float, direction: int = 1, floor: float = FLOOR) -> str:
    """Supported / not supported / inconclusive for an interval against the floor, in the predicted direction.

    direction +1: the statistic must exceed +floor; -1: it must fall below -floor.
    """
    lo, hi = (low, high) if direction > 0 else (-high, -low)
    if lo > floor:
        return SUPPORTED
    if hi < floor:
        return NOT_SUPPORTED
    return INCONCLUSIVE


def worst(statuses: Sequence[str]) -> str:
    """All criteria must pass: any "not supported" decides, then any "inconclusive"."""
    for status in (NOT_SUPPORTED, INCONCLUSIVE):
        if status in statuses:
            return status
    return SUPPORTED


_MARK = {SUPPORTED: "", NOT_SUPPORTED: " ✗", INCONCLUSIVE: " ?"}


def deciding_controls(names: Sequence[str]) -> tuple[list[str], str]:
    """The controls a claim is decided against, and a note when magnitude-matched is missing.

    Anti neurons push the state the other way, so beating them alone is easy; the claim is
    decided against magnitude-matched neurons whenever they ran.
    """
    strict = [c for c in STRICT_CONTROLS if c in names]
    if "magnitude-matched" in names:
        return strict, ""
    weak = [c for c in WEAK_CONTROLS if c in names]
    if not strict and not weak:
        return [], ""
    return strict + weak, " (no magnitude-matched control ran)"


def against_controls(rows: Sequence[Mapping], direction: int, floor: float = FLOOR) -> Verdict:
    """Decide on effects rows (one metric, one layer range): the transfer effect itself and transfer − control,
    for every deciding control, must each clear the floor in the predicted direction.

    rows are analyses.effects.summarise rows: the effect (drop) is none − condition; a control
    row's transfer_minus_control is (drop of transfer) − (drop of control). direction +1: the
    metric must drop under the transfer neurons, and by more than under each control; -1: rise.
    The statistics are shown and recorded oriented (a rise as rise = −drop), so the paper
    predicts each positive. Requiring the transfer effect too keeps "transfer raised it less than
    the controls did" from counting as a drop.
    """
    by_name = {r["condition"]: r for r in rows}
    controls, note = deciding_controls([n for n in by_name if n not in ("none", "transfer")])
    if "transfer" not in by_name or not controls:
        return Verdict(NOT_RUN, "no transfer or control condition in this run")
    own = by_name["transfer"]
    items = own.get("items")
    few = isinstance(items, int) and items < MIN_ITEMS  # a bootstrap of so few items has no trustworthy interval
    if few:
        note += f"; only {items} items: too few to decide (at least {MIN_ITEMS})"
    intervals = {None: (own["drop"], own["drop_low"], own["drop_high"])}
    intervals.update({name: (by_name[name]["transfer_minus_control"], by_name[name]["tmc_low"],
                             by_name[name]["tmc_high"]) for name in controls})
    statuses, details, texts = [], [], []
    for name, (mean, low, high) in intervals.items():
        if direction < 0:
            mean, low, high = -mean, -high, -low
        status = INCONCLUSIVE if few else decide(low, high, +1, floor)
        statuses.append(status)
        details.append({"control": name, "difference": mean, "low": low, "high": high, "status": status})
        label = ("transfer drop" if direction > 0 else "transfer rise") if name is None else f"vs {name}"
        texts.append(f"{label} {interval_text(mean, low, high)}{_MARK[status]}")
    return Verdict(worst(statuses), "; ".join(texts) + note, details)


def combine(verdicts: Mapping[str, Verdict]) -> Verdict:
    """All asked-for units (languages) must support the claim; says which units it rests on and which are missing."""
    ran = {unit: v for unit, v in verdicts.items() if v.status != NOT_RUN}
    missing = [unit for unit, v in verdicts.items() if v.status == NOT_RUN]
    if not ran:
        reasons = {v.statistic for v in verdicts.values() if v.statistic != NOT_RUN}
        why = "; ".join(sorted(reasons)) if reasons else "the stages this claim needs did not run"
        return Verdict(NOT_RUN, why, missing=missing)
    status = worst([v.status for v in ran.values()])
    if missing and status != NOT_SUPPORTED:
        status = INCOMPLETE
    details = [{"unit": unit, **asdict(v)} for unit, v in ran.items()]
    text = " | ".join(f"{unit}: {v.statistic}" for unit, v in ran.items())
    if missing:
        text += f" | did not run: {', '.join(missing)}"
    return Verdict(status, text, details, list(ran), missing)


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


def share_above_base(k: int, n: int, base: float, what: str = "") -> Verdict:
    """Share k/n minus the base rate (chance share) of the same population, decided on the Wilson interval."""
    p, low, high = wilson(k, n)
    status = decide(low - base, high - base)
    text = f"{what}{k}/{n} = {p:.0%} vs chance {base:.1%}: excess {interval_text(p - base, low - base, high - base)}"
    return Verdict(status, text + _MARK[status],
                   [{"k": k, "n": n, "share": p, "base": base, "excess": p - base, "low": low - base, "high": high - base}])


def excess_difference(first: Mapping, second: Mapping) -> Verdict:
    """Whether `second`'s share exceeds its base rate by more than `first`'s does (Newcombe interval).

    Each mapping holds k (passing neurons), n (neurons) and base (share passing among all
    neurons of the same layers, a population value).
    """
    d, low, high = newcombe(first["k"], first["n"], second["k"], second["n"])
    shift = second["base"] - first["base"]
    d, low, high = d - shift, low - shift, high - shift
    status = decide(low, high)
    text = (f"type2 {second['k']}/{second['n']} (base {second['base']:.0%}) vs type1 {first['k']}/{first['n']} "
            f"(base {first['base']:.0%}): excess difference {interval_text(d, low, high)}")
    return Verdict(status, text + _MARK[status],
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


def _with_layers(verdict: Verdict, data: dict, key: str = "mid_layers") -> Verdict:
    """Prefix a verdict's statistic with the layers it averages over."""
    layers = (data or {}).get(key) or []
    if layers:
        verdict.statistic = f"{layers_text(layers)}: {verdict.statistic}"
    return verdict


def mid_layer_claim(stages: Mapping[str, dict | None], langs: Sequence[str], stage: str, metric: str,
                    neuron_type: str = "type1", direction: int = 1) -> Verdict:
    """Claims 1, 9, 10: a metric of hub–L2 test pairs over the type's summary layers drops more than under controls."""
    verdicts = {}
    for lang in langs:
        data = _data(stages, f"{stage}/{neuron_type}-{lang}")
        rows = _rows(data, "mid_rows", metric)
        verdicts[lang] = _with_layers(against_controls(rows, direction), data) if rows else Verdict(NOT_RUN, "not run")
    return combine(verdicts)


def latent_claim(stages: Mapping[str, dict | None], langs: Sequence[str]) -> Verdict:
    """Claim 2, per L2 under its own Type-2 neurons in the final layers: the share of its states nearest its own
    language's centroid falls, and their centred cosine to the hub centroid rises, each more than under controls."""
    data = _data(stages, "latent_spaces/type2")
    verdicts = {}
    for lang in langs:
        rows = [r for r in (data or {}).get("l2_rows", []) if r.get("lang") == lang]
        share = [r for r in rows if r["metric"] == "own_nearest"]
        cosine = [r for r in rows if r["metric"] == "hub_cosine"]
        if not share or not cosine:
            verdicts[lang] = Verdict(NOT_RUN, "not run")
            continue
        a, b = against_controls(share, +1), against_controls(cosine, -1)
        if NOT_RUN in (a.status, b.status):
            verdicts[lang] = Verdict(NOT_RUN, a.statistic if a.status == NOT_RUN else b.statistic)
            continue
        text = f"own-centroid share: {a.statistic}; cosine to hub centroid: {b.statistic}"
        verdicts[lang] = _with_layers(Verdict(worst([a.status, b.status]), text,
                                              [{"metric": "own_nearest", **asdict(a)}, {"metric": "hub_cosine", **asdict(b)}]),
                                      data, "final_layers")
    return combine(verdicts)


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


def question_claim(stages: Mapping[str, dict | None], langs: Sequence[str], kind: str, default_metric: str) -> Verdict:
    """Claims 5 and 6: the per-item score drop (none − condition) is larger for Type-1 transfer neurons than controls."""
    verdicts = {}
    for lang in langs:
        data = _data(stages, f"{kind}/type1-{lang}")
        metric = (data or {}).get("claim_metric", default_metric)
        rows = _rows(data, "rows", metric, pairs=None)
        verdicts[lang] = against_controls(rows, +1) if rows else Verdict(NOT_RUN, "not run")
        base = [r for r in rows if r["condition"] == "none"]
        if base and base[0].get("mean") == 0:  # the model answers nothing right: the claim cannot be tested
            verdicts[lang].statistic += f" ({metric} is 0 without deactivation: nothing can drop)"
            verdicts[lang].status = INCONCLUSIVE
        if rows and (data or {}).get("claim_source"):  # which reasoning protocol ran, and why the built-in did
            verdicts[lang].statistic = f"{data['claim_source']}: {verdicts[lang].statistic}"
    return combine(verdicts)


def lape_claim(stages: Mapping[str, dict | None], langs: Sequence[str]) -> Verdict:
    """Claim 7: the share of a language's transfer neurons (both types) that are its LAPE neurons exceeds chance.

    Chance is the hypergeometric expectation: a random set of the same size from the same
    candidate layers holds LAPE neurons at their share of those layers.
    """
    data = _data(stages, "specificity") or {}
    overlaps = data.get("lape_overlap")
    verdicts = {}
    for lang in langs:
        rows = [o for o in overlaps or [] if o.get("lang") == lang and o.get("lape_set", lang) == lang]
        if not rows:
            verdicts[lang] = Verdict(NOT_RUN, "not run")
            continue
        k, n = sum(o["overlap"] for o in rows), sum(o["transfer"] for o in rows)
        base = sum(o["expected"] for o in rows) / n if n else 0.0
        verdicts[lang] = share_above_base(k, n, base, "LAPE neurons among transfer neurons ")
    return combine(verdicts)


def baseline_claim(stages: Mapping[str, dict | None], langs: Sequence[str]) -> Verdict:
    """Claim 8: random neurons from the same layers change the centred mid-layer similarity by less than the margin.

    The statistic is the random control's drop (averaged over seeds). "Almost unchanged" is a
    contrast with the transfer neurons, so it counts only where the transfer neurons' own drop
    clears the floor: a run in which nothing moves shows no contrast.
    """
    verdicts = {}
    for lang in langs:
        data = _data(stages, f"similarity/type1-{lang}")
        by_name = {r["condition"]: r for r in _rows(data, "mid_rows", "centred")}
        if "random" not in by_name or "transfer" not in by_name:
            verdicts[lang] = Verdict(NOT_RUN, "not run")
            continue
        rnd, own = by_name["random"], by_name["transfer"]
        low, high = rnd["drop_low"], rnd["drop_high"]
        if high < BASELINE_MARGIN and low > -BASELINE_MARGIN:
            status = SUPPORTED
        elif low > BASELINE_MARGIN or high < -BASELINE_MARGIN:
            status = NOT_SUPPORTED
        else:
            status = INCONCLUSIVE
        contrast = decide(own["drop_low"], own["drop_high"])
        text = (f"random drop {interval_text(rnd['drop'], low, high)} within ±{BASELINE_MARGIN:g}{_MARK[status]}; "
                f"transfer drop {interval_text(own['drop'], own['drop_low'], own['drop_high'])}{_MARK[contrast]}")
        verdicts[lang] = _with_layers(Verdict(worst([status, contrast]), text,
                                              [{"random": rnd["drop"], "low": low, "high": high, "status": status,
                                                "transfer": own["drop"], "contrast": contrast}]), data)
    return combine(verdicts)


@dataclass(frozen=True)
class ClaimSpec:
    """A claim's wording, how this run decides it, and what the paper reports for it."""

    claim: str
    basis: str
    paper: str


_EFFECT = (f"the drop (none − condition) under transfer neurons and transfer − control of the drops (paired), "
           f"95 % bootstrap intervals above the floor {FLOOR:g}; controls: magnitude-matched whenever it ran, and anti")

SPECS = (
    ClaimSpec(
        "Type-1 deactivation lowers English–L2 similarity in the middle layers more than controls",
        f"centred cosine of h[l], parallel test pairs, mean over the middle third of the layers: {_EFFECT}",
        "lower: parallel-pair cosine falls in the middle layers under Type-1 deactivation, barely under random "
        "neurons (the deactivation similarity plots of the Type-1 section)"),
    ClaimSpec(
        "Type-2 deactivation leaves L2 states in the shared space instead of their own language's region",
        "per L2 under its own Type-2 neurons, mean over the Type-2 layers: share of its states nearest (centred "
        f"cosine) to its own language's centroid among all languages' centroids must fall, and their centred cosine "
        f"to the English centroid must rise; each: {_EFFECT}. Separation is reported, not decided on",
        "own-space share falls, closeness to English rises: final-layer language clusters collapse towards the "
        "shared space in the PCA plots (Type-2 section)"),
    ClaimSpec(
        "Type-2 neurons are more language-specific than Type-1",
        f"share of top neurons with η² ≥ 0.1 and p < 0.05, minus the base rate of all neurons of the same layers: "
        f"Type-2 excess − Type-1 excess, Newcombe 95 % interval above {FLOOR:g}",
        "higher for Type-2: e.g. about 60 % of Type-2 vs 41 % of Type-1 Japanese neurons at η² ≥ 0.1 on LLaMA3-8B "
        "(the language-specificity figures)"),
    ClaimSpec(
        "Transfer neurons sit in the expected layers",
        "the top-n neurons by score ranked over ALL layers (detection keeps only candidate layers, which would make "
        "this true by construction): share inside the type's expected layers minus those layers' share of all "
        f"neurons, Wilson 95 % interval above {FLOOR:g}, for both types and every language",
        "Type-1 concentrated in early-to-middle, Type-2 in final layers (the layer-distribution figures)"),
    ClaimSpec(
        "QA drops more for transfer neurons than for controls",
        f"per-question token F1, each language under its Type-1 neurons: {_EFFECT}",
        "lower: MKQA F1 falls under Type-1 deactivation, little under random neurons (QA table and scatter plots)"),
    ClaimSpec(
        "Type-1 deactivation lowers reasoning accuracy more than controls",
        f"per-item accuracy, each language under its Type-1 neurons (built-in: 0-shot multiple choice by option "
        f"log-likelihood; protocol paper: lm-eval MMLU-ProX 5-shot generation, exact match of the extracted "
        f"answer, where lm-eval can run it): {_EFFECT}",
        "lower: MMLU-ProX accuracy falls under Type-1 deactivation, little under random neurons (reasoning table)"),
    ClaimSpec(
        "Transfer neurons overlap language-specific (LAPE) neurons more than chance",
        "per language, both types pooled: share of transfer neurons that are that language's LAPE neurons minus the "
        f"hypergeometric chance share (LAPE neurons' share of the same candidate layers), Wilson 95 % interval above {FLOOR:g}",
        "higher than chance: language-specific neurons found by earlier methods are largely transfer neurons "
        "(the overlap analysis with LAPE)"),
    ClaimSpec(
        "Random neurons from the same layers leave similarity almost unchanged",
        f"the random control's drop of the centred mid-layer cosine (claim 1's statistic, mean over seeds): 95 % "
        f"bootstrap interval within ±{BASELINE_MARGIN:g}, counted only where the transfer neurons' own drop clears the floor",
        "almost unchanged: the random-neuron curves stay on the undeactivated ones (the same similarity plots as claim 1)"),
    ClaimSpec(
        "Type-1 deactivation lowers mutual-kNN alignment in the middle layers more than controls",
        f"mutual kNN (smallest k, centred states), parallel test pairs, mean over the middle third of the layers: {_EFFECT}",
        "lower: mutual-kNN alignment of English and L2 falls in the middle layers (the alignment figures)"),
    ClaimSpec(
        "Type-1 deactivation lowers activation-pattern similarity in the middle layers more than controls",
        f"centred cosine of the activations a[l], parallel test pairs, mean over the middle third of the layers: {_EFFECT}",
        "lower: English–L2 activation-pattern similarity falls under Type-1 deactivation (the activation figures)"),
)


def _knn_metric(stages: Mapping[str, dict | None], langs: Sequence[str]) -> str:
    """The mutual-kNN metric decided on: centred states, the smallest k that ran."""
    for lang in langs:
        ks = (_data(stages, f"alignment/type1-{lang}") or {}).get("k")
        if ks:
            return f"mknn@{min(ks)}_centred"
    return "mknn@5_centred"


def evaluate_claims(stages: Mapping[str, dict | None], langs: Sequence[str]) -> list[Claim]:
    """The claims table from finished stages' summaries (None or absent for stages that did not finish)."""
    verdicts = (
        mid_layer_claim(stages, langs, "similarity", "centred"),
        latent_claim(stages, langs),
        specificity_claim(stages, langs),
        layers_claim(stages, langs),
        question_claim(stages, langs, "qa", "f1"),
        question_claim(stages, langs, "reasoning", "acc"),
        lape_claim(stages, langs),
        baseline_claim(stages, langs),
        mid_layer_claim(stages, langs, "alignment", _knn_metric(stages, langs)),
        mid_layer_claim(stages, langs, "activations", "centred"),
    )
    return [Claim(i + 1, spec.claim, v.status, v.statistic, spec.basis, spec.paper, v.units, v.missing, v.details)
            for i, (spec, v) in enumerate(zip(SPECS, verdicts))]
