"""`transfer-neurons report`: re-render report.html and results.json from a study folder."""

from __future__ import annotations

import argparse
import logging

from ..report import write_report

LOG = logging.getLogger("transfer_neurons")


def run(args: argparse.Namespace) -> int:
    if args.figure_format not in (None, "png"):
        LOG.warning("--figure-format %s: report draws no figures; the stages' figures get it from "
                    "`run --figure-format %s` (or figure_format in the config)", args.figure_format, args.figure_format)
    html_path, json_path = write_report(args.study)
    print(f"wrote {html_path} and {json_path}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("report", help="re-render report.html and results.json of a study folder",
                                   description="Rebuild report.html (one file, figures inline) and results.json "
                                   "from the finished stages of a `run` study folder; nothing is recomputed.")
    parser.add_argument("study", help="a study folder written by `transfer-neurons run`")
    parser.set_defaults(func=run)
