"""Running ``python -m bench`` from the tests: small, fast settings and results in a temporary
folder, so tests read real figures without touching bench/results."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_bench(tmp: Path, **env: str) -> subprocess.CompletedProcess:
    settings = {
        "BENCH_PEERS": "0",
        "BENCH_DURATION": "1",
        "BENCH_ROUNDS": "1",
        "BENCH_BATCH_ROWS": "50",
        "BENCH_RESULTS": str(tmp / "results"),
        "BENCH_WORK": str(tmp / "work"),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "bench"],
        cwd=REPO,
        env={**os.environ, **settings},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
