"""Running ``python -m bench`` from the tests: small, fast settings and results in a temporary
folder, so tests read real figures without touching bench/results."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[1]

# A subset runs in ~15 s here; the budget is generous because CI machines are slower and shared.
BENCH_TIMEOUT_S = 300


def run_bench(tmp: Path, **env: str) -> subprocess.CompletedProcess:
    """Run the bench; past ``BENCH_TIMEOUT_S`` kill it and every server it started (they run in
    sessions of their own) and fail with its progress and the servers' log tails."""
    settings = {
        "BENCH_PEERS": "0",
        "BENCH_DURATION": "1",
        "BENCH_ROUNDS": "1",
        "BENCH_BATCH_ROWS": "50",
        "BENCH_RESULTS": str(tmp / "results"),
        "BENCH_WORK": str(tmp / "work"),
        **env,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "bench"],
        cwd=REPO,
        env={**os.environ, **settings},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=BENCH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        _kill_tree(process.pid)
        stdout, stderr = process.communicate()
        pytest.fail(
            f"python -m bench took over {BENCH_TIMEOUT_S} s; its output:\n{stdout[-3000:]}"
            f"\n{stderr[-3000:]}\n{_log_tails(tmp / 'work' / 'logs')}"
        )
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _kill_tree(pid: int) -> None:
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        for process in [*root.children(recursive=True), root]:
            with contextlib.suppress(psutil.Error):
                process.kill()


def _log_tails(folder: Path) -> str:
    tails = []
    for log in sorted(folder.glob("*.log")):
        text = log.read_text(errors="replace")
        tails.append(f"--- {log.name}:\n{text[-1500:]}")
    return "\n".join(tails) or f"(no server logs in {folder})"
