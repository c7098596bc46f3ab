"""Options and helpers shared by subcommands: model, device, data sources, output folder."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from ..batching import check_batch_size, default_batch_size, resolve_batch_size
from ..conditions import DEFAULT_CONTROLS, Condition, build_conditions
from ..controls import parse_controls
from ..data import ParallelPairs, Sentences, load_parallel, load_sentences
from ..data.catalog import BUNDLED_KINDS
from ..distributed import init_from_env
from ..detection import Detection, check_detection_model, read_detection, read_meta
from ..errors import TransferNeuronsError
from ..interventions import Intervention, intervention_for, parse_intervention
from ..models.loaded import LoadedModel
from ..models.loading import DEVICES, DTYPES, EMBEDDED, load_model
from ..neuron_sets import read_neuron_set, record_meta
from ..outputs import staged_folder
from ..runs.common import Summary
from ..stats import MAX_SEED, check_seed
from ..tokens import limit_tokens

LANG_FIELD = "{lang}"  # in a data spec, replaced by each of --langs (specificity's monolingual files)
DATA_HELP = "a file path (.jsonl/.tsv/.csv/.txt), a bundled set name (see `data list`) or hf:DATASET[:CONFIG]"


def codes(text: str | None) -> list[str]:
    """Comma-separated language codes (--langs) as a list; None or empty gives []."""
    return [code.strip() for code in (text or "").split(",") if code.strip()]


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """--model, --revision, --device, --trust-remote-code, --adapter, --dtype, --batch-size, --max-tokens."""
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model", default=EMBEDDED,
        help="Hugging Face hub id, local model folder, .gguf file, or 'embedded' (Gemma-3-270M; default)",
    )
    group.add_argument("--revision", default=None,
                       help="hub ids only: branch, tag or commit of model and tokenizer (default main); "
                       "the resolved commit is recorded in meta.json")
    group.add_argument("--device", default="cpu", type=device_arg,
                       help="cpu (default), cuda, cuda:N (one GPU), or auto (accelerate device_map over all GPUs)")
    group.add_argument("--trust-remote-code", action="store_true",
                       help="run the model repository's own modelling code (off by default; only for sources you trust)")
    group.add_argument("--adapter", default=None, metavar="FILE",
                       help="YAML/JSON naming the module paths and MLP-output norm of an architecture without a "
                       "built-in adapter (fields of models.adapters.Adapter); checked by reconstruction at load")
    group.add_argument("--dtype", default=None, choices=tuple(DTYPES), help="weights dtype (default float32 on CPU, bfloat16 on GPU)")
    group.add_argument("--batch-size", type=batch_size_arg, default=None,
                       help="sentences per forward pass, or 'auto': the largest batch that fits the GPU "
                       "(default: auto on a GPU, 64 on CPU); detect records the size used in meta.json")
    group.add_argument("--max-tokens", type=positive_int, default=None,
                       help="cut each input to its first N tokens (default and upper bound: the model's context)")


def add_data_args(parser: argparse.ArgumentParser) -> None:
    """--split, --limit, --skip-invalid, --strict-pairs, --dedupe."""
    group = parser.add_argument_group("data")
    group.add_argument(
        "--split", choices=("auto", "train", "test", "all"), default="auto",
        help="rows of the fixed split to use; auto: detection uses 'train' and analyses 'test' of bundled sets, all rows of files",
    )
    group.add_argument("--limit", type=positive_int, default=None, help="use only the first N sentences or pairs")
    group.add_argument("--skip-invalid", action="store_true", help="skip malformed rows with a warning instead of failing")
    group.add_argument("--strict-pairs", action="store_true",
                       help="refuse an English sentence with two different translations (default: keep every pair)")
    group.add_argument("--dedupe", action="store_true",
                       help="use each distinct row once (default: repeated rows count, as in the paper's code)")


def seed_arg(text: str) -> int:
    """argparse type: a seed from 0 to 2**32 - 1 (what numpy, torch and scikit-learn all accept)."""
    try:
        return check_seed(int(text))
    except (ValueError, TransferNeuronsError) as err:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to {MAX_SEED}, got {text!r}") from err


MIN_BOOT = 10
"""Fewest bootstrap resamples a command takes: a percentile interval of fewer is no interval."""


def _int_at_least(text: str, minimum: int, expected: str) -> int:
    """An integer of at least `minimum`, else an argparse error saying what was `expected`."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
    return value


def boot_count(text: str) -> int:
    """argparse type: a number of bootstrap resamples, at least MIN_BOOT."""
    return _int_at_least(text, MIN_BOOT, f"at least {MIN_BOOT} resamples (1000 or more for reported intervals)")


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _int_at_least(text, 0, "an integer >= 0")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _int_at_least(text, 1, "a positive integer")


def device_arg(text: str) -> str:
    """argparse type: cpu, cuda, cuda:N or auto (whether that GPU exists is checked at load)."""
    if text not in DEVICES and not re.fullmatch(r"cuda:\d+", text):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda, cuda:N or auto, got {text!r}")
    return text


def batch_size_arg(text: str) -> int | str:
    """argparse type: a positive integer or 'auto'."""
    try:
        return check_batch_size(text, "value")
    except TransferNeuronsError as err:  # argparse puts the flag first: "argument --batch-size: value must be ..."
        raise argparse.ArgumentTypeError(str(err)) from None


def model_from_args(args: argparse.Namespace) -> LoadedModel:
    """Load the model the options name (joining a torch.distributed group if launched in one).

    Also turns --batch-size (given, or its device default) into the number every command uses.
    """
    init_from_env()
    lm = load_model(args.model, device=args.device, dtype=args.dtype, revision=args.revision,
                    trust_remote_code=args.trust_remote_code, adapter=args.adapter)
    if args.max_tokens is not None:
        limit_tokens(lm, args.max_tokens)
    args.batch_size = resolve_batch_size(lm, default_batch_size(lm) if args.batch_size is None else args.batch_size)
    check_detections_model(args, lm)
    return lm


def add_model_check_arg(parser: argparse.ArgumentParser) -> None:
    """--allow-model-mismatch, for commands that apply a detection, neurons or centroids to --model."""
    parser.add_argument("--allow-model-mismatch", action="store_true",
                        help="use a detection, neurons file or centroids made on a model of another name or other "
                        "weights (same shape), e.g. a moved model folder")


def check_detections_model(args: argparse.Namespace, lm: LoadedModel) -> None:
    """Refuse detections (--detection, --detections, a --neurons folder or file) made on another model than --model."""
    allow = getattr(args, "allow_model_mismatch", False)
    for option in ("detection", "detections", "neurons"):
        values = getattr(args, option, None)
        for value in [values] if isinstance(values, str) else values or []:
            if (Path(value) / "meta.json").is_file():
                check_detection_model(read_meta(value), lm, f"--{option} {value}", allow)
            elif Path(value).is_file():  # a neurons file: checked when it records its model
                check_detection_model(record_meta(read_neuron_set(value).model), lm, f"--{option} {value}", allow)


def resolve_split(args: argparse.Namespace, spec: str, default: str) -> str | None:
    """The split to read: explicit, or `default` for bundled sets and everything for files."""
    if args.split == "all":
        return None
    if args.split == "auto":
        return default if spec in BUNDLED_KINDS else None
    return args.split


def data_options(args: argparse.Namespace) -> dict:
    """The loaders' row options from --skip-invalid, --strict-pairs and --dedupe."""
    return {"skip_invalid": args.skip_invalid, "strict_pairs": args.strict_pairs, "dedupe": args.dedupe}


def pairs_from_args(args: argparse.Namespace, spec: str, hub: str, lang: str, default_split: str) -> ParallelPairs:
    """Hub–L2 parallel pairs from a data spec, honouring the data options (--split, --limit, ...)."""
    split = resolve_split(args, spec, default_split)
    corpus = load_parallel(spec, languages=[hub, lang], split=split, limit=args.limit, **data_options(args))
    return corpus.pairs(hub, lang)


def sentences_from_args(args: argparse.Namespace, spec: str, lang: str, default_split: str) -> Sentences:
    """Monolingual sentences of one language from a data spec, honouring the data options (--split, --limit, ...)."""
    split = resolve_split(args, spec, default_split)
    return load_sentences(spec, lang, split=split, limit=args.limit, **data_options(args))


def add_condition_args(parser: argparse.ArgumentParser, detection_required: bool = True) -> None:
    """--detection, --top-k, --controls, --seeds: which neurons to deactivate and what to compare with."""
    group = parser.add_argument_group("deactivation")
    group.add_argument("--detection", required=detection_required,
                       help="a detection folder written by `detect` (its neurons.json, scores and magnitudes)")
    group.add_argument("--top-k", type=positive_int, default=None, help="deactivate only the first K ranked neurons")
    group.add_argument("--controls", type=control_specs, default=",".join(DEFAULT_CONTROLS),
                       help="comma-separated control specs: random[:SEEDS], layer-matched[:SEEDS], magnitude-matched, "
                       "anti; empty for none (default: all four)")
    group.add_argument("--seeds", type=positive_int, default=5, help="seeds per seeded control (default 5)")
    add_intervention_arg(group)
    add_model_check_arg(group)


def control_specs(text: str) -> str:
    """argparse type: comma-separated control specs, checked now, before any model loads ('' = none)."""
    try:
        parse_controls(text)
    except TransferNeuronsError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def intervention_spec(text: str) -> str:
    """argparse type: an intervention spec (zero, scale:F, mean, patch), checked for syntax."""
    if text.strip() in ("mean", "patch"):
        return text.strip()  # their sentences come from the command's data
    try:
        return parse_intervention(text).spec
    except TransferNeuronsError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_intervention_arg(group) -> None:
    """--intervention: what the chosen neurons' activations become at the deactivated positions."""
    group.add_argument(
        "--intervention", type=intervention_spec, default="zero",
        help="what the neurons' activations become: zero (default, the paper's deactivation), scale:F (multiplied "
        "by F: dampen below 1, amplify above), mean (their mean at the last token of the command's L2 sentences), "
        "patch (their activation at the last token of the English side of each parallel pair)")


def intervention_from_args(
    args: argparse.Namespace, pairs: ParallelPairs | None = None, reference: Sequence[str] | None = None
) -> Intervention:
    """--intervention as an Intervention: mean over `reference` (default the pairs' L2 side), patch hub -> L2."""
    try:
        return intervention_for(getattr(args, "intervention", "zero"), pairs, reference)
    except TransferNeuronsError as err:
        raise TransferNeuronsError(f"--{err}" if str(err).startswith("intervention ") else f"--intervention: {err}") from None


def conditions_from_args(args: argparse.Namespace) -> tuple[Detection, list[Condition]]:
    """The detection named by --detection and the conditions none, transfer and each control."""
    det = read_detection(args.detection, args.top_k)
    return det, build_conditions(det, args.controls, seeds=args.seeds)


def write_and_print(args: argparse.Namespace, run: Callable[[Path], Summary]) -> int:
    """Run the command's analysis into a staged folder (all its files land in --out, or none, replacing what
    its previous run there wrote), then print its text and files."""
    out = Path(args.out)
    with staged_folder(out, owner=args.command) as folder:
        summary = run(folder)
    print(summary.text)
    print(f"\nwrote {out}/" + ", ".join(summary.files))
    return 0
