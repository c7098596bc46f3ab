"""The stage engine: cached, resumable units of work in a study folder; it knows no analysis.

A stage writes into a temporary folder beside its final one, writes `manifest.json` last and
is renamed into place, so a stage folder is either complete or absent. Its key hashes the
model identity, the identity of the data it reads, the options it reads, the keys of the
stages it depends on and the package version. A stage whose manifest holds the current key
and whose listed files are all there is reused; anything else (no folder, no manifest, another
key, a deleted or truncated file, a leftover temporary folder, a summary that asks to be retried because its
result rests on something missing here) is recomputed, so a killed run resumes where it stopped and a changed
option recomputes only the stages whose key changed. One process at a
time holds a study folder (an OS lock).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .._version import __version__
from ..distributed import agree, failed_ranks, is_main, world_size
from ..errors import ModelLoadError, OutputError, TransferNeuronsError
from ..log import hiding_bars, progress_enabled
from ..models.loaded import LoadedModel
from ..outputs import make_folder, output_error, read_manifest, write_bytes, write_json
from ..states import StateProvider
from .config import ANALYSES, write_config
from .identity import digest

MANIFEST = "manifest.json"  # what outputs.read_manifest reads
PLAN = "plan.json"
"""The stages a run planned, in order, for the report to list those that did not finish."""


@dataclass
class Stage:
    """One cached unit of work: its folder name, what it reads and how to compute it."""

    name: str  # folder under the study folder, e.g. "detect/type1-ja"
    kind: str
    options: dict  # every option the stage reads; part of its key
    data: tuple[str, ...]  # data specs it reads; their checksums are part of its key
    deps: tuple[str, ...]  # stages whose folders it reads; their keys are part of its key
    compute: Callable[[StageContext], dict]  # writes files into ctx.folder, returns the summary record
    steps: int = 1  # progress-bar units


@dataclass
class StageContext:
    """What a stage's compute function gets: its (temporary) folder, the config, the model, its deps."""

    folder: Path
    config: dict
    study: Path
    model: Callable[[], LoadedModel]
    provider: Callable[[], StateProvider]
    bar: Any

    @property
    def lm(self) -> LoadedModel:
        """The study's model, loaded on first use."""
        return self.model()

    @property
    def states(self) -> StateProvider:
        """The study's shared captured states: each (sentences, condition, mode) is run once for all stages."""
        return self.provider()

    def dep(self, name: str) -> Path:
        """The finished folder of a stage this one depends on."""
        return self.study / name

    def step(self, n: int = 1) -> None:
        """Advance the stage's progress bar."""
        self.bar.update(n)



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


def stage_inputs(stage: Stage, model: dict, data: dict[str, str], dep_keys: dict[str, str]) -> dict:
    """Everything a stage's result depends on; its hash is the stage key."""
    return {
        "stage": stage.name, "model": model, "data": {spec: data[spec] for spec in stage.data},
        "options": stage.options, "deps": dep_keys, "version": __version__,
    }


@contextmanager
def _locked(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on the study folder (released by the OS if the process dies); rank 0 alone under
    torchrun, and every rank stops when it cannot."""
    handle, failure = None, None
    if is_main():
        try:
            make_folder(out)
            handle = open(out / ".lock", "w")
        except TransferNeuronsError as err:
            failure = err
        except OSError as err:
            failure = output_error(out / ".lock", "write", err)
        if handle is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                handle = None
                failure = TransferNeuronsError(f"{out}: another `transfer-neurons run` is using this folder")
    message = agree(None if failure is None else str(failure))
    if message is not None:
        raise failure if failure is not None else TransferNeuronsError(message)
    try:
        yield
    finally:
        if handle is not None:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()


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


def _compute(stage: Stage, ctx: StageContext, inputs: dict, key: str, verbose: bool) -> None:
    """Run one stage into a temporary folder, write its manifest last and rename it into place."""
    final = ctx.folder
    if is_main():
        tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
        make_folder(tmp)
    else:  # other ranks compute alongside (their collectives are needed) into a private folder that is thrown away
        tmp = Path(tempfile.mkdtemp(prefix="transfer-neurons-rank"))
    ctx.folder = tmp
    start = time.perf_counter()
    try:
        with nullcontext() if verbose else hiding_bars():  # the analyses' own bars only with --verbose
            summary = stage.compute(ctx)
        sizes = {str(p.relative_to(tmp)): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()}
        write_json(tmp / MANIFEST, {
            "stage": stage.name, "kind": stage.kind, "key": key, "inputs": inputs,
            "seconds": round(time.perf_counter() - start, 3), "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "files": sorted(sizes), "sizes": sizes, "summary": summary,
        })
    except BaseException as err:
        failed_ranks(f"{type(err).__name__}: {err}")
        raise
    else:
        others = failed_ranks(None)
        if others:
            raise TransferNeuronsError("; ".join(f"on torchrun rank {r}: {message}" for r, message in others.items()))
        if is_main():
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
    retry = manifest is not None and bool((manifest.get("summary") or {}).get("retry"))  # e.g. a dataset offline
    if agree(manifest is not None and manifest["key"] == key and not retry):  # rank 0 decides for all
        result.status = "cached"
        ctx.step(stage.steps)
    elif blocked:
        result.status, result.error = "skipped", "a stage it depends on failed"
    else:
        try:
            _compute(stage, ctx, inputs, key, verbose)
            ctx.step(stage.steps - ctx.bar.n)
            if is_main():
                error_log.unlink(missing_ok=True)
        except (OutputError, ModelLoadError):  # a full disk, a read-only folder or a model that does not load
            raise  # stops the study: every later stage would fail the same way
        except Exception as err:  # one failing analysis must not lose the others
            result.status, result.error = "failed", f"{type(err).__name__}: {err}"
            if is_main():
                write_bytes(error_log, traceback.format_exc().encode("utf-8"))
    result.seconds = round(time.perf_counter() - began, 2)
    return result


def execute(
    stages: Sequence[Stage],
    cfg: dict,
    out: Path,
    identity: dict,
    data: dict[str, str],
    model: Callable[[], LoadedModel],
    provider: Callable[[], StateProvider],
    verbose: bool = False,
    stream=None,
    known: Sequence[Stage] = (),
) -> StudyRun:
    """Run (or reuse) each stage in order into `out` under the folder's lock; write plan.json and run.json.

    `identity` names the model and `data` maps each data spec to its checksum: both enter every stage key.
    `known` are the config's other stages, not run now: one whose folder holds a finished result under the key
    it would have now is planned too, so a run of some analyses does not hide the others' current results.
    """
    stream = stream if stream is not None else sys.stderr
    run = StudyRun(out, cfg)
    start = time.perf_counter()
    keys: dict[str, str] = {}
    inputs: dict[str, dict] = {}
    known = [s for s in known if all(spec in data for spec in s.data)]
    for stage in [*stages, *known]:  # a key depends on the config and its dependencies' keys only: all known up front
        inputs[stage.name] = stage_inputs(stage, identity, data, {d: keys.get(d, "missing") for d in stage.deps})
        keys[stage.name] = digest(inputs[stage.name])
    with _locked(out):
        if is_main():
            current = [s for s in known if (read_manifest(out / s.name) or {}).get("key") == keys[s.name]]
            planned = [*stages, *current]
            clean_partial(out)
            kinds = {s.kind for s in planned}  # config.yaml reruns every analysis the report will show
            kept = [kind for kind in ANALYSES if kind in kinds and kind not in cfg["stages"]]
            write_config(out / "config.yaml", {**cfg, "stages": [*cfg["stages"], *kept]})
            write_json(out / PLAN, [{"name": s.name, "kind": s.kind, "deps": list(s.deps), "key": keys[s.name]}
                                    for s in planned])  # the report shows a stage only under its planned key
        status: dict[str, str] = {}
        width = max(len(s.name) for s in stages)
        for number, stage in enumerate(stages, 1):
            bar = tqdm(total=stage.steps, desc=f"[{number:>2}/{len(stages)}] {stage.name:<{width}}", file=stream,
                       disable=not is_main() or not progress_enabled(), leave=True, dynamic_ncols=True, bar_format="{desc} {bar:20} {n_fmt}/{total_fmt} {elapsed}{postfix}")
            blocked = any(status.get(d) in ("failed", "skipped") for d in stage.deps)
            ctx = StageContext(out / stage.name, cfg, out, model, provider, bar)
            result = _run_stage(stage, ctx, inputs[stage.name], keys[stage.name], blocked, verbose)
            status[stage.name] = result.status
            bar.set_postfix_str(result.status if result.error is None else f"{result.status}: {result.error}"[:120])
            bar.close()
            run.stages.append(result)
        run.seconds = round(time.perf_counter() - start, 2)
        if is_main():
            write_json(out / "run.json", {
                "seconds": run.seconds, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "stages": [vars(s) for s in run.stages], "processes": world_size(),
            })
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
