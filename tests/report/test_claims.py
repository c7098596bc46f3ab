"""The claims table decided on constructed statistics: supported, not supported (interval crosses zero), not run."""

import pytest

from transfer_neurons.report.claims import (
    NOT_RUN, NOT_SUPPORTED, SUPPORTED, against_controls, evaluate_claims, excess_difference, newcombe,
    share_above_base, wilson,
)


def row(condition, tmc=None, low=None, high=None, metric="centred", drop=(0.0, 0.0, 0.0)):
    return {"metric": metric, "condition": condition, "layer": "3-5", "pairs": "parallel",
            "drop": drop[0], "drop_low": drop[1], "drop_high": drop[2],
            "transfer_minus_control": tmc, "tmc_low": low, "tmc_high": high}


def effects(mm=(0.05, 0.02, 0.08), anti=(0.10, 0.06, 0.14), random=(0.2, 0.1, 0.3), metric="centred",
            transfer=(0.12, 0.08, 0.16)):
    rows = [row("none", metric=metric), row("transfer", metric=metric, drop=transfer),
            row("random", *random, metric=metric)]
    if mm:
        rows.append(row("magnitude-matched", *mm, metric=metric))
    if anti:
        rows.append(row("anti", *anti, metric=metric))
    return rows


def test_supported_only_when_every_strict_control_excludes_zero():
    verdict = against_controls(effects(), +1)
    assert verdict.status == SUPPORTED
    assert [d["control"] for d in verdict.details] == [None, "magnitude-matched", "anti"]  # random does not decide
    crossing = against_controls(effects(mm=(0.03, -0.01, 0.07)), +1)
    assert crossing.status == NOT_SUPPORTED and "✗" in crossing.statistic
    assert [d["passes"] for d in crossing.details] == [True, False, True]


def test_a_smaller_rise_than_the_controls_is_not_a_drop():
    # transfer raised the metric (drop < 0), the controls raised it even more: tmc > 0, yet no drop
    verdict = against_controls(effects(transfer=(-0.09, -0.13, -0.05)), +1)
    assert verdict.status == NOT_SUPPORTED and verdict.statistic.startswith("transfer drop -0.090")
    assert against_controls(effects(transfer=(0.02, -0.01, 0.05)), +1).status == NOT_SUPPORTED


def test_direction_and_weak_fallback_and_not_run():
    rise = effects(mm=(-0.05, -0.08, -0.02), anti=(-0.1, -0.2, -0.01), transfer=(-0.1, -0.15, -0.05))
    assert against_controls(rise, -1).status == SUPPORTED
    assert against_controls(effects(), -1).status == NOT_SUPPORTED
    weak = against_controls(effects(mm=None, anti=None), +1)
    assert weak.status == SUPPORTED and "weak controls only" in weak.statistic
    assert against_controls([row("none"), row("transfer")], +1).status == NOT_RUN


def test_wilson_and_newcombe_match_published_values():
    p, low, high = wilson(5, 10)
    assert (p, round(low, 4), round(high, 4)) == (0.5, 0.2366, 0.7634)  # Wilson 1927 / Newcombe 1998 table
    d, low, high = newcombe(48, 80, 56, 70)  # Newcombe (1998) example 1: 56/70 − 48/80
    assert d == pytest.approx(0.2) and round(low, 4) == 0.0524 and round(high, 4) == 0.3339


def test_share_claims_against_base_rates():
    assert share_above_base(60, 100, 0.3).status == SUPPORTED
    assert share_above_base(35, 100, 0.3).status == NOT_SUPPORTED  # 35 % with interval reaching below 30 %
    strong = excess_difference({"k": 20, "n": 100, "base": 0.2}, {"k": 70, "n": 100, "base": 0.3})
    assert strong.status == SUPPORTED and strong.details[0]["difference"] == pytest.approx(0.4)
    # a higher raw share that only matches a higher base rate is not more specific
    assert excess_difference({"k": 20, "n": 100, "base": 0.2}, {"k": 50, "n": 100, "base": 0.5}).status == NOT_SUPPORTED


def summaries(ko_mm=(0.04, 0.01, 0.07)):
    """Constructed stage summaries for two languages (only what the claims read)."""
    out = {}
    for lang, mm in (("ja", (0.05, 0.02, 0.08)), ("ko", ko_mm)):
        out[f"similarity/type1-{lang}"] = {"data": {"mid_layers": [3, 4, 5], "mid_rows": effects(mm=mm)}}
        out[f"qa/type1-{lang}"] = {"data": {"claim_metric": "f1", "rows": effects(mm=(0.1, -0.05, 0.2), metric="f1")}}
    out["specificity"] = {"data": {"claim": {lang: {"type1": {"k": 40, "n": 100, "base": 0.2},
                                                    "type2": {"k": 70, "n": 100, "base": 0.3}} for lang in ("ja", "ko")}}}
    return out


def test_evaluate_claims_combines_languages():
    claims = {c.number: c for c in evaluate_claims(summaries(), ["ja", "ko"])}
    assert claims[1].status == SUPPORTED and "ja:" in claims[1].statistic and "layers 3–5:" in claims[1].statistic
    assert claims[2].status == NOT_RUN  # no latent-space stage
    assert claims[3].status == SUPPORTED
    assert claims[4].status == NOT_RUN  # no layers stage
    assert claims[5].status == NOT_SUPPORTED  # QA interval vs magnitude-matched crosses zero
    one_fails = {c.number: c for c in evaluate_claims(summaries(ko_mm=(0.01, -0.02, 0.04)), ["ja", "ko"])}
    assert one_fails[1].status == NOT_SUPPORTED
    only_ja = {c.number: c for c in evaluate_claims(summaries(), ["ja", "nl"])}  # nl did not run: left out
    assert only_ja[1].status == SUPPORTED and "nl" not in only_ja[1].statistic
    assert all(c.status == NOT_RUN for c in evaluate_claims({}, ["ja"]))


def test_qa_without_a_baseline_says_so():
    rows = effects(mm=(0.0, 0.0, 0.0), anti=(0.0, 0.0, 0.0), metric="f1", transfer=(0.0, 0.0, 0.0))
    rows[0]["mean"] = 0.0  # the model never answers right, even without deactivation
    claim = evaluate_claims({"qa/type1-ko": {"data": {"claim_metric": "f1", "rows": rows}}}, ["ko"])[4]
    assert claim.status == NOT_SUPPORTED and "f1 is 0 without deactivation" in claim.statistic
