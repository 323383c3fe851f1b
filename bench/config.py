"""The harness's knobs, read once from the environment (documented in the README's table)."""

from __future__ import annotations

import fnmatch
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
VENV_BIN = Path(sys.executable).parent


def _int(name: str, default: int, minimum: int = 0) -> int:
    raw = os.environ.get(name, "")
    if not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r}: expected a whole number") from None
    if value < minimum:
        raise SystemExit(f"{name}={raw!r}: expected at least {minimum}")
    return value


def _list(name: str, default: str) -> list[str]:
    return [part.strip() for part in os.environ.get(name, default).split(",") if part.strip()]


PARTS = ("inprocess", "rest", "paired", "realistic", "storage", "images")

#: Left out unless BENCH_SYSTEMS names them exactly, to keep a fresh-machine run under 15 min:
#: peers' 2-worker sklearn/mlflow rows (the issue asks one worker per core of *our* servers; the
#: 2-worker xgboost peers stay, they show the OMP_NUM_THREADS effect). KServe's 2-worker server
#: also restarts its workers over and over here and often never becomes ready.
SKIPPED_BY_DEFAULT = "kserve-sklearn-w2,mlserver-sklearn-pw2,mlflow-serve-w2"


@dataclass(frozen=True)
class Config:
    duration: int = 2
    rounds: int = 2
    paired_cycles: int = 8
    paired_seconds: int = 2
    connections: int = 4
    batch_rows: int = 1000
    systems: list[str] = field(default_factory=lambda: ["*"])
    skipped: list[str] = field(default_factory=lambda: SKIPPED_BY_DEFAULT.split(","))
    parts: list[str] = field(default_factory=lambda: list(PARTS))
    peers: bool = True
    s3_big_mb: int = 500
    s3_small_files: int = 2000
    storage_rounds: int = 2
    results: Path = BENCH / "results"
    work: Path = BENCH / "work"

    @classmethod
    def from_env(cls) -> Config:
        parts = _list("BENCH_PARTS", ",".join(PARTS))
        if os.environ.get("BENCH_REALISTIC", "1") in ("0", "false", "no"):
            parts = [p for p in parts if p != "realistic"]
        unknown = sorted(set(parts) - set(PARTS))
        if unknown:
            raise SystemExit(f"BENCH_PARTS: unknown {unknown}; expected some of {list(PARTS)}")
        return cls(
            duration=_int("BENCH_DURATION", 2, 1),
            rounds=_int("BENCH_ROUNDS", 2, 1),
            paired_cycles=_int("BENCH_PAIRED_CYCLES", 8, 1),
            paired_seconds=_int("BENCH_PAIRED_SECONDS", 2, 1),
            connections=_int("BENCH_CONNECTIONS", 4, 1),
            batch_rows=_int("BENCH_BATCH_ROWS", 1000, 2),
            systems=_list("BENCH_SYSTEMS", "*"),
            skipped=_list("BENCH_SKIP", SKIPPED_BY_DEFAULT),
            parts=parts,
            peers=os.environ.get("BENCH_PEERS", "1") not in ("0", "false", "no"),
            s3_big_mb=_int("BENCH_S3_BIG_MB", 500, 1),
            s3_small_files=_int("BENCH_S3_FILES", 2000, 1),
            storage_rounds=_int("BENCH_S3_ROUNDS", 2, 1),
            results=Path(os.environ.get("BENCH_RESULTS", BENCH / "results")),
            work=Path(os.environ.get("BENCH_WORK", BENCH / "work")),
        )

    def selects(self, name: str) -> bool:
        """Whether BENCH_SYSTEMS (glob patterns, comma-separated) selects the system ``name``.

        BENCH_SKIP (glob patterns) leaves systems out, unless BENCH_SYSTEMS names one exactly.
        """
        if name in self.systems:
            return True
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in self.skipped):
            return False
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.systems)
