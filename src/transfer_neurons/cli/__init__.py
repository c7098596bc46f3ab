"""The `transfer-neurons` command: thin subcommands that parse, call the API and print.

Each subcommand is one module in this package with `register(subparsers)`; adding an
analysis means adding its module name to COMMANDS.
"""

from __future__ import annotations

import argparse
import importlib
import io
import sys
from contextlib import nullcontext, redirect_stdout
from pathlib import Path

from .. import preflight
from .._version import __version__
from ..distributed import init_from_env, is_main
from ..errors import TransferNeuronsError
from ..log import NORMAL, QUIET, VERBOSE, configured
from ..models.loading import EMBEDDED
from ..outputs import FIGURE_FORMATS, figure_format
from ..study.config import DEFAULTS
from .common import LANG_FIELD, codes

COMMANDS = (
    "demo",
    "data",
    "centroids",
    "detect",
    "run", "report",
    "specificity",
    "similarity", "activations", "ablate",
    "alignment", "latent", "layers",
    "dose", "logit-lens",
    "qa", "reasoning", "lm-eval",
    "neurons",
)


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, like every other user error (not the usage block)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    parser = OneLineParser(
        prog="transfer-neurons",
        description="Find, test and deactivate transfer neurons in multilingual causal LMs.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_global_options(parser)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser)
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name.replace('-', '_')}").register(subparsers)
    for command in _subcommands(parser):
        add_global_options(command, after_command=True)
    return parser


def _subcommands(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every subcommand parser below this one, nested ones (`data list`) included."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
                found += [command, *_subcommands(command)]
    return found


def add_global_options(parser: argparse.ArgumentParser, after_command: bool = False) -> None:
    """--quiet, --verbose and --figure-format, accepted before or after the subcommand.

    After it they default to SUPPRESS, so they never overwrite a value given before it.
    """
    group = parser.add_argument_group("output (before or after the command)")
    options = (
        ("verbosity", ("-q", "--quiet"), dict(action="store_const", const=QUIET,
                                              help="show errors only: no progress bars, notes or warnings")),
        ("verbosity", ("-v", "--verbose"), dict(action="store_const", const=VERBOSE,
                                                help="also show debug messages (in `run`: each analysis's own progress "
                                                "bars too)")),
        ("figure_format", ("--figure-format",), dict(
            choices=FIGURE_FORMATS, help="png (default; in `run`, the config's figure_format), svg or pdf; with svg "
            "or pdf the PNG is written too (the report embeds it)")),
    )
    defaults = {"verbosity": NORMAL, "figure_format": None}  # None: png, unless a study config chose another
    for dest, flags, kwargs in options:
        group.add_argument(*flags, dest=dest, default=argparse.SUPPRESS if after_command else defaults[dest], **kwargs)


DATA_OPTIONS = ("centroid_data", "score_data", "data", "vocab_data")
"""Options holding a data spec: a file path, a bundled set name or hf:ID."""


def _values(args: argparse.Namespace, dest: str) -> list[str]:
    """An option's given values (none, one, or a list from nargs)."""
    value = getattr(args, dest, None)
    return [] if value is None else [value] if isinstance(value, str) else list(value)


def check_options(args: argparse.Namespace) -> None:
    """Before any model loads: output folder writable, input files present, device and model available."""
    for out in _values(args, "out"):
        preflight.check_writable_dir(out, "--out")
    for out in _values(args, "out_file"):
        preflight.check_writable_file(out, "--out")
    langs = codes(getattr(args, "langs", None))
    for dest in DATA_OPTIONS:
        for spec in _values(args, dest):
            for each in [spec.replace(LANG_FIELD, lang) for lang in langs] if LANG_FIELD in spec else [spec]:
                preflight.check_data_spec(each, f"--{dest.replace('_', '-')}")
    for path in _values(args, "config"):
        preflight.check_input_file(path, "--config")
    for path in _values(args, "centroids"):  # a folder stands for its centroids.npy
        preflight.check_input_file(Path(path) / "centroids.npy" if Path(path).is_dir() else path, "--centroids")
    for dest in ("detection", "detections"):
        for path in _values(args, dest):
            preflight.check_detection_dir(path, f"--{dest}")
    for path in _values(args, "neurons"):
        preflight.check_neurons_source(path, "--neurons")
    if getattr(args, "device", None) is not None or getattr(args, "model", None) is not None:
        preflight.check_model(args.model or EMBEDDED, args.device or "cpu")


def flag_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Each option's library name (its destination) and its long flag, over every command: `neuron_type` -> `--type`."""
    names: dict[str, str] = {}
    for command in (parser, *_subcommands(parser)):
        for action in command._actions:
            flags = [flag for flag in action.option_strings if flag.startswith("--")]
            if flags:
                names.setdefault(action.dest, flags[0])
    return names


def main(argv: list[str] | None = None) -> int:
    """Entry point: check the options, run one subcommand; user errors print one clear line and exit 2.

    A library error names parameters (`device`, `top_n`); the line shows their flags (`--device`, `--top-n`).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        init_from_env()  # under torchrun: every rank computes, rank 0 alone prints and writes
        check_options(args)
        verbosity = args.verbosity if is_main() else QUIET
        with configured(verbosity), figure_format(args.figure_format or "png"), \
                nullcontext() if is_main() else redirect_stdout(io.StringIO()):
            return args.func(args) or 0
    except TransferNeuronsError as err:
        flags = flag_names(parser)
        if args.command == "run":  # a study's options are its flags, else its config keys
            command = next(c for c in _subcommands(parser) if c.prog.split()[-1] == "run")
            flags = {**{key: f"config.{key}" for key in DEFAULTS}, **flag_names(command)}
        shown = err.shown_as(lambda name: flags.get(name, name))  # a config key (config.device) stays as it is
        print(f"transfer-neurons {args.command}: error: {shown}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # results are staged: an interrupted command has written nothing partial
        kept = ("its finished stages are kept; the same command resumes" if args.command == "run"
                else "no partial output was written")
        print(f"transfer-neurons {args.command}: interrupted; {kept}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
