"""``modelshelf serve CLASS_NAME``: seldon-core-microservice's interface on a fast front end."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve a SeldonComponent class (drop-in for seldon-core-microservice)",
        description="Same arguments and environment as seldon-core-microservice 1.18.2.",
        add_help=False,
        prefix_chars="\x00",  # every argument, --help included, is for modelshelf.serve's parser
    )
    parser.add_argument("arguments", nargs=argparse.REMAINDER)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from modelshelf.serve.supervisor import main

    arguments = args.arguments
    if not arguments:
        arguments = ["--help"]
    return main(arguments)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run(argparse.Namespace(arguments=sys.argv[1:])))
