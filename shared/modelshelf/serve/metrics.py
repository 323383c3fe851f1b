"""Custom metrics as seldon-core exposes them, without a ``multiprocessing.Manager``.

seldon-core's ``SeldonMetrics.update`` makes six round trips to a Manager process on every
request, even when the model reports no metrics. Here a worker only sends the metrics a request
actually produced, one message on a ``multiprocessing.Queue`` (pickled by the queue's feeder
thread, off the request path); the metrics process folds them in with seldon-core's own
bookkeeping and serves them in seldon-core's exposition format, per worker as before.

A scrape reads a snapshot taken under the lock the consumer holds while it folds a request in:
seldon-core's ``collect`` walks each worker's dictionary, and a model that adds a series (a new
tag value) per request used to change that dictionary under the walk (``dictionary changed size
during iteration``, a 500 for most scrapes).

With one REST worker and no gRPC worker there is nothing to aggregate: the worker folds its own
metrics in (``WorkerMetrics``) and answers the metrics port itself, on the same event loop
(``metrics_port_router``), so the tree is the parent and one worker. The metrics process held
~8 MB of its own (measured); the page, the names, labels (``worker_id`` is the worker's pid, as
before) and values are the same.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from seldon_core.metrics import SeldonMetrics

logger = logging.getLogger(__name__)

#: The counter of client errors (4xx) ``modelshelf serve`` answered, by ``status``.
CLIENT_ERRORS_KEY = "modelshelf_client_errors"


class QueueMetrics(SeldonMetrics):
    """The ``SeldonMetrics`` a worker hands to seldon-core's protocol functions."""

    def __init__(self, queue: Any) -> None:
        # No Manager: deliberately not calling SeldonMetrics.__init__.
        self.queue = queue
        self.worker_id_func = os.getpid
        self._extra_default_labels: dict[str, str] = {}

    def __del__(self) -> None:
        pass

    def update(self, custom_metrics: list[dict], method: str) -> None:
        if not custom_metrics:
            return  # seldon-core would still write an empty entry: nothing to expose
        for metric in custom_metrics:
            # seldon-core tags the metric in place; the response's meta.metrics shows it.
            tags = metric.get("tags", {})
            tags["method"] = method
        self.queue.put((os.getpid(), [dict(m) for m in custom_metrics], method))

    def generate_metrics(self) -> tuple[str, str]:
        raise RuntimeError("workers do not serve metrics; the metrics process does")


class MetricsAggregator(SeldonMetrics):
    """Holds every worker's metrics in the metrics process; exposes them like seldon-core."""

    def __init__(self) -> None:
        # Re-entrant: SeldonMetrics.update takes it again inside add().
        self._lock = threading.RLock()
        self.data: dict[Any, dict] = {}
        self._current_worker: int = 0
        self.worker_id_func = lambda: self._current_worker
        self._extra_default_labels = {}

    def __del__(self) -> None:
        pass

    def add(self, worker: int, custom_metrics: list[dict], method: str) -> None:
        """Fold one request's metrics from ``worker`` in (one consumer thread calls this)."""
        with self._lock:
            self._current_worker = worker
            SeldonMetrics.update(self, custom_metrics, method)

    def generate_metrics(self) -> tuple[str, str]:
        """seldon-core's exposition of a snapshot (the series as they were at one instant)."""
        with self._lock:
            snapshot = {worker: dict(series) for worker, series in self.data.items()}
        return SeldonMetrics.generate_metrics(MetricsSnapshot(snapshot, self._extra_default_labels))

    def consume(self, queue: Any) -> None:
        """Read the workers' queue until ``None`` arrives."""
        while True:
            item = queue.get()
            if item is None:
                return
            try:
                self.add(*item)
            except Exception:  # a bad metric must not stop the metrics process
                logger.exception("could not record metrics %r", item)


class WorkerMetrics(MetricsAggregator):
    """The metrics of the only worker, kept and exposed in that worker (no metrics process)."""

    def update(self, custom_metrics: list[dict], method: str) -> None:
        if not custom_metrics:
            return  # seldon-core would still write an empty entry: nothing to expose
        for metric in custom_metrics:
            # seldon-core tags the metric in place; the response's meta.metrics shows it.
            tags = metric.get("tags", {})
            tags["method"] = method
        # Copies, as the queue made them: a model that reuses its metric dicts cannot change
        # what is stored.
        copies = [{**m, "tags": dict(m.get("tags", {}))} for m in custom_metrics]
        self.add(os.getpid(), copies, method)


class MetricsSnapshot(SeldonMetrics):
    """Every worker's series at one instant, exposed by seldon-core's own ``collect``."""

    def __init__(self, data: dict[Any, dict], extra_default_labels: dict[str, str]) -> None:
        self._lock = threading.Lock()
        self.data = data
        self.worker_id_func = os.getpid
        self._extra_default_labels = extra_default_labels

    def __del__(self) -> None:
        pass


def client_error_counter(metrics: SeldonMetrics) -> Callable[[int, str], None]:
    """What ``request_guard.CLIENT_ERRORS`` calls per client error in a worker: one count of
    ``modelshelf_client_errors`` (label ``status``) to the metrics process."""

    def count(status: int, path: str) -> None:
        metric = {"type": "COUNTER", "key": CLIENT_ERRORS_KEY, "value": 1}
        metrics.update([{**metric, "tags": {"status": str(status)}}], "request")

    return count


class MetricsPortRouter:
    """One app for a server listening on the REST port and the metrics port: requests on
    connections accepted on ``port`` go to ``metrics`` (a ``MetricsApp``), all others to ``app``.
    ASGI (``__call__``, for uvicorn) and the direct entry of modelshelf's HTTP/1.1 server
    (``answer``)."""

    def __init__(self, app: Any, metrics: MetricsApp, port: int) -> None:
        self.app = app
        self.metrics = metrics
        self.port = port
        self.max_body = app.max_body

    def max_body_at(self, local: tuple[str, int] | None) -> int:
        """The body limit of a connection accepted at ``local``: the metrics port's own (a
        scrape has no body), not the REST port's."""
        if local is not None and local[1] == self.port:
            return self.metrics.max_body
        return self.max_body

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        server = scope.get("server")
        if server is not None and server[1] == self.port:
            return await self.metrics(scope, receive, send)
        return await self.app(scope, receive, send)

    def answer(self, scope: dict, body: bytes | None) -> Any:
        server = scope["server"]
        if server is not None and server[1] == self.port:
            return self.metrics.answer(scope, body)
        return self.app.answer(scope, body)


def metrics_port_router(app: Any, metrics: MetricsApp, port: int) -> MetricsPortRouter:
    """``app`` on every port but ``port``, where ``metrics`` answers."""
    return MetricsPortRouter(app, metrics, port)


class MetricsApp:
    """The metrics port: ``GET endpoint`` in Prometheus' text format, 404 for anything else.
    ASGI (``__call__``) and the direct entry of modelshelf's HTTP/1.1 server (``answer``)."""

    #: Scrapes have no body; one sent anyway is read up to this size, and refused beyond.
    max_body = 1024 * 1024

    def __init__(self, aggregator: MetricsAggregator, endpoint: str) -> None:
        self.aggregator = aggregator
        self.endpoint = endpoint

    def answer(self, scope: dict, body: bytes | None) -> tuple[int, list, bytes]:
        if body is None:  # over ``max_body``: refused unread, the connection then closes
            message = f"A request body over {self.max_body:,} bytes; a scrape sends none.\n"
            return 413, [(b"content-type", b"text/plain; charset=utf-8")], message.encode()
        if scope["path"] == self.endpoint and scope["method"] in ("GET", "HEAD"):
            text, content_type = self.aggregator.generate_metrics()
            status, payload = 200, text.encode()
        else:
            status, payload, content_type = 404, b"not found\n", "text/plain; charset=utf-8"
        return status, [(b"content-type", content_type.encode())], payload

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        status, headers, payload = self.answer(scope, b"")
        headers.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


def metrics_app(aggregator: MetricsAggregator, endpoint: str) -> MetricsApp:
    """The app of the metrics port (``MetricsApp``)."""
    return MetricsApp(aggregator, endpoint)
