"""Processes, ports and signals: what gunicorn and seldon-core's launcher did, in one place.

The parent builds the user's object, derives its metadata (seldon-core's Flask app does, at
construction) and binds the REST port; then it forks REST workers (each loads the model once and
serves the shared socket with modelshelf's HTTP/1.1 server, ``modelshelf.serve.http1``, or with
uvicorn: ``MODELSHELF_HTTP_SERVER``), gRPC workers (SO_REUSEPORT on the gRPC port), one metrics
process that gathers the workers' metrics, and the class's ``custom_service`` if it has one. With
one REST worker and no gRPC worker there is nothing to gather: the parent binds the metrics port
too and the worker serves it (``modelshelf.serve.metrics.WorkerMetrics``), so the tree is two
processes, not three. On SIGTERM or SIGINT it forwards SIGTERM: the HTTP server stops accepting
and lets in-flight requests finish, gRPC gets a grace period, and the parent exits 0 once they
are gone (SIGKILL for anything left after ``STOP_SECONDS``).

A REST or gRPC worker that dies on its own (a model calling ``os._exit``, a segfault on one
input) is replaced by a new fork, as gunicorn's arbiter does: one bad request no longer ends the
server and resets every connection. The parent still stops the rest and exits 1, so the pod
restarts, when a worker dies before it was ever ready -- a REST worker before it served, a gRPC
worker before it listened (it could not load, or could not bind the port: a new one would fail
the same way) --, when the metrics process dies, or when workers keep dying: more than
``MODELSHELF_MAX_WORKER_RESTARTS`` replacements within a minute.

The window only counts deaths per minute, so it cannot stop workers that never get ready: a gRPC
worker that loads for 7 s and then fails to bind was replaced ~8 times a minute, for ever, and
the server stayed live but never ready. Giving up at the first such death leaves the retrying to
Kubernetes, which backs off between restarts and reports CrashLoopBackOff.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from modelshelf import deferred_imports
from modelshelf.errors import ConfigurationError, ModelshelfError
from modelshelf.number_settings import whole_env_number
from modelshelf.serve import listeners, options
from modelshelf.serve.listeners import ListenerSlot
from modelshelf.supervision import Child, Supervisor

logger = logging.getLogger("modelshelf.serve")

LOG_FORMAT = "%(asctime)s - %(name)s:%(funcName)s:%(lineno)s - %(levelname)s:  %(message)s"
#: After SIGTERM: the HTTP server's wait for in-flight requests, then the parent's hard limit.
GRACEFUL_SECONDS = 7
STOP_SECONDS = 9.0
FRONTEND_ENV = "MODELSHELF_FRONTEND"
MAX_RESTARTS_ENV = "MODELSHELF_MAX_WORKER_RESTARTS"
#: Worker replacements allowed within ``RESTART_WINDOW`` seconds before the server gives up.
DEFAULT_MAX_RESTARTS = 10
RESTART_WINDOW = 60.0


def main(argv: Sequence[str] | None = None) -> int:
    """``modelshelf serve`` / ``python -m modelshelf.serve``: parse, then serve until stopped."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = options.parse_args(argv)
        _log_level(args.log_level)
    except ModelshelfError as exc:  # a worker count, port or log level that is wrong: one line
        _configure_logging("INFO")
        logger.error("modelshelf serve could not start: %s", exc)
        return 1
    return run(args, argv)


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    _setup_logging(args.log_level)
    if os.environ.get(FRONTEND_ENV, "").lower() == "seldon" or args.tracing:
        reason = f"{FRONTEND_ENV}=seldon" if not args.tracing else "--tracing (Jaeger)"
        _exec_seldon(argv, reason)
    try:
        return serve(args)
    except ModelshelfError as exc:
        # Ours says what failed, on which (redacted) URI or setting, and what was expected: one
        # line; the traceback would only bury it (at DEBUG for whoever wants it; said when it
        # holds a library's own error, e.g. unpickling's, that the line only quotes).
        hint = "; --log-level DEBUG logs its traceback" if exc.__cause__ is not None else ""
        logger.error("modelshelf serve could not start %s: %s%s", args.interface_name, exc, hint)
        logger.debug("where it failed", exc_info=exc)
        return 1
    except Exception:
        logger.exception("modelshelf serve could not start %s", args.interface_name)
        return 1


def load_user_model(user_model: Any) -> None:
    """``load()`` as seldon-core calls it after the fork: optional, idempotent in our servers.
    A class that loads only here, in each REST and gRPC worker (MLflow's pyfunc models),
    imports its framework here: what that import does not use waits, and what it keeps is
    made with the collector's automatic passes made rare, then collected and frozen, as in
    the parent."""
    with (
        deferred_imports.deferring(),
        deferred_imports.long_lived_imports(),
        contextlib.suppress(NotImplementedError, AttributeError),
    ):
        user_model.load()
    from modelshelf.serve.server_methods import check_class_names

    check_class_names(user_model)


def serve(args: argparse.Namespace) -> int:
    # The HTTP server (ours, or uvicorn) and the REST app are imported here, once, before the
    # forks: the REST workers and the metrics process share their pages instead of importing
    # them each (6 MB less anonymous memory in the tree, measured for uvicorn). What the front
    # end and the framework import but do not use waits (``deferred_imports``): gRPC until a
    # gRPC worker needs it, pandas until a DataFrame does.
    # What the parent imports and builds before the forks -- the front end, the framework, the
    # loaded model -- lives as long as the server: made with the collector's automatic passes
    # made rare (the default makes hundreds, over ever more objects), then collected once and
    # frozen; no child's pass walks it, nor writes to its pages (``long_lived_imports``;
    # README "Cold start").
    with deferred_imports.long_lived_imports():
        from modelshelf.serve.http1.server import (
            client_min_speed,
            client_stall_seconds,
            http_server_kind,
        )

        # A bad MODELSHELF_HTTP_SERVER, MODELSHELF_CLIENT_STALL_SECONDS or _MIN_SPEED stops the
        # start here.
        http_server = http_server_kind()
        if http_server == "modelshelf":
            client_stall_seconds()
            client_min_speed()
        with deferred_imports.deferring():
            if http_server == "uvicorn":
                import uvicorn.loops.uvloop
                import uvicorn.protocols.http.httptools_impl
                import uvicorn.server  # noqa: F401
            else:
                import uvloop  # noqa: F401

                import modelshelf.serve.http1.server
            from seldon_core.wrapper import METRICS_ENDPOINT, get_rest_microservice

            import modelshelf.serve.batching
            import modelshelf.serve.rest
            from modelshelf.serve.metrics import QueueMetrics, WorkerMetrics

            # A bad MODELSHELF_MAX_BATCH_SIZE or _MAX_BATCH_TIME_MS stops the start here, before
            # the model loads, instead of failing every worker (one ERROR line each).
            modelshelf.serve.batching.BatchSettings.from_environment()

            # The front end holds little garbage (~1,000 objects without the passes): frozen
            # now, uncollected, the collection after the load does not walk it.
            gc.freeze()
            if args.persistence:
                logger.error("--persistence is deprecated and ignored")
            annotations = _annotations()
            metrics_in_worker = max(args.workers, 1) == 1 and max(args.grpc_workers, 0) == 0
            queue = None if metrics_in_worker else multiprocessing.get_context("fork").Queue()
            metrics = WorkerMetrics() if queue is None else QueueMetrics(queue)
            user_class = options.import_user_class(args.interface_name)
            user_model = options.build_user_model(
                user_class, options.user_parameters(args.parameters)
            )
            flask_app = get_rest_microservice(user_model, metrics)  # derives the metadata, once
    if args.grpc_workers > 0:  # gRPC is imported only for them (before the forks: shared)
        from modelshelf.serve.grpc_worker import (
            grpc_server_kind,
            max_message_bytes,
            run_grpc_worker,
        )

        # A bad MODELSHELF_GRPC_SERVER or grpc-max-message-size annotation stops the start
        # here, instead of failing each gRPC worker (restarted up to the limit).
        grpc_server_kind()
        max_message_bytes(annotations)
    http_socket = _listen(args.http_port, "--http-port")
    # The metrics port is bound here, before any fork, as the REST port: a port in use stops
    # the server at start, and a scrape that comes as soon as REST is ready waits in the backlog
    # instead of being refused while the metrics process starts. With one worker it answers on
    # this socket itself (a replacement too); else the metrics process does.
    metrics_socket = _listen(args.metrics_port, "--metrics-port")
    if args.pidfile:
        with open(args.pidfile, "w") as out:
            out.write(f"{os.getpid()}\n")

    workers = []
    if queue is not None:
        workers.append(
            Worker(
                "metrics",
                (_metrics_process, queue, metrics_socket, METRICS_ENDPOINT, args, http_server),
                respawn=False,
            )
        )
    rest_sockets = RestSockets(
        http_socket, metrics_socket if metrics_in_worker else None, METRICS_ENDPOINT
    )
    # Readiness waits for every gRPC worker to listen (``modelshelf.serve.listeners``).
    slots = [ListenerSlot(index) for index in range(max(args.grpc_workers, 0))]
    listeners.expect(len(slots))
    workers += [
        Worker(
            "grpc",
            (run_grpc_worker, user_model, metrics, args, annotations, slot),
            listening=slot,
        )
        for slot in slots
    ]
    workers += [
        Worker(
            "rest",
            (_rest_worker, user_model, metrics, flask_app, rest_sockets, args, http_server),
            signals_ready=True,
        )
        for _ in range(max(args.workers, 1))
    ]
    max_restarts = max_worker_restarts()  # a wrong value stops the server before any fork
    supervisor = Supervisor(STOP_SECONDS)
    # What the parent built is shared with every fork: frozen, no child's collection writes to
    # it, so its pages stay shared (copy-on-write) instead of being copied into each child.
    gc.freeze()
    _return_free_heap()
    with supervisor.watching_signals():  # before the forks: a SIGTERM now still stops every child
        for worker in workers:
            if not supervisor.stop_requested:
                worker.start(supervisor)
        extras = []
        if callable(getattr(user_model, "custom_service", None)) and not supervisor.stop_requested:
            extras.append(supervisor.fork("custom_service", user_model.custom_service))
        # The parent keeps the sockets open: a replacement worker is forked with them.
        logger.info(
            "%s (%s): REST on %d (%d workers), gRPC on %d (%d workers), metrics on %d",
            args.interface_name,
            args.service_type,
            args.http_port,
            max(args.workers, 1),
            args.grpc_port,
            max(args.grpc_workers, 0),
            args.metrics_port,
        )
        pool = WorkerPool(supervisor, workers, max_restarts, listening=rest_sockets.listening)
        return pool.run(extras)


def max_worker_restarts() -> int:
    """``MODELSHELF_MAX_WORKER_RESTARTS``: replacements allowed within a minute."""
    return whole_env_number(
        MAX_RESTARTS_ENV, DEFAULT_MAX_RESTARTS, "a number of restarts (0 or more)", zero=True
    )


@dataclass
class Worker:
    """One worker slot: how to fork its process, and the process now in it."""

    name: str
    target_and_args: tuple
    respawn: bool = True
    signals_ready: bool = False  # the target's last argument: an event it sets once loaded
    #: A gRPC worker's flag for readiness: cleared when it dies, set by its replacement.
    listening: ListenerSlot | None = None
    child: Child | None = None

    def start(self, supervisor: Supervisor) -> Child:
        self.child = supervisor.fork(
            self.name, *self.target_and_args, report_ready=self.signals_ready
        )
        return self.child


@dataclass
class WorkerPool:
    """Replaces workers that die until a stop is requested or they cannot be kept running; then
    stops them (``modelshelf.supervision``) and says how the server ended."""

    supervisor: Supervisor
    workers: list[Worker]
    max_restarts: int
    #: The parent's copy of the REST socket, kept for replacements; closed on stop, so new
    #: connections are refused rather than queued where no worker will take them.
    listening: list[socket.socket] = field(default_factory=list)
    restarts: deque[float] = field(default_factory=deque)
    failed: bool = False

    def run(self, extras: Sequence[Child] = ()) -> int:
        """Until a stop: 0 after a requested stop, 1 if workers died. ``extras`` (the class's
        ``custom_service``) are stopped with the workers."""
        while not self.failed and not self.supervisor.stop_requested:
            for worker in self.workers:
                if not self.failed and worker.child is not None and worker.child.poll() is not None:
                    self._ended(worker)
            if not self.failed:
                self.supervisor.wait(None)  # until a child ends or a signal arrives
        for sock in self.listening:
            sock.close()
        self.supervisor.stop([*(w.child for w in self.workers if w.child), *extras])
        logger.info("stopped")
        return 1 if self.failed else 0

    def _ended(self, worker: Worker) -> None:
        """A worker died on its own: replace it, or stop the server saying why not."""
        child = worker.child
        assert child is not None  # run() found it ended
        logger.error("%s worker %d exited with %s", worker.name, child.pid, child.describe_exit())
        worker.child = None  # handled
        listened = worker.listening is None or worker.listening.is_set()
        if worker.listening is not None:
            worker.listening.clear()  # not ready until the replacement listens
        if not worker.respawn:
            return self._give_up(f"the {worker.name} process cannot be replaced")
        if not child.is_ready():
            return self._give_up(f"the {worker.name} worker died before it served")
        if not listened:
            return self._give_up(
                f"the {worker.name} worker {child.pid} died before it listened (it could not "
                f"load or bind its port: {child.describe_exit()}, its error is logged above); "
                "a new one would fail the same way"
            )
        now = time.monotonic()
        while self.restarts and now - self.restarts[0] > RESTART_WINDOW:
            self.restarts.popleft()
        if len(self.restarts) >= self.max_restarts:
            return self._give_up(
                f"workers keep dying: {len(self.restarts)} replaced in the last "
                f"{RESTART_WINDOW:.0f} s ({MAX_RESTARTS_ENV}={self.max_restarts})"
            )
        self.restarts.append(now)
        logger.warning(
            "%s worker replaced by %d (%d replacement(s) in the last %.0f s; at most %d)",
            worker.name,
            worker.start(self.supervisor).pid,
            len(self.restarts),
            RESTART_WINDOW,
            self.max_restarts,
        )

    def _give_up(self, reason: str) -> None:
        logger.error("stopping the server: %s", reason)
        self.failed = True


@dataclass(frozen=True)
class RestSockets:
    """What a REST worker listens on: the REST port, and the metrics port when it serves the
    metrics itself (one worker, no gRPC worker; else ``None``: the metrics process does)."""

    http: socket.socket
    metrics: socket.socket | None
    metrics_endpoint: str

    @property
    def listening(self) -> list[socket.socket]:
        return [self.http] if self.metrics is None else [self.http, self.metrics]


def _rest_worker(
    user_model: Any,
    metrics: Any,
    flask_app: Any,
    sockets: RestSockets,
    args: argparse.Namespace,
    http_server: str,
    ready: Any,
) -> None:
    from modelshelf.request_guard import CLIENT_ERRORS, SeldonClientErrorFilter, guarded
    from modelshelf.serve.metrics import client_error_counter, metrics_app, metrics_port_router
    from modelshelf.serve.rest import SeldonRestApp

    # Client errors: counted (a metric) and warned about once a minute, not an ERROR each.
    CLIENT_ERRORS.sink = client_error_counter(metrics)
    wrapper_log = logging.getLogger("seldon_core.wrapper")
    wrapper_log.addFilter(SeldonClientErrorFilter(count=not guarded(user_model)))
    # A SIGTERM until the server takes it ends this worker at once (the default action, as in
    # the gRPC worker): nothing is in flight before the server accepts.
    load_user_model(user_model)
    app = SeldonRestApp(user_model, metrics, flask_app, args.model_name, args.service_type)
    if sockets.metrics is not None:
        port = sockets.metrics.getsockname()[1]
        app = metrics_port_router(app, metrics_app(metrics, sockets.metrics_endpoint), port)
    _freeze_loaded_objects()
    keepalive = max(args.keepalive, 1)
    if http_server == "modelshelf":
        from modelshelf.serve.http1.server import serve as serve_http

        ready.set()  # loaded: from now on a death is replaced, not a reason to stop
        serve_http(app, sockets.listening, keepalive, bool(args.access_log), GRACEFUL_SECONDS)
        return
    import uvicorn

    from modelshelf.serve.rest import redact_uvicorn_access_log

    redact_uvicorn_access_log()  # its access lines without secret query values, as ours
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=bool(args.access_log),
        log_config=None,
        log_level=args.log_level.lower(),
        timeout_keep_alive=keepalive,
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
        server_header=False,
        date_header=False,
    )
    # uvicorn re-raises the signal it caught once it has shut down: a no-op here.
    signal.signal(signal.SIGTERM, lambda *_: None)
    ready.set()  # loaded: from now on a death is replaced, not a reason to stop
    uvicorn.Server(config).run(sockets=sockets.listening)


def _freeze_loaded_objects() -> None:
    """Keep the loaded model, libraries and app out of the garbage collector's full passes.

    A full collection walks every tracked object -- about 160,000 once scikit-learn, Flask and
    seldon-core are imported, tens of milliseconds -- and requests that build many lists (a
    1,000-row ndarray is 1,000 of them) set one off every few dozen requests: measured, that was
    the p99 of 1,000-row requests. What exists once the model is loaded lives as long as the
    worker, so it is collected once and then frozen (``gc.freeze``).
    """
    gc.collect()
    gc.freeze()


def _return_free_heap() -> None:
    """Give the parent's free heap pages back to the OS before the forks (glibc's
    ``malloc_trim``; under another libc nothing happens).

    Importing scikit-learn, seldon-core and the web stack leaves ~10 MB of freed temporaries in
    the heap that glibc keeps resident; every fork would map them too. Measured at one worker:
    the tree's anonymous memory 165 -> 155 MB; the call takes ~0.1 ms.
    """
    import ctypes

    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    if trim is not None:
        trim(0)


def _metrics_process(
    queue: Any, sock: socket.socket, endpoint: str, args: argparse.Namespace, http_server: str
) -> None:
    import threading

    from modelshelf.serve.metrics import MetricsAggregator, metrics_app

    signal.signal(signal.SIGTERM, lambda *_: None)
    aggregator = MetricsAggregator()
    threading.Thread(target=aggregator.consume, args=(queue,), daemon=True).start()
    if http_server == "modelshelf":
        from modelshelf.serve.http1.server import serve as serve_http

        serve_http(metrics_app(aggregator, endpoint), [sock], 5.0, False, 2.0, "metrics process")
        return
    import uvicorn

    config = uvicorn.Config(
        metrics_app(aggregator, endpoint),
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_config=None,
        log_level=args.log_level.lower(),
        timeout_graceful_shutdown=2,
    )
    uvicorn.Server(config).run(sockets=[sock])


def _annotations() -> dict[str, str]:
    """The pod's annotations (seldon-core's reader, imported only where the file exists: its
    module imports gunicorn and ``pkg_resources``)."""
    if not os.path.isfile("/etc/podinfo/annotations"):
        return {}
    from seldon_core.microservice import load_annotations

    return load_annotations()


def _listen(port: int, option: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("0.0.0.0", port))
    except OSError as exc:  # in use, or not ours to take: one line naming it, not a traceback
        sock.close()
        expected = f"a port this process can listen on ({exc.strerror or exc})"
        raise ConfigurationError(option, str(port), expected, "option") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


#: The levels ``SELDON_LOG_LEVEL`` may name (any case), as seldon-core reads it: ``logging``'s.
_LOG_LEVEL_NAMES = ("DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL")


def _log_level(level: str) -> str:
    """``SELDON_LOG_LEVEL`` when set (it overrides ``--log-level``, as for seldon-core), else
    ``level``; a name ``logging`` does not know stops the start as one line naming it (it was
    ``logging``'s "Unknown level" traceback)."""
    raw = os.environ.get("SELDON_LOG_LEVEL", "").strip()
    if not raw:
        return level
    if raw.upper() not in _LOG_LEVEL_NAMES:
        expected = f"one of {', '.join(_LOG_LEVEL_NAMES)} (any case)"
        raise ConfigurationError("SELDON_LOG_LEVEL", raw, expected, source="environment variable")
    return raw.upper()


def _setup_logging(level: str) -> None:
    _configure_logging(_log_level(level))


#: seldon-core's INFO lines that say nothing a user acts on, each at every start: its
#: "Tensorflow is not installed" notice (11 lines, mostly blank: 8 lines of a graph run's log
#: per node), Flask's whole configuration on one ~1,200-character line, and "Registering the
#: custom error handler...". Below INFO (``--log-level DEBUG``) they are logged as before.
QUIET_SELDON_LOGGERS = ("seldon_core.imports_helper", "seldon_core.wrapper")


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format=LOG_FORMAT)
    logging.getLogger().setLevel(level)
    number = logging.getLevelName(level)
    quiet = number if number < logging.INFO else max(number, logging.WARNING)
    for name in QUIET_SELDON_LOGGERS:
        logging.getLogger(name).setLevel(quiet)


def _exec_seldon(argv: Sequence[str], reason: str) -> None:
    """Hand the process over to seldon-core-microservice (same arguments): the one on ``PATH``,
    else the one installed beside this interpreter (a venv's ``bin/modelshelf`` run without
    activating the venv: ``PATH`` has no ``seldon-core-microservice``)."""
    beside = os.path.join(os.path.dirname(sys.executable), "seldon-core-microservice")
    command = shutil.which("seldon-core-microservice") or beside
    args = ["TRANSFORMER" if a == "OUTPUT_TRANSFORMER" else a for a in argv]
    logger.info("%s: running seldon-core-microservice instead", reason)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(command, [command, *args])
