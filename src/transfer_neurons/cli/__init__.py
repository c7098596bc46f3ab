"""The `transfer-neurons` command: thin subcommands that parse, call the API and print.

Each subcommand is one module in this package with `register(subparsers)`; adding an
analysis means adding its module name to COMMANDS.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__
from ..errors import TransferNeuronsError

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
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="transfer-neurons",
        description="Find, test and deactivate transfer neurons in multilingual causal LMs.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name.replace('-', '_')}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: run one subcommand; user errors print one clear line and exit 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except TransferNeuronsError as err:
        print(f"transfer-neurons {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
