"""The whole study as cached, resumable stages: `transfer-neurons run`.

config.py holds the options and their validation, identity.py what names the model and data,
engine.py runs stages into a study folder, and plan.py says which stages run and what each
computes (through the same `runs` functions as the commands).
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..batching import resolve_batch_size
from ..distributed import init_from_env, is_main
from ..errors import ModelLoadError, TransferNeuronsError
from ..models.loaded import LoadedModel
from ..models.loading import load_model
from ..outputs import figure_format
from ..preflight import check_study
from ..report import write_report
from ..states import StateProvider
from ..tokens import limit_tokens
from .config import ANALYSES, DEFAULTS, QUICK, read_config_file, resolve_config, validate_config
from .engine import MANIFEST, PLAN, Stage, StudyRun, execute, read_manifest, summary_table
from .identity import data_identity, model_identity
from .plan import plan

STATE_BYTES = 2 << 30
"""Captured states a study keeps in memory for reuse across its stages (2 GiB)."""

__all__ = [
    "ANALYSES", "DEFAULTS", "MANIFEST", "PLAN", "QUICK", "StudyRun", "plan", "read_config_file", "read_manifest",
    "resolve_config", "run_study", "summary_table", "validate_config",
]


def earlier_stages(cfg: dict, out: Path, running: set[str]) -> list[Stage]:
    """Stages of the full study under this config that this run does not run and an earlier one finished in `out`."""
    return [s for s in plan({**cfg, "stages": list(ANALYSES)})
            if s.name not in running and read_manifest(out / s.name) is not None]


def check_chat_template(cfg: dict, lm: LoadedModel) -> None:
    """chat_template needs a tokenizer that has one: refused when the model loads, before any stage's work."""
    prompts = [kind for kind in ("qa", "reasoning") if kind in cfg["stages"]]
    if cfg["chat_template"] and prompts and not getattr(lm.tokenizer, "chat_template", None):
        raise ModelLoadError(f"config.chat_template: the tokenizer of {lm.name} has no chat template to wrap the "
                             f"{' and '.join(prompts)} prompts in; set chat_template: false", option="chat_template")


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
    cfg = dict(cfg)  # batch_size "auto" becomes a number once the model is loaded; the caller's config keeps it
    init_from_env()  # under torchrun: every rank runs each stage on its share of the sentences; rank 0 writes
    ready: list[LoadedModel] = []

    def model() -> LoadedModel:
        if not ready:
            ready.append(lm if lm is not None else load_model(
                cfg["model"], device=cfg["device"], dtype=cfg["dtype"], revision=cfg["revision"],
                trust_remote_code=cfg["trust_remote_code"], adapter=cfg["adapter"]))
            if cfg["max_tokens"] is not None:
                limit_tokens(ready[0], cfg["max_tokens"])
            check_chat_template(cfg, ready[0])
            cfg["batch_size"] = resolve_batch_size(ready[0], cfg["batch_size"])  # every stage gets a number
        return ready[0]

    shared: list[StateProvider] = []

    def provider() -> StateProvider:
        if not shared:
            want = ("h", "a") if "activations" in cfg["stages"] else ("h",)
            shared.append(StateProvider(model(), cfg["batch_size"], want, STATE_BYTES))
        return shared[0]

    check_study(cfg, out)  # data, device, model and folder, before any work
    stages = plan(cfg)
    data = {spec: data_identity(spec) for spec in sorted({s for stage in stages for s in stage.data})}
    known = earlier_stages(cfg, out, {s.name for s in stages})
    for spec in sorted({s for stage in known for s in stage.data} - set(data)):
        try:
            data[spec] = data_identity(spec)
        except TransferNeuronsError:  # its stages cannot be checked, so they drop out of plan.json
            pass
    with figure_format(cfg["figure_format"]):
        run = execute(stages, cfg, out, model_identity(cfg), data, model, provider, verbose,
                      stream if stream is not None else sys.stderr, known)
    if render and is_main():
        write_report(out)
    return run
