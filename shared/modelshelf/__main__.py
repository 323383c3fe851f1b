"""``python -m modelshelf``: the ``modelshelf`` command, for images without its console script."""

import sys

from modelshelf.cli import main

sys.exit(main())
