"""``modelshelf version``: the versions of modelshelf and the frameworks installed beside it."""

from __future__ import annotations

import argparse

PACKAGES = ("modelshelf", "seldon-core", "scikit-learn", "xgboost", "xgboost-cpu", "mlflow-skinny")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("version", help="print installed versions")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from modelshelf.metadata import package_versions  # importlib.metadata: only when asked

    for name, version in package_versions(PACKAGES).items():
        print(f"{name} {version}")
    return 0
