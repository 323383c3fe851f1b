"""``python -m modelshelf.graph.fetch URI DEST``: what a node's storage initializer does.

Run in its own process so the secret's variables reach the download and nothing else.
"""

from __future__ import annotations

import sys

from modelshelf import storage
from modelshelf.errors import ModelshelfError


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m modelshelf.graph.fetch URI DEST", file=sys.stderr)
        return 2
    uri, dest = argv
    try:
        path = storage.download(uri, dest)
    except ModelshelfError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
