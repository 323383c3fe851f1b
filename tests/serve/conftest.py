"""tests/serve: its helpers (``frontends``) and user classes (``components/``) are importable."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
