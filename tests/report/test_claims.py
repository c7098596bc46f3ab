"""The claims table decided on constructed statistics: supported (above the floor), not supported (below it),
inconclusive (the interval contains it), incomplete (a language missing), not run."""

import pytest

from transfer_neurons.report.claims import (
    FLOOR, INCOMPLETE, INCONCLUSIVE, NOT_RUN, NOT_SUPPORTED, SUPPORTED, against_controls, decide, evaluate_claims,
    excess_difference, newcombe, share_above_base, wilson,
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


def test_decide_against_the_floor_in_both_directions():
    assert decide(0.03, 0.08) == SUPPORTED
    assert decide(0.001, 0.004) == NOT_SUPPORTED  # significant but too small to matter
    assert decide(-0.05, -0.01) == NOT_SUPPORTED  # the other way
    assert decide(0.01, 0.09) == INCONCLUSIVE  # too wide to decide
    assert decide(-0.08, -0.03, direction=-1) == SUPPORTED and decide(0.03, 0.08, direction=-1) == NOT_SUPPORTED
    assert FLOOR == 0.02


def test_supported_only_when_every_deciding_control_clears_the_floor():
    verdict = against_controls(effects(mm=(0.05, 0.03, 0.08)), +1)
    assert verdict.status == SUPPORTED
    assert [d["control"] for d in verdict.details] == [None, "magnitude-matched", "anti"]  # random does not decide
    crossing = against_controls(effects(mm=(0.03, -0.01, 0.07)), +1)
    assert crossing.status == INCONCLUSIVE and "?" in crossing.statistic
    assert [d["status"] for d in crossing.details] == [SUPPORTED, INCONCLUSIVE, SUPPORTED]
    tiny = against_controls(effects(mm=(0.005, 0.002, 0.008)), +1)  # beats magnitude-matched, but negligibly
    assert tiny.status == NOT_SUPPORTED and "✗" in tiny.statistic


def test_a_smaller_rise_than_the_controls_is_not_a_drop():
    # transfer raised the metric (drop < 0), the controls raised it even more: tmc > 0, yet no drop
    verdict = against_controls(effects(transfer=(-0.09, -0.13, -0.05)), +1)
    assert verdict.status == NOT_SUPPORTED and verdict.statistic.startswith("transfer drop -0.090")
    assert against_controls(effects(transfer=(0.02, -0.01, 0.05)), +1).status == INCONCLUSIVE


def test_magnitude_matched_decides_whenever_it_ran_and_anti_alone_is_not_enough():
    rise = effects(mm=(-0.05, -0.08, -0.03), anti=(-0.1, -0.2, -0.03), transfer=(-0.1, -0.15, -0.05))
    assert against_controls(rise, -1).status == SUPPORTED
    assert against_controls(effects(), -1).status == NOT_SUPPORTED
    only_anti = against_controls(effects(mm=None, random=(0.01, -0.02, 0.04)), +1)  # anti passes, random does not
    assert only_anti.status == INCONCLUSIVE and "no magnitude-matched control ran" in only_anti.statistic
    assert [d["control"] for d in only_anti.details] == [None, "anti", "random"]
    weak = against_controls(effects(mm=None, anti=None), +1)
    assert weak.status == SUPPORTED and "no magnitude-matched" in weak.statistic
    assert against_controls([row("none"), row("transfer")], +1).status == NOT_RUN


def test_wilson_and_newcombe_match_published_values():
    p, low, high = wilson(5, 10)
    assert (p, round(low, 4), round(high, 4)) == (0.5, 0.2366, 0.7634)  # Wilson 1927 / Newcombe 1998 table
    d, low, high = newcombe(48, 80, 56, 70)  # Newcombe (1998) example 1: 56/70 − 48/80
    assert d == pytest.approx(0.2) and round(low, 4) == 0.0524 and round(high, 4) == 0.3339


def test_share_claims_against_base_rates():
    assert share_above_base(60, 100, 0.3).status == SUPPORTED
    assert share_above_base(35, 100, 0.3).status == INCONCLUSIVE  # 35 % with interval reaching below 30 %
    assert share_above_base(3000, 10_000, 0.3).status == NOT_SUPPORTED  # at chance, tightly
    strong = excess_difference({"k": 20, "n": 100, "base": 0.2}, {"k": 70, "n": 100, "base": 0.3})
    assert strong.status == SUPPORTED and strong.details[0]["difference"] == pytest.approx(0.4)
    # a higher raw share that only matches a higher base rate is not more specific
    assert excess_difference({"k": 20, "n": 100, "base": 0.2}, {"k": 50, "n": 100, "base": 0.5}).status == INCONCLUSIVE
    assert excess_difference({"k": 2000, "n": 10_000, "base": 0.2}, {"k": 5000, "n": 10_000, "base": 0.5}).status == NOT_SUPPORTED


def summaries(ko_mm=(0.04, 0.03, 0.07), langs=("ja", "ko")):
    """Constructed stage summaries (only what the claims read)."""
    out = {}
    for lang in langs:
        mm = (0.05, 0.03, 0.08) if lang == "ja" else ko_mm
        sim = effects(mm=mm, random=(0.11, 0.07, 0.15))
        sim[2].update(drop=0.005, drop_low=-0.01, drop_high=0.015)  # random leaves similarity almost unchanged
        out[f"similarity/type1-{lang}"] = {"data": {"mid_layers": [3, 4, 5], "mid_rows": sim}}
        out[f"activations/type1-{lang}"] = {"data": {"mid_layers": [3, 4, 5], "mid_rows": effects(mm=mm)}}
        out[f"alignment/type1-{lang}"] = {"data": {"k": [5, 10], "mid_layers": [3, 4, 5],
                                                   "mid_rows": effects(mm=mm, metric="mknn@5_centred")}}
        out[f"qa/type1-{lang}"] = {"data": {"claim_metric": "f1", "rows": effects(mm=(0.1, -0.05, 0.2), metric="f1")}}
        out[f"reasoning/type1-{lang}"] = {"data": {"rows": effects(mm=(0.1, 0.05, 0.2), metric="acc")}}
    l2 = []
    for lang in langs:
        l2 += [{"lang": lang, **r} for r in effects(mm=(0.1, 0.05, 0.15), metric="own_nearest")]
        l2 += [{"lang": lang, **r} for r in effects(mm=(-0.1, -0.15, -0.05), anti=(-0.2, -0.3, -0.1),
                                                    transfer=(-0.3, -0.4, -0.2), metric="hub_cosine")]
    out["latent_spaces/type2"] = {"data": {"final_layers": [6, 7], "l2_rows": l2}}
    out["specificity"] = {"data": {
        "claim": {lang: {"type1": {"k": 40, "n": 100, "base": 0.2}, "type2": {"k": 70, "n": 100, "base": 0.3}} for lang in langs},
        "lape_overlap": [{"type": t, "lang": lang, "lape_set": lang, "overlap": 30, "transfer": 100, "expected": 5.0}
                         for lang in langs for t in ("type1", "type2")]}}
    return out


def test_evaluate_claims_combines_languages():
    claims = {c.number: c for c in evaluate_claims(summaries(), ["ja", "ko"])}
    assert len(claims) == 10 and all(c.paper for c in claims.values())
    assert claims[1].status == SUPPORTED and "ja:" in claims[1].statistic and "layers 3–5:" in claims[1].statistic
    assert claims[1].units == ["ja", "ko"] and claims[1].missing == []
    assert claims[2].status == SUPPORTED and "layers 6–7:" in claims[2].statistic
    assert claims[3].status == SUPPORTED
    assert claims[4].status == NOT_RUN  # no layers stage
    assert claims[5].status == INCONCLUSIVE  # QA interval vs magnitude-matched contains the floor
    assert claims[6].status == SUPPORTED
    assert claims[7].status == SUPPORTED and "30+30" not in claims[7].statistic and "60/200" in claims[7].statistic
    assert claims[8].status == SUPPORTED and "within ±0.02" in claims[8].statistic
    assert claims[9].status == SUPPORTED and claims[10].status == SUPPORTED
    one_fails = {c.number: c for c in evaluate_claims(summaries(ko_mm=(0.01, 0.002, 0.015)), ["ja", "ko"])}
    assert one_fails[1].status == NOT_SUPPORTED
    only_ja = {c.number: c for c in evaluate_claims(summaries(), ["ja", "nl"])}  # nl did not run
    assert only_ja[1].status == INCOMPLETE and only_ja[1].units == ["ja"] and only_ja[1].missing == ["nl"]
    assert "did not run: nl" in only_ja[1].statistic
    failing_subset = {c.number: c for c in evaluate_claims(summaries(ko_mm=(0.01, 0.002, 0.015)), ["ja", "ko", "nl"])}
    assert failing_subset[1].status == NOT_SUPPORTED  # a language that ran decides against it, missing or not
    assert all(c.status == NOT_RUN for c in evaluate_claims({}, ["ja"]))


def test_latent_claim_needs_both_statistics():
    stages = summaries()
    for r in stages["latent_spaces/type2"]["data"]["l2_rows"]:
        if r["metric"] == "hub_cosine" and r["lang"] == "ko":
            r.update(drop=0.1, drop_low=0.05, drop_high=0.15)  # ko states moved AWAY from English
    claim = {c.number: c for c in evaluate_claims(stages, ["ja", "ko"])}[2]
    assert claim.status == NOT_SUPPORTED and "cosine to hub centroid" in claim.statistic


def test_baseline_claim_needs_random_within_margin_and_a_transfer_effect():
    stages = summaries()
    stages["similarity/type1-ko"]["data"]["mid_rows"][2].update(drop=0.05, drop_low=0.03, drop_high=0.07)
    assert evaluate_claims(stages, ["ja", "ko"])[7].status == NOT_SUPPORTED  # random moved ko by 0.05
    flat = summaries()
    for lang in ("ja", "ko"):
        flat[f"similarity/type1-{lang}"]["data"]["mid_rows"][1].update(drop=0.001, drop_low=-0.002, drop_high=0.004)
    assert evaluate_claims(flat, ["ja", "ko"])[7].status == NOT_SUPPORTED  # nothing moves: no contrast


def test_qa_without_a_baseline_says_so():
    rows = effects(mm=(0.0, 0.0, 0.0), anti=(0.0, 0.0, 0.0), metric="f1", transfer=(0.0, 0.0, 0.0))
    rows[0]["mean"] = 0.0  # the model never answers right, even without deactivation
    claim = evaluate_claims({"qa/type1-ko": {"data": {"claim_metric": "f1", "rows": rows}}}, ["ko"])[4]
    assert claim.status == INCONCLUSIVE and "f1 is 0 without deactivation" in claim.statistic  # untestable here


def test_a_predicted_rise_is_recorded_and_shown_as_a_positive_rise():
    rise = effects(mm=(-0.05, -0.08, -0.03), anti=(-0.1, -0.2, -0.03), transfer=(-0.1, -0.15, -0.05))
    verdict = against_controls(rise, -1)
    assert verdict.status == SUPPORTED and verdict.statistic.startswith("transfer rise +0.1")
    own = verdict.details[0]
    assert own["control"] is None and (own["difference"], own["low"], own["high"]) == pytest.approx((0.1, 0.05, 0.15))
    assert all(d["low"] > FLOOR for d in verdict.details)  # supported: every oriented interval above the floor


def test_too_few_items_never_decide():
    rows = effects(mm=(0.05, 0.03, 0.08))  # intervals that support the claim
    verdict = against_controls([{**r, "items": 2} for r in rows], +1)
    assert verdict.status == INCONCLUSIVE and "only 2 items: too few to decide" in verdict.statistic
    assert against_controls([{**r, "items": 10} for r in rows], +1).status == SUPPORTED


def test_a_claim_without_controls_is_not_run_and_says_why():
    stages = summaries()
    for name in list(stages):
        data = stages[name]["data"]
        for key in ("mid_rows", "rows", "l2_rows"):
            if key in data:
                data[key] = [r for r in data[key] if r["condition"] in ("none", "transfer")]
    claims = {c.number: c for c in evaluate_claims(stages, ["ja", "ko"])}
    for number in (1, 2, 5, 6, 9, 10):
        assert claims[number].status == NOT_RUN, number
        assert claims[number].statistic.endswith("no transfer or control condition in this run"), number

