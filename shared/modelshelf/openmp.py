"""How many OpenMP threads a model's call gets, and when they are given: one policy for every
framework that computes with OpenMP (XGBoost, LightGBM, scikit-learn's HistGradientBoosting…).

Both front ends load the model in a parent process (to derive metadata) and then fork the REST
workers and the gRPC process. GNU OpenMP's thread pool does not survive a fork: a worker whose
parent ever ran a multi-threaded region hangs in its first multi-threaded call. So:

* ``single_threaded()`` wraps loading: the loading thread runs every OpenMP runtime on one thread,
  so no pool is started in the parent (LightGBM's loader, for one, runs parallel loops).
* ``ProcessThreads.for_rows(rows)`` runs before each call, in the serving thread: the first call
  in a process (after the fork) fixes its thread count (``nthread`` if given, else the cores the
  process may use ÷ the REST workers) and limits BLAS pools to it; every call then sets the
  calling thread's OpenMP thread count (an OpenMP setting is per thread) to one for small
  requests -- waking threads for a few rows costs more CPU than the rows, and collapses when the
  cores are busy -- and to the process's count for larger ones. What "small" means is the
  framework's (``SINGLE_THREAD_MAX_ROWS``, by the server's ``platform``; for a booster, by rows x
  trees, ``SINGLE_THREAD_MAX_TREE_ROWS``, once it is loaded): XGBoost and LightGBM
  open one parallel region per call, scikit-learn's HistGradientBoosting one per tree (300 for
  100 iterations on 3 classes), each waking the sleeping threads. Frameworks whose thread count
  follows OpenMP's (XGBoost with ``nthread`` 0, HistGradientBoosting) need nothing more; one that
  takes it per call (LightGBM's ``num_threads``) reads the returned count.
* ``OMP_WAIT_POLICY`` defaults to ``PASSIVE`` (set before any framework loads its OpenMP
  runtime, in ``modelshelf.frameworks``): idle threads sleep instead of spinning against the
  server's own threads.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from modelshelf.errors import ConfigurationError

logger = logging.getLogger(__name__)

#: Up to this many rows a call runs on one thread, by the server's ``platform``. Measured on 2
#: cores (in process, PASSIVE, 1 vs 2 threads; bench/results/realistic.md): XGBoost's 300 x
#: depth-6 booster on 100 rows gains <= 10 % wall for +30 % CPU, on 500 rows -20 % wall for
#: +24 % CPU; LightGBM's 300-tree model gains nothing on 100 rows and halves the wall at equal
#: CPU on 256. HistGradientBoosting(100 iterations, 3 classes) is slower on two threads up to
#: ~5,000 rows (100 rows: 4.3 vs 2.8 ms wall, 2,000: 40 vs 23 ms) -- each of its 300 parallel
#: regions wakes the other thread for microseconds of work -- and 1.5 x faster on 20,000.
SINGLE_THREAD_MAX_ROWS: dict[str, int] = {"xgboost": 256, "lightgbm": 256, "sklearn": 4096}
#: For a booster whose trees are known (``ProcessThreads.fit_to_trees``): one thread up to this
#: many rows x trees -- 256 rows of the 900-tree boosters above, where it was measured -- so a
#: small booster keeps larger requests on one thread. The bench's 20-round iris booster (60
#: trees) on 1,000 rows, in process on a busy 2-core machine: 440 us wall / 0.44-0.52 ms CPU on
#: one thread against 476 us / 0.8-3.1 ms on two; served (V2 REST JSON, two interleaved runs
#: against this rows-only policy): 1.29-1.33x req/s and 15-21 % less CPU per request at 1
#: connection, 0.9-1.13x req/s and 6-15 % less CPU at 4.
SINGLE_THREAD_MAX_TREE_ROWS = 256 * 900
#: ... yet never more rows than this on one thread.
SINGLE_THREAD_MAX_ROWS_BY_TREES = 4096
#: For a platform the table does not name.
DEFAULT_SINGLE_THREAD_MAX_ROWS = 256
WAIT_POLICY_ENV = "OMP_WAIT_POLICY"
#: Which process this is, as a count of forks: ``for_rows`` compares it instead of asking the
#: kernel for the pid on every request (``os.getpid`` is a system call; so was one per request).
_process_generation = 0


def _forked() -> None:
    global _process_generation
    _process_generation += 1


os.register_at_fork(after_in_child=_forked)


def default_wait_policy() -> None:
    """``OMP_WAIT_POLICY=PASSIVE`` unless set: read once, when an OpenMP runtime loads."""
    os.environ.setdefault(WAIT_POLICY_ENV, "PASSIVE")


def openmp_setters() -> list[Callable[[int], Any]]:
    """``omp_set_num_threads`` of every OpenMP runtime loaded in this process (scikit-learn's
    wheels bring their own libgomp beside the system's, which XGBoost and LightGBM use)."""
    from threadpoolctl import ThreadpoolController

    controllers = ThreadpoolController().select(user_api="openmp").lib_controllers
    return [controller.dynlib.omp_set_num_threads for controller in controllers]


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Every loaded OpenMP runtime on one thread in the calling thread, restored after."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        yield


class ProcessThreads:
    """Threads per call in this process: fixed on the process's first call, set per thread."""

    def __init__(
        self,
        requested: int = 0,
        single_thread_max_rows: int | None = None,
        platform: str = "",
    ) -> None:
        if requested < 0:
            raise ConfigurationError(
                "nthread", requested, "a whole number >= 1, or 0 for cores / workers"
            )
        self.requested = requested
        #: A caller's own limit is kept: ``fit_to_trees`` only replaces the platform's default.
        self._limit_given = single_thread_max_rows is not None
        if single_thread_max_rows is None:
            single_thread_max_rows = SINGLE_THREAD_MAX_ROWS.get(
                platform, DEFAULT_SINGLE_THREAD_MAX_ROWS
            )
        self.single_thread_max_rows = single_thread_max_rows
        self.nthread: int | None = None
        self._generation: int | None = None
        self._setters: list[Callable[[int], Any]] = []
        self._lock = threading.Lock()
        self._thread_state = threading.local()

    def for_rows(self, rows: int) -> int:
        """Set the calling thread's OpenMP threads for a call on ``rows`` rows; return them."""
        state = self._thread_state
        generation = _process_generation
        if self._generation != generation:
            self._configure_process(generation)
        wanted = 1 if rows <= self.single_thread_max_rows else self.nthread or 1
        if getattr(state, "generation", None) != generation or state.threads != wanted:
            for set_threads in self._setters:
                set_threads(wanted)
            state.generation, state.threads = generation, wanted
        return wanted

    def fit_to_trees(self, trees: int) -> None:
        """Small requests by work for a booster of ``trees`` trees: one thread up to
        ``SINGLE_THREAD_MAX_TREE_ROWS`` rows x trees (within 1 and
        ``SINGLE_THREAD_MAX_ROWS_BY_TREES`` rows); no change for ``trees`` < 1, nor when the
        constructor was given ``single_thread_max_rows``."""
        if trees >= 1 and not self._limit_given:
            rows = SINGLE_THREAD_MAX_TREE_ROWS // trees
            self.single_thread_max_rows = max(1, min(SINGLE_THREAD_MAX_ROWS_BY_TREES, rows))

    @property
    def current(self) -> int:
        """The calling thread's count, as ``for_rows`` set it last (for a framework that takes
        it per call, such as LightGBM's ``num_threads``)."""
        return getattr(self._thread_state, "threads", 1)

    def _configure_process(self, generation: int) -> None:
        with self._lock:
            if self._generation == generation:
                return
            threads = self.requested or default_threads()
            self._setters = openmp_setters()
            from threadpoolctl import threadpool_limits

            threadpool_limits(limits=threads, user_api="blas")
            self.nthread = threads
            self._generation = generation
            logger.info(
                "OpenMP: %d thread(s) per large request in process %d", threads, os.getpid()
            )


def default_threads() -> int:
    """Threads per process so that REST workers x threads ~ the cores this process may use."""
    return max(1, available_cores() // rest_workers())


def available_cores() -> int:
    """CPUs in this process's affinity mask, capped by a cgroup CPU quota (a container limit)."""
    cores = len(os.sched_getaffinity(0))
    quota = _cgroup_cpu_quota()
    return max(1, min(cores, math.ceil(quota))) if quota else cores


def rest_workers() -> int:
    """The REST workers of either front end: ``--workers N`` if given, else ``GUNICORN_WORKERS``
    (both front ends' default), else 1."""
    value: str | None = os.environ.get("GUNICORN_WORKERS")
    name, source = "GUNICORN_WORKERS", "environment variable"
    argv = sys.argv[1:]
    for i, arg in enumerate(argv):
        if arg == "--workers" and i + 1 < len(argv):
            value, name, source = argv[i + 1], "--workers", "option"
        elif arg.startswith("--workers="):
            value, name, source = arg.split("=", 1)[1], "--workers", "option"
    try:
        return max(1, int(value)) if value else 1
    except ValueError:
        raise ConfigurationError(name, value, "a whole number of workers", source) from None


def rows_of(model_input: Any) -> int:
    """How many rows a model input holds (array, DataFrame, list of texts)."""
    shape = getattr(model_input, "shape", None)
    if shape:
        return int(shape[0])
    try:
        return len(model_input)
    except TypeError:
        return 1


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
