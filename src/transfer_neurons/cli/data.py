"""`transfer-neurons data list | show NAME`: describe the bundled data sets."""

from __future__ import annotations

import argparse
import json

from ..data import describe_bundled, describe_bundled_set


def run_list(args: argparse.Namespace) -> int:
    for info in describe_bundled():
        print(json.dumps(info, ensure_ascii=False) if args.json else
              f"{info['name']:<10} {info['kind']:<9} {info['size']:>5} rows  languages: {', '.join(info['languages'])}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    print(json.dumps(describe_bundled_set(args.name), indent=2, ensure_ascii=False))
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="describe the bundled data sets",
                                   description="List the bundled data sets or show one (languages, sizes, splits).")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="one line per bundled set")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(func=run_list)
    show = actions.add_parser("show", help="details of one bundled set")
    show.add_argument("name", help="bundled set name, e.g. parallel")
    show.set_defaults(func=run_show)
