"""A study's configuration: every option with its default, the --quick sizes, validation, files.

Options come from defaults, then --quick, then a config file, then command-line flags, and are
validated in one place (`validate_config`), which names the offending key.
"""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Any

import yaml

from .._version import __version__
from ..batching import AUTO, CPU_BATCH, check_batch_size
from ..conditions import DEFAULT_CONTROLS
from ..analyses.lm_eval_bridge import check_task_spec
from ..controls import parse_controls
from ..data.catalog import BUNDLED_KINDS
from ..data.hub import HF_PREFIX, parse_hf_spec
from ..detection import NEURON_TYPES
from ..errors import TransferNeuronsError
from ..interventions import MODES, parse_intervention
from ..models.loading import DEVICES, DTYPES, EMBEDDED
from ..option_files import read_options
from ..outputs import FIGURE_FORMATS, write_bytes
from ..protocols import NAMES as PROTOCOL_NAMES
from ..stats import check_seed
from ..runs.reasoning import DEFAULT_LM_EVAL_TASK

ANALYSES = (
    "similarity", "activations", "alignment", "latent_spaces", "layers",
    "specificity", "qa", "reasoning", "dose", "logit_lens",
)
"""Analysis stage kinds a config may select; detection always runs (everything rests on it)."""

ITEM_ANALYSES = ("qa", "reasoning", "logit_lens")
"""Analyses that run every item through the model (and its 262k-token head on Gemma) once per condition:
their cost grows with the number of conditions, so they take `item_controls`."""

ITEM_CONTROLS = ("random:3", "magnitude-matched", "anti")
"""The item analyses' default controls: the claims are decided against magnitude-matched and anti;
random keeps several seeds (SPEC §5); layer-matched is left out, since magnitude-matched neurons
already match the transfer set's count per layer."""

UNPAIRED_STAGES = ("latent_spaces", "qa", "reasoning", "logit_lens")
"""Analyses of sentences or questions without their translation: intervention `patch` cannot apply to them."""

DEFAULTS: dict[str, Any] = {
    "model": EMBEDDED,
    "revision": None,
    "trust_remote_code": False,
    "adapter": None,
    "device": "cpu",
    "dtype": None,
    "batch_size": None,  # None: "auto" on a GPU, 64 on CPU
    "max_tokens": None,
    "strict_pairs": False,
    "dedupe": False,
    "langs": ["ja", "nl", "ko", "it"],
    "hub_lang": "en",
    "data": {"parallel": "parallel", "qa": "qa", "mc": "mc"},
    # null: every row; the logit lens (a figure of per-layer means, beyond the paper) reads the first 32 test sentences
    "sizes": {"detect": None, "test": None, "specificity": None, "qa": None, "mc": None, "lens": 32},
    "top_n": None,
    "controls": list(DEFAULT_CONTROLS),
    "item_controls": list(ITEM_CONTROLS),  # QA, reasoning and the logit lens (null: controls)
    "seeds": 5,
    "seed": 0,
    "knn_k": [5, 10],
    "dose_counts": [10, 30, 100, 300, 1000],
    "dose_scales": [0.0, 0.5, 1.5, 2.0],
    "dose_seeds": 2,  # random draws per count (null: seeds)
    "intervention": "zero",
    "figure_format": "png",
    "qa_mode": "all",
    "qa_max_new_tokens": None,  # None: the protocol's (12 default, 10 paper)
    "chat_template": False,
    "protocol": "default",
    "lm_eval_task": DEFAULT_LM_EVAL_TASK,  # protocol paper's reasoning task: a name with {lang}, or language -> name
    "lm_eval_include_path": None,  # a folder of extra lm-eval task YAMLs
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
    "item_controls": None,
    "dose_seeds": None,
    "knn_k": [5],
    "dose_counts": [10, 100],
    "dose_scales": [0.0, 2.0],
    "types": {"activations": ["type1"], "alignment": ["type1"], "dose": ["type1"], "logit_lens": ["type2"]},
}
"""--quick: sizes for a whole study on the embedded model in a few minutes on 2 CPU cores."""

_CHOICES = {"protocol": PROTOCOL_NAMES, "figure_format": FIGURE_FORMATS, "dtype": (None, *DTYPES), "qa_mode": ("all", "prompt_last"), "mode": MODES}
_POSITIVE = ("seeds",)
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
    if len(set(cfg["langs"])) != len(cfg["langs"]):
        raise TransferNeuronsError(f"config.langs: {', '.join(cfg['langs'])} names a language twice")
    if cfg["hub_lang"] in cfg["langs"]:
        raise TransferNeuronsError(f"config.langs: the hub language {cfg['hub_lang']!r} cannot also be an L2")
    for stage in cfg["stages"]:
        if stage not in ANALYSES:
            raise TransferNeuronsError(f"config.stages: unknown stage {stage!r} (known: detect, {', '.join(ANALYSES)})")
    if cfg["item_controls"] is not None:
        cfg["item_controls"] = _as_list(cfg["item_controls"], "item_controls")
    for name in ("controls", "item_controls"):
        try:
            parse_controls(cfg[name] or ())
        except TransferNeuronsError as err:
            raise TransferNeuronsError(f"config.{name}: {err}") from None
    for name, allowed in _CHOICES.items():
        if cfg[name] not in allowed:
            raise TransferNeuronsError(f"config.{name}: expected one of {', '.join(map(str, allowed))}, got {cfg[name]!r}")
    for name in _POSITIVE:
        if _positive_or_none(cfg[name], name) is None:
            raise TransferNeuronsError(f"config.{name}: expected a positive integer, got null")
    _positive_or_none(cfg["top_n"], "top_n")
    _positive_or_none(cfg["max_tokens"], "max_tokens")
    if cfg["protocol"] == "paper" and cfg["dtype"] is None:
        cfg["dtype"] = "float32"  # the paper ran its models in float32
    if cfg["batch_size"] is None:
        cfg["batch_size"] = AUTO if str(cfg["device"]).startswith(("cuda", "auto")) else CPU_BATCH
    cfg["batch_size"] = check_batch_size(cfg["batch_size"], "config.batch_size")
    cfg["dose_scales"] = _scales(cfg["dose_scales"])
    if not isinstance(cfg["intervention"], str) or cfg["intervention"].partition(":")[0] not in ("zero", "scale", "mean",
                                                                                                "patch"):
        raise TransferNeuronsError(f"config.intervention: expected zero, scale:F, mean or patch, got {cfg['intervention']!r}")
    unpaired = [stage for stage in UNPAIRED_STAGES if stage in cfg["stages"]]
    if cfg["intervention"] == "patch" and unpaired:
        raise TransferNeuronsError(f"config.intervention: patch takes each L2 sentence's own hub translation, and "
                                   f"{', '.join(unpaired)} read no pairs; leave them out of stages or choose zero, "
                                   "scale:F or mean")
    if cfg["intervention"].startswith("scale"):
        parse_intervention(cfg["intervention"])
    if cfg["device"] not in DEVICES and not re.fullmatch(r"cuda:\d+", str(cfg["device"])):
        raise TransferNeuronsError(f"config.device: expected cpu, cuda, cuda:N or auto, got {cfg['device']!r}")
    for name in ("revision", "adapter"):
        if cfg[name] is not None and (not isinstance(cfg[name], str) or not cfg[name]):
            raise TransferNeuronsError(f"config.{name}: expected a string or null, got {cfg[name]!r}")
    _positive_or_none(cfg["qa_max_new_tokens"], "qa_max_new_tokens")
    _positive_or_none(cfg["dose_seeds"], "dose_seeds")
    cfg["lm_eval_task"] = check_task_spec(cfg["lm_eval_task"], "config.lm_eval_task")
    include = cfg["lm_eval_include_path"]
    if include is not None and (not isinstance(include, str) or not Path(include).is_dir()):
        raise TransferNeuronsError(f"config.lm_eval_include_path: expected a folder of lm-eval task YAMLs or null, "
                                   f"got {include!r}")
    for name in ("strict_pairs", "dedupe", "trust_remote_code", "chat_template"):
        if not isinstance(cfg[name], bool):
            raise TransferNeuronsError(f"config.{name}: expected true or false, got {cfg[name]!r}")
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
    check_seed(cfg["seed"], "config.seed")
    for name, spec in cfg["data"].items():
        if not isinstance(spec, str) or not spec:
            raise TransferNeuronsError(f"config.data.{name}: expected a data spec string, got {spec!r}")
    return absolute_paths(cfg)


def _absolute(spec: str) -> str:
    """An existing local path made absolute; anything else (a hub id, a missing file) as given."""
    path = Path(spec).expanduser()
    return str(path.resolve()) if path.exists() else spec


def absolute_paths(cfg: dict) -> dict:
    """Local model, adapter, include and data paths made absolute, so the saved config.yaml runs from any folder."""
    for name in ("model", "adapter", "lm_eval_include_path"):
        if isinstance(cfg[name], str) and cfg[name] != EMBEDDED:
            cfg[name] = _absolute(cfg[name])
    for name, spec in cfg["data"].items():
        if spec.startswith(HF_PREFIX):
            dataset_id, subset = parse_hf_spec(spec)
            cfg["data"][name] = HF_PREFIX + _absolute(dataset_id) + (f":{subset}" if subset else "")
        elif spec not in BUNDLED_KINDS:
            cfg["data"][name] = _absolute(spec)
    return cfg


def _scales(value: Any) -> list[float]:
    """dose_scales: a list of finite numbers (empty: no scale sweep)."""
    values = value if isinstance(value, list) else [value]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        raise TransferNeuronsError(f"config.dose_scales: expected a list of numbers, e.g. [0, 0.5, 2], got {value!r}")
    return [float(v) for v in values]


def read_config_file(path: str | Path) -> dict:
    """A study config from a YAML (or TOML) file."""
    return read_options(path, "config", "config")


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



def stage_controls(cfg: dict, kind: str) -> list[str]:
    """The controls a kind of stage compares against: item_controls for the item analyses when set, else controls."""
    return cfg["item_controls"] if kind in ITEM_ANALYSES and cfg["item_controls"] is not None else cfg["controls"]


def dose_seeds(cfg: dict) -> int:
    """Random draws per count of the dose stages: dose_seeds when set, else seeds."""
    return cfg["dose_seeds"] or cfg["seeds"]
