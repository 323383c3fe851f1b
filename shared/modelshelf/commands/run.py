"""``modelshelf run``: the images' entry point -- Seldon's environment in, a served model out.

Reads ``MODEL_NAME``, ``SERVICE_TYPE``, ``API_TYPE``, ``PERSISTENCE``,
``PREDICTIVE_UNIT_PARAMETERS`` and the ``PREDICTIVE_UNIT_*_PORT`` variables, runs the server
folder's ``before-run`` when there is one, then the front end (``modelshelf serve``, or
``seldon-core-microservice`` with ``MODELSHELF_FRONTEND=seldon``), and stops it gracefully on
SIGTERM/SIGINT. Arguments after ``--`` go to the front end unchanged. KServe's runtime
arguments (``--model_name``, ``--model_dir``, ``--http_port``, ``--grpc_port``) and ``HTTP_PORT``,
``GRPC_PORT``, ``STORAGE_URI`` are read too (``modelshelf.launcher._kserve``), so the same image
serves under KServe.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from modelshelf.errors import ConfigurationError


def register(subparsers: argparse._SubParsersAction) -> None:
    from modelshelf.launcher._kserve import add_kserve_arguments

    parser = subparsers.add_parser(
        "run",
        help="container entry point: before-run, then the front end, with graceful stop",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--server-dir",
        type=Path,
        default=None,
        help="the folder holding MODEL_NAME.py and before-run (default: the current folder)",
    )
    parser.add_argument(
        "--print",
        action="store_true",
        dest="print_only",
        help="print the commands that would run, one per line, and exit",
    )
    add_kserve_arguments(parser)
    parser.add_argument("frontend_args", nargs=argparse.REMAINDER, metavar="-- ARGS")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from modelshelf.launcher import LaunchSettings, launch
    from modelshelf.launcher._kserve import read_kserve_arguments

    extra = list(args.frontend_args)
    if extra[:1] == ["--"]:
        extra = extra[1:]
    server_dir = (args.server_dir or Path.cwd()).resolve()
    kserve = read_kserve_arguments(args, os.environ, extra)
    os.environ.update(kserve.environ)  # before-run and the front end read the same values
    try:
        settings = LaunchSettings.from_environ(os.environ, server_dir, kserve.frontend_args)
        if args.print_only:
            for step in settings.steps():
                print(" ".join(step.command))
            return 0
        return launch(settings)
    except ConfigurationError as exc:
        print(f"modelshelf run: {exc}", file=sys.stderr)
        return 2
