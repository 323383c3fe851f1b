"""The ``modelshelf`` command: one subcommand per module in ``modelshelf.commands``.

Each command module defines ``register(subparsers)``, which adds its parser and sets ``run`` (a
function of the parsed arguments returning an exit code) as the parser's default.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

#: Command modules, in the order ``modelshelf --help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "modelshelf.commands.version",
    "modelshelf.commands.fetch",
    "modelshelf.commands.run",
    "modelshelf.commands.serve",
    "modelshelf.commands.env",
    "modelshelf.commands.graph",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelshelf", description="Off-the-shelf model servers for Seldon Core and KServe."
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        # The serving command parses its own arguments: importing every other command (the
        # launcher's KServe arguments, graph, env) would only delay the first prediction.
        from modelshelf.commands.serve import run

        return int(run(argparse.Namespace(arguments=argv[1:])) or 0)
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
