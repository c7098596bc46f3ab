"""`transfer-neurons run`: the whole study, cached and resumable, ending in report.html and results.json."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..distributed import init_from_env, is_main
from ..errors import TransferNeuronsError
from ..log import VERBOSE
from ..models.loading import DTYPES, EMBEDDED
from ..preflight import check_study
from ..protocols import NAMES as PROTOCOL_NAMES
from ..study import ANALYSES, read_config_file, resolve_config, run_study, summary_table
from .common import batch_size_arg, device_arg


@contextmanager
def flags_for(overrides: dict[str, object]) -> Iterator[None]:
    """An error about a config key the command line set names its flag: `--langs: ...`, not `config.langs: ...`."""
    try:
        yield
    except TransferNeuronsError as err:
        key = re.match(r"config\.(\w+):", str(err))
        if key is None or overrides.get(key[1]) is None:
            raise
        flag = "--" + key[1].replace("_", "-")
        raise TransferNeuronsError(flag + str(err)[key.end() - 1:]) from None


def run(args: argparse.Namespace) -> int:
    init_from_env()  # under torchrun: join the process group before anything prints
    file_options = read_config_file(args.config) if args.config else {}
    overrides = {
        "model": args.model, "revision": args.revision, "adapter": args.adapter,
        "trust_remote_code": args.trust_remote_code or None, "device": args.device, "dtype": args.dtype,
        "batch_size": args.batch_size,
        "langs": args.langs, "stages": args.stages, "protocol": args.protocol,
        "figure_format": args.figure_format,
    }
    out = Path(args.out)
    with flags_for(overrides):
        cfg = resolve_config(file_options, quick=args.quick, overrides=overrides)
        check_study(cfg, out)
    if is_main():
        print(f"study of {cfg['model']} on {', '.join(cfg['langs'])} (hub {cfg['hub_lang']})"
              f"{' [quick]' if cfg['quick'] else ''} -> {out}", flush=True)
    result = run_study(cfg, out, verbose=args.verbosity == VERBOSE)
    if not is_main():  # under torchrun, rank 0 reports
        return 1 if result.failed else 0
    print("\n" + summary_table(result))
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    print("\nclaims:")
    for claim in results["claims"]:
        print(f"  {claim['number']}. {claim['claim']}: {claim['status']}")
    print(f"\nwrote {out / 'report.html'}, {out / 'results.json'} and {out / 'config.yaml'}")
    if result.failed:
        print(f"{len(result.failed)} stage(s) did not finish; tracebacks in {out / 'errors'}; rerun to retry them")
    return 1 if result.failed else 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "run", help="the whole study in one command, cached and resumable, with report.html",
        description="Detect Type-1 and Type-2 transfer neurons for each language and run every analysis with its "
        "controls; each stage is cached under --out by a key of model, data and options, so a rerun reuses "
        "finished stages and an interrupted run resumes. Ends with report.html, results.json and config.yaml.")
    parser.add_argument("--config", help="a YAML (or TOML) study config; the effective one is saved as OUT/config.yaml")
    parser.add_argument("--quick", action="store_true", help="small sizes (2 languages, few sentences, 2 seeds): minutes on a CPU")
    parser.add_argument("--model", default=None, help=f"model to study (default: config, else {EMBEDDED})")
    parser.add_argument("--revision", default=None, help="hub ids: branch, tag or commit (its commit enters every cache key)")
    parser.add_argument("--trust-remote-code", action="store_true", help="run the model repository's own code (off by default)")
    parser.add_argument("--adapter", default=None, metavar="FILE", help="module paths of an architecture without a built-in adapter")
    parser.add_argument("--device", default=None, type=device_arg, help="cpu (default), cuda, cuda:N or auto")
    parser.add_argument("--dtype", default=None, choices=tuple(DTYPES), help="weights dtype (default float32 on CPU)")
    parser.add_argument("--batch-size", type=batch_size_arg, default=None,
                        help="sentences per forward pass, or auto: the largest that fits (default: auto on a GPU, 64 on CPU)")
    parser.add_argument("--protocol", default=None, choices=PROTOCOL_NAMES,
                        help="paper: the paper's QA prompt (question + answer cue), 10 new tokens, F1 subsets, float32 "
                        "weights (default: config, else default)")
    parser.add_argument("--langs", default=None, help="comma-separated L2 codes (default ja,nl,ko,it; quick: ja,ko)")
    parser.add_argument("--stages", default=None, help=f"comma-separated analyses to run (default all: {','.join(ANALYSES)})")
    parser.add_argument("--out", required=True, help="study folder (created; reused stages are kept)")
    parser.set_defaults(func=run)
