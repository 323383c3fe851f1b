"""``modelshelf version``: the versions of modelshelf and the frameworks installed beside it."""

from __future__ import annotations

import argparse

from modelshelf.registry import SERVERS

#: modelshelf, seldon-core and every server's framework (``registry.SERVERS``: LightGBM was
#: missing from a hand-kept list), with the other builds of a framework a user may install.
PACKAGES = tuple(
    dict.fromkeys(
        [
            "modelshelf",
            "seldon-core",
            *(package for server in SERVERS for package in server.framework_packages),
            "xgboost",
            "mlflow",
        ]
    )
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("version", help="print installed versions")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from modelshelf.metadata import package_versions  # importlib.metadata: only when asked

    for name, version in package_versions(PACKAGES).items():
        print(f"{name} {version}")
    return 0
