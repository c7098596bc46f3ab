"""Which stages a study runs, for which neuron types and languages, and what each stage computes.

Every analysis stage builds its inputs from the config and calls the same `runs` function as
its command; the states they capture come from the study's shared StateProvider.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from ..analyses.dose import dose_counts, max_count
from ..analyses.lm_eval_bridge import installed_lm_eval
from ..analyses.logit_lens import SCRIPT_LANGS, token_sets
from ..analyses.similarity import middle_layers
from ..conditions import Condition, build_conditions, language_conditions
from ..controls import SEEDED_KINDS, parse_controls
from ..data import (
    MCSet, ParallelCorpus, ParallelPairs, QASet, Sentences, load_mc, load_parallel, load_qa, rows_left_out,
)
from ..data.catalog import BUNDLED_KINDS
from ..data.hub import HF_PREFIX
from ..detection import NEURON_TYPES, read_detection
from ..errors import TransferNeuronsError
from ..interventions import applying, intervention_for
from ..preflight import study_languages
from ..runs.comparison import PairInputs, run_alignment, run_similarity
from ..runs.detection import DetectInputs, run_detection
from ..runs.dose import DoseInputs, run_dose
from ..runs.latent import LatentInputs, run_latent
from ..runs.layers import run_layers
from ..runs.logit_lens import LensInputs, run_logit_lens
from ..runs.qa import QuestionInputs, run_open_qa
from ..runs.reasoning import PaperReasoning, run_lm_eval_reasoning, run_multiple_choice
from ..runs.specificity import CLAIM_ETA2, SpecificityInputs, run_specificity
from .config import dose_seeds, stage_controls
from .engine import Stage, StageContext
from .identity import digest


def _split(spec: str, default: str) -> str | None:
    """Bundled sets use their fixed split (detection: train, analyses: test); files use every row."""
    return default if spec in BUNDLED_KINDS else None


def corpus(cfg: dict, split: str) -> ParallelCorpus:
    """The study's parallel corpus in its languages, train rows for detection and test rows for analyses."""
    spec = cfg["data"]["parallel"]
    return load_parallel(spec, study_languages(cfg), split=_split(spec, split), strict_pairs=cfg["strict_pairs"],
                         dedupe=cfg["dedupe"])

def limit_pairs(pairs: ParallelPairs, size: int | None) -> ParallelPairs:
    """The first `size` pairs (all when size is None)."""
    if size is None:
        return pairs
    return ParallelPairs(pairs.name, pairs.hub_lang, pairs.lang, pairs.hub[:size], pairs.l2[:size])


def detection_name(neuron_type: str, lang: str) -> str:
    """Stage (and folder) name of one detection."""
    return f"detect/{neuron_type}-{lang}"


def study_conditions(ctx: StageContext, neuron_type: str, lang: str, kind: str) -> tuple[Any, list[Condition]]:
    """The detection a stage depends on and the conditions none, transfer and the controls of its kind."""
    det = read_detection(ctx.dep(detection_name(neuron_type, lang)))
    return det, build_conditions(det, stage_controls(ctx.config, kind), seeds=ctx.config["seeds"])


def _detect_stage(ctx: StageContext, neuron_type: str, lang: str) -> dict:
    """Centroids and neuron scores of one type and language on the train split; the detection folder."""
    cfg = ctx.config
    train = corpus(cfg, "train")
    size = cfg["sizes"]["detect"]
    sentences = train.sentences(lang)
    sentences = Sentences(sentences.name, lang, sentences.texts[:size])
    source = limit_pairs(train.pairs(cfg["hub_lang"], lang), size) if neuron_type == "type1" else sentences
    inputs = DetectInputs(ctx.lm, neuron_type, lang, sentences, source, top_n=cfg["top_n"],
                          batch_size=cfg["batch_size"], seed=cfg["seed"])
    summary = run_detection(inputs, ctx.folder)
    ctx.step(2)
    return summary.record()


def pair_inputs(ctx: StageContext, neuron_type: str, lang: str) -> PairInputs:
    """The shared states, test pairs, detection, conditions and mid layers of one type and language."""
    cfg = ctx.config
    det, conditions = study_conditions(ctx, neuron_type, lang, "similarity")
    mid = middle_layers(det.scores.shape[0], neuron_type, det.layers)
    rule = "the type2 candidate layers" if neuron_type == "type2" else "the middle third of the layers"
    return PairInputs(ctx.states, ctx.lm.name, test_pairs(cfg, lang), det, conditions, mid, rule, cfg["seed"], cfg["mode"],
                      detection_name(neuron_type, lang))


def _comparison_stage(quantity: str, ctx: StageContext, neuron_type: str, lang: str) -> dict:
    """Hidden-state (h) or activation-pattern (a) similarity of hub–L2 test pairs under each condition."""
    inputs = pair_inputs(ctx, neuron_type, lang)
    with applying(intervention_for(ctx.config["intervention"], inputs.pairs)):
        summary = run_similarity(inputs, ctx.folder, quantity)
    ctx.step()
    return summary.record()


def _specificity_stage(ctx: StageContext) -> dict:
    """η² / ANOVA shares of every detection against the base rate of its layers, Type-1 vs Type-2, LAPE overlaps."""
    cfg = ctx.config
    test = corpus(cfg, "test")
    langs = specificity_langs(cfg)
    texts = {lang: test.sentences(lang).texts[: cfg["sizes"]["specificity"]] for lang in langs}
    names = [detection_name(t, lang) for lang in cfg["langs"] for t in NEURON_TYPES]
    inputs = SpecificityInputs(ctx.lm, texts, {lang: f"{test.name}:{lang}" for lang in langs},
                               [read_detection(ctx.dep(name)) for name in names], names, cfg["batch_size"],
                               protocol=cfg["protocol"])
    summary = run_specificity(inputs, ctx.folder)
    ctx.step()
    return summary.record()


def specificity_langs(cfg: dict) -> list[str]:
    """Languages of the specificity corpus: configured, or the hub and every L2."""
    return list(cfg["specificity_langs"] or [cfg["hub_lang"], *cfg["langs"]])


def _layers_stage(ctx: StageContext) -> dict:
    """Distribution over layers and cross-language overlap of every detection; the all-layer ranking test."""
    names = [detection_name(t, lang) for t in NEURON_TYPES for lang in ctx.config["langs"]]
    return run_layers([read_detection(ctx.dep(name)) for name in names], names, ctx.folder).record()


def _alignment_stage(ctx: StageContext, neuron_type: str, lang: str) -> dict:
    """Mutual kNN and CKA of hub vs L2 states of test pairs under each condition."""
    inputs = pair_inputs(ctx, neuron_type, lang)
    ks = tuple(k for k in ctx.config["knn_k"] if k < len(inputs.pairs))
    if not ks:
        raise TransferNeuronsError(f"knn_k {ctx.config['knn_k']} needs more than {len(inputs.pairs)} test pairs")
    with applying(intervention_for(ctx.config["intervention"], inputs.pairs)):
        summary = run_alignment(inputs, ctx.folder, ks)
    ctx.step()
    return summary.record()


def _latent_stage(ctx: StageContext, neuron_type: str) -> dict:
    """Latent spaces of the hub and every L2, each L2 under its own neurons."""
    cfg = ctx.config
    dets = {lang: read_detection(ctx.dep(detection_name(neuron_type, lang))) for lang in cfg["langs"]}
    conditions, neurons = language_conditions(dets, cfg["controls"], cfg["seeds"])
    test = corpus(cfg, "test")
    texts = {lang: test.sentences(lang).texts[: cfg["sizes"]["test"]] for lang in [cfg["hub_lang"], *cfg["langs"]]}
    first = next(iter(dets.values()))
    final = middle_layers(first.scores.shape[0], "type2", first.layers if neuron_type == "type2" else None)
    inputs = LatentInputs(ctx.states, ctx.lm.name, texts, cfg["hub_lang"], neuron_type, conditions, neurons, final,
                          cfg["seed"], cfg["mode"], data=cfg["data"]["parallel"],
                          detections={lang: detection_name(neuron_type, lang) for lang in dets}, protocol=cfg["protocol"])
    reference = [text for lang in cfg["langs"] for text in texts[lang]]  # mean: over every L2's sentences
    with applying(intervention_for(cfg["intervention"], reference=reference)):
        summary = run_latent(inputs, ctx.folder)
    ctx.step()
    return summary.record()


def question_inputs(ctx: StageContext, kind: str, neuron_type: str, lang: str, items) -> QuestionInputs:
    """The detection, conditions and one language's question set of a QA or reasoning stage."""
    cfg = ctx.config
    det, conditions = study_conditions(ctx, neuron_type, lang, kind)
    return QuestionInputs(ctx.lm, det, conditions, [items], cfg["qa_mode"], cfg["batch_size"], cfg["seed"],
                          cfg["chat_template"], detection_name(neuron_type, lang))


def _question_stage(ctx: StageContext, kind: str, neuron_type: str, lang: str, items, run: Callable) -> dict:
    """Run a QA or reasoning analysis on one language's items; `mean` averages over their questions."""
    inputs = question_inputs(ctx, kind, neuron_type, lang, items)
    with applying(intervention_for(ctx.config["intervention"], reference=[item.question for item in items.items])):
        summary = run(inputs, ctx.folder)
    ctx.step()
    return summary.record()


def _qa_stage(ctx: StageContext, neuron_type: str, lang: str) -> dict:
    """Open QA in one language under deactivation of that language's neurons and the controls."""
    cfg = ctx.config
    qa = load_qa(cfg["data"]["qa"], lang)
    qa = QASet(qa.name, qa.lang, qa.items[: cfg["sizes"]["qa"]])
    return _question_stage(ctx, "qa", neuron_type, lang, qa, lambda inputs, folder: run_open_qa(
        inputs, folder, cfg["protocol"], cfg["qa_max_new_tokens"]))


def paper_reasoning(cfg: dict) -> PaperReasoning:
    """The paper's reasoning protocol as the config sets it: lm-eval task, include path, sizes.mc as lm-eval's limit."""
    return PaperReasoning(cfg["lm_eval_task"], cfg["lm_eval_include_path"], cfg["sizes"]["mc"])


def _reasoning_stage(ctx: StageContext, neuron_type: str, lang: str) -> dict:
    """Reasoning in one language under deactivation: built-in multiple choice, or under protocol paper the lm-eval
    task when it can be built here (else the built-in, and the summary says why)."""
    cfg = ctx.config
    mc = load_mc(cfg["data"]["mc"], lang)
    items = MCSet(mc.name, mc.lang, mc.items[: cfg["sizes"]["mc"]])
    if cfg["protocol"] != "paper":
        return _question_stage(ctx, "reasoning", neuron_type, lang, items, run_multiple_choice)
    paper = paper_reasoning(cfg)
    return _question_stage(ctx, "reasoning", neuron_type, lang, items,
                           lambda inputs, folder: run_lm_eval_reasoning(inputs, folder, paper))


def _dose_stage(ctx: StageContext, neuron_type: str, lang: str) -> dict:
    """Mid-layer similarity drop as more top-ranked neurons are deactivated, and as they are scaled."""
    cfg = ctx.config
    det = read_detection(ctx.dep(detection_name(neuron_type, lang)))
    counts, dropped = dose_counts(cfg["dose_counts"], det)
    if not counts and not cfg["dose_scales"]:
        raise TransferNeuronsError(f"dose_counts {cfg['dose_counts']} all exceed half the candidate neurons "
                                   f"(at most {max_count(det)})")
    pairs = test_pairs(cfg, lang)
    inputs = DoseInputs(ctx.states, ctx.lm.name, pairs, det, counts, cfg["dose_scales"], dose_seeds(cfg),
                        middle_layers(det.scores.shape[0], neuron_type, det.layers), cfg["seed"], dropped,
                        detection_name(neuron_type, lang))
    with applying(intervention_for(cfg["intervention"], pairs)):
        summary = run_dose(inputs, ctx.folder)
    ctx.step()
    return summary.record()


def _logit_lens_stage(ctx: StageContext, neuron_type: str, lang: str) -> dict:
    """Per-layer L2 and English token mass through the model's head, under deactivation."""
    cfg, lm = ctx.config, ctx.lm
    _, conditions = study_conditions(ctx, neuron_type, lang, "logit_lens")
    test = corpus(cfg, "test")
    texts = test.sentences(lang).texts[: cfg["sizes"]["lens"] or cfg["sizes"]["test"]]
    en_texts, l2_texts, vocab = (), (), None
    if lang not in SCRIPT_LANGS:  # Latin-script languages: token sets from the train side, never the lens sentences
        pairs = corpus(cfg, "train").pairs(cfg["hub_lang"], lang)
        en_texts, l2_texts, vocab = pairs.hub, pairs.l2, pairs.name
    inputs = LensInputs(lm, lang, texts, f"{test.name}:{lang}", token_sets(lm, lang, en_texts, l2_texts), conditions,
                        read_detection(ctx.dep(detection_name(neuron_type, lang))), detection_name(neuron_type, lang),
                        vocab, cfg["batch_size"], mode=cfg["mode"], seed=cfg["seed"], states=ctx.states)
    with applying(intervention_for(cfg["intervention"], reference=texts)):
        summary = run_logit_lens(inputs, ctx.folder)
    ctx.step()
    return summary.record()


def test_pairs(cfg: dict, lang: str) -> ParallelPairs:
    """Hub–L2 pairs of the test split for the analyses."""
    return limit_pairs(corpus(cfg, "test").pairs(cfg["hub_lang"], lang), cfg["sizes"]["test"])


def seeds_read(controls: list[str], cfg: dict) -> dict:
    """`seeds` for the keys of stages whose controls take it: a seeded control without its own count."""
    takes = any(spec.kind in SEEDED_KINDS and spec.seeds is None for spec in parse_controls(controls))
    return {"seeds": cfg["seeds"]} if takes else {}


def rows_read(cfg: dict) -> dict:
    """Which parallel rows the study's languages select, for every key beyond the data's checksum: nothing when
    they leave no row out (so adding a language to complete rows keeps the other stages), else the rows they
    leave out; for hf: data, which is not read to plan, the languages themselves."""
    spec = cfg["data"]["parallel"]
    if spec.startswith(HF_PREFIX):
        return {"languages_read": study_languages(cfg)}
    left_out = rows_left_out(spec, study_languages(cfg))
    return {"rows_left_out": digest(left_out)} if left_out else {}


def plan(cfg: dict) -> list[Stage]:
    """Every stage of the study the config asks for, dependencies first."""
    langs, wanted, types = cfg["langs"], set(cfg["stages"]), cfg["types"]
    parallel = (cfg["data"]["parallel"],)
    common = {"hub_lang": cfg["hub_lang"], "seed": cfg["seed"], "strict_pairs": cfg["strict_pairs"],
              "dedupe": study_languages(cfg) if cfg["dedupe"] else False,  # rows repeat over the languages read
              "figure_format": cfg["figure_format"], **rows_read(cfg)}
    conditions = {"controls": cfg["controls"], **seeds_read(cfg["controls"], cfg), "intervention": cfg["intervention"]}
    items = {"controls": stage_controls(cfg, "qa"), **seeds_read(stage_controls(cfg, "qa"), cfg),
             "intervention": cfg["intervention"]}  # QA, reasoning and the logit lens
    test = {**common, "size": cfg["sizes"]["test"], "mode": cfg["mode"]}
    stages = []
    for lang in langs:
        for t in NEURON_TYPES:
            stages.append(Stage(detection_name(t, lang), "detect", {
                **common, "type": t, "lang": lang, "size": cfg["sizes"]["detect"], "top_n": cfg["top_n"],
            }, parallel, (), partial(_detect_stage, neuron_type=t, lang=lang), steps=2))
    every = tuple(detection_name(t, lang) for lang in langs for t in NEURON_TYPES)

    def per_lang(kind: str, compute: Callable, options: dict, data: tuple[str, ...]) -> None:
        for lang in langs:
            for t in types.get(kind, ()):
                stages.append(Stage(f"{kind}/{t}-{lang}", kind, {**options, "type": t, "lang": lang}, data,
                                    (detection_name(t, lang),), partial(compute, neuron_type=t, lang=lang)))

    shared = {  # one (type, language) after another, so their states are captured once for all three
        "similarity": (partial(_comparison_stage, "h"), {**test, **conditions}),
        "activations": (partial(_comparison_stage, "a"), {**test, **conditions}),
        "alignment": (_alignment_stage, {**test, **conditions, "k": cfg["knn_k"]}),
    }
    for lang in langs:
        for t in NEURON_TYPES:
            for kind, (compute, options) in shared.items():
                if kind in wanted and t in types.get(kind, ()):
                    stages.append(Stage(f"{kind}/{t}-{lang}", kind, {**options, "type": t, "lang": lang}, parallel,
                                        (detection_name(t, lang),), partial(compute, neuron_type=t, lang=lang)))
    if "latent_spaces" in wanted:
        for t in types.get("latent_spaces", ()):
            options = {**test, **conditions, "type": t, "langs": langs, "protocol": cfg["protocol"]}
            stages.append(Stage(f"latent_spaces/{t}", "latent_spaces", options, parallel,
                                tuple(detection_name(t, lang) for lang in langs), partial(_latent_stage, neuron_type=t)))
    if "layers" in wanted:
        stages.append(Stage("layers", "layers", {"langs": langs, "figure_format": cfg["figure_format"]}, (), every,
                            _layers_stage))
    if "specificity" in wanted:
        stages.append(Stage("specificity", "specificity", {
            **common, "langs": specificity_langs(cfg), "size": cfg["sizes"]["specificity"], "eta2": CLAIM_ETA2,
            "protocol": cfg["protocol"]}, parallel, every, _specificity_stage))
    question = {"seed": cfg["seed"], **items, "mode": cfg["qa_mode"], "figure_format": cfg["figure_format"],
                "chat_template": cfg["chat_template"]}
    if "qa" in wanted:
        per_lang("qa", _qa_stage, {**question, "size": cfg["sizes"]["qa"], "max_new_tokens": cfg["qa_max_new_tokens"],
                                    "protocol": cfg["protocol"]},
                 (cfg["data"]["qa"],))
    if "reasoning" in wanted:
        paper = {"protocol": "paper", "lm_eval_task": cfg["lm_eval_task"],  # lm-eval installed later: run it then
                 "lm_eval_include_path": cfg["lm_eval_include_path"], "lm_eval": installed_lm_eval(),
                 } if cfg["protocol"] == "paper" else {}
        per_lang("reasoning", _reasoning_stage, {**question, "size": cfg["sizes"]["mc"], **paper}, (cfg["data"]["mc"],))
    if "dose" in wanted:
        per_lang("dose", _dose_stage, {**test, "seeds": dose_seeds(cfg), "counts": cfg["dose_counts"],
                                        "scales": cfg["dose_scales"], "intervention": cfg["intervention"]}, parallel)
    if "logit_lens" in wanted:
        per_lang("logit_lens", _logit_lens_stage, {**test, **items, "lens_size": cfg["sizes"]["lens"]}, parallel)
    return stages
