"""``python -m modelshelf.serve CLASS_NAME [seldon-core-microservice options]``."""

import sys

from modelshelf.serve.supervisor import main

if __name__ == "__main__":
    sys.exit(main())
