"""``modelshelf fetch URI DEST``: download a model into a folder, as a storage initializer.

Usable as an init container with args ``[URI, /mnt/models]`` and credentials from ``envFrom`` a
secret (KServe's storage-initializer convention; Seldon's rclone initializer takes the same
arguments). Exits 0 once ``DEST`` holds the model; otherwise prints one line naming the URI and
what to check, and exits 1.
"""

from __future__ import annotations

import argparse
import sys

from modelshelf.errors import ModelshelfError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "fetch",
        help="download a model (s3://, gs://, http(s)://, rclone remote:path, local) into DEST",
        description="Download the model URI into the folder DEST; only changed files transfer "
        "when DEST already holds an earlier download of it.",
    )
    parser.add_argument("uri", metavar="URI", help="s3://bucket/path, gs://…, https://…, …")
    parser.add_argument("dest", metavar="DEST", help="the folder to download into")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from modelshelf import storage

    try:
        path = storage.download(args.uri, args.dest)
    except ModelshelfError as exc:
        print(f"modelshelf fetch: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0
