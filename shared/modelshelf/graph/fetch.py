"""``python -m modelshelf.graph.fetch URI``: what a node's storage initializer does; prints the
local folder that holds the model.

Run in its own process so the secret's variables reach the download and nothing else. The model
lands in modelshelf's download cache (``MODELSHELF_MODEL_CACHE``), keyed by URI, so running the
same graph again transfers only what changed.
"""

from __future__ import annotations

import sys

from modelshelf import storage
from modelshelf.errors import ModelshelfError


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m modelshelf.graph.fetch URI", file=sys.stderr)
        return 2
    try:
        path = storage.download(argv[0])
    except ModelshelfError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
