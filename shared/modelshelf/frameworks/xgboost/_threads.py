"""How many OpenMP threads a prediction gets, and when they are given.

seldon-core-microservice loads the model in its parent process (to derive metadata) and then
forks gunicorn workers and the gRPC process. GNU OpenMP's thread pool does not survive a fork, so
the parent loads with one thread (no pool is ever started there) and each process gives its
boosters their threads on its own first request.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import xgboost as xgb

from modelshelf.errors import ConfigurationError

logger = logging.getLogger("modelshelf.frameworks.xgboost")  # the public name

#: Up to this many rows a request runs on one thread: XGBoost predicts in blocks of 64 rows, so
#: more threads cannot share the work and only add a wake-up (or a spin against busy cores).
SINGLE_THREAD_MAX_ROWS = 64


@dataclass(frozen=True)
class Boosters:
    """The model's booster and a copy that always runs on one thread, for small batches
    (waking OpenMP threads for one row costs more than the trees, and collapses when the
    cores are busy)."""

    full: xgb.Booster
    single_thread: xgb.Booster

    @classmethod
    def of(cls, booster: xgb.Booster) -> Boosters:
        return cls(booster, booster.copy())

    def for_rows(self, rows: int) -> xgb.Booster:
        """The booster that should predict a batch of ``rows`` rows."""
        return self.single_thread if rows <= SINGLE_THREAD_MAX_ROWS else self.full


class ProcessThreads:
    """Gives the boosters their threads on each process's first request, and each serving
    thread XGBoost's global ``nthread`` (per calling thread, and a cap on every booster: loading
    set it to 1, and ``config_context`` cannot restore the default)."""

    def __init__(self, boosters: Boosters, requested: int) -> None:
        self.boosters = boosters
        self.requested = requested
        self.nthread: int | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._thread_state = threading.local()

    def ensure(self) -> None:
        """Cheap after the first call in a thread of this process."""
        if getattr(self._thread_state, "pid", None) != os.getpid():
            self._configure()

    def _configure(self) -> None:
        pid = os.getpid()
        with self._lock:
            if self._pid != pid:
                threads = self.requested or default_threads()
                self.boosters.full.set_param({"nthread": threads})
                self.boosters.single_thread.set_param({"nthread": 1})
                self.nthread = threads
                self._pid = pid
                logger.info("XGBoost uses %d thread(s) per request in process %d", threads, pid)
        xgb.set_config(nthread=self.nthread)
        self._thread_state.pid = pid


def default_threads() -> int:
    """Threads per process so that gunicorn workers x threads ~ the cores this process may use."""
    return max(1, available_cores() // gunicorn_workers())


def available_cores() -> int:
    """CPUs in this process's affinity mask, capped by a cgroup CPU quota (a container limit)."""
    cores = len(os.sched_getaffinity(0))
    quota = _cgroup_cpu_quota()
    return max(1, min(cores, math.ceil(quota))) if quota else cores


def gunicorn_workers() -> int:
    """seldon-core-microservice's REST workers: ``--workers N`` if given, else
    ``GUNICORN_WORKERS`` (its default), else 1."""
    value: str | None = os.environ.get("GUNICORN_WORKERS")
    argv = sys.argv[1:]
    for i, arg in enumerate(argv):
        if arg == "--workers" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--workers="):
            value = arg.split("=", 1)[1]
    try:
        return max(1, int(value)) if value else 1
    except ValueError:
        raise ConfigurationError("GUNICORN_WORKERS", value, "a whole number of workers") from None


def _cgroup_cpu_quota() -> float | None:
    try:  # cgroup v2: "max 100000" or "<quota> <period>"
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return quota_us / period_us if quota_us > 0 and period_us > 0 else None
    except (OSError, ValueError):
        return None
