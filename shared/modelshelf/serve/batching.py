"""Adaptive batching for ``modelshelf serve``: requests that arrive while the model is busy are
joined into one model call, and each gets its own rows of the answer back.

Why no threads and no timer: the model runs on the event loop, so while it works new requests
wait in the sockets. An idle server (nothing queued, no model call in the last two loop passes)
serves a request at once. Requests read just after a model call arrived while it ran: they are
queued and a flush is scheduled with ``call_soon``, so every request the loop reads in that pass
is queued before the flush runs and joins the same call. ``MODELSHELF_MAX_BATCH_TIME_MS`` queues
every request and waits that long for more; ``MODELSHELF_MAX_BATCH_SIZE`` caps the rows of one
call (a larger request is served alone).

What is batched: Seldon predictions (``data.ndarray`` of numbers, optional ``names``, nothing
else in the body), V2 ``…/infer`` requests of one numeric tensor (``np`` codec) asking one
method, and MLflow ``/invocations`` rows of numbers without ``params``, for modelshelf's own
servers; and on modelshelf's HTTP/2 gRPC server, which runs calls on its event loop too, V2
``ModelInfer`` calls of the same kind (``v2_pending``, shared with V2 REST) and Seldon ``Predict``
calls of a numeric ``tensor`` or ``ndarray`` (``seldon_grpc_batching``), one ``model_batcher`` per
gRPC worker (grpcio's server and ``GRPC_THREADS`` > 1 run calls in threads, unbatched).
Requests join only with the same path kind, method, feature names, columns and dtype.
Everything else takes the unbatched path, unchanged.

Exactness: a joined call must give each request, bit for bit, the answer it gets alone. Tree
ensembles do; a BLAS product may not (a 1-row and an n-row product can round differently). So
each process checks its first ``VERIFIED_BATCHES`` joined calls against the requests' own calls
and serves the own answers meanwhile; a difference, or an answer whose rows do not match the
request's, turns batching off for the process (logged once). A joined call that raises is
retried one request at a time, so a bad request gets its own error and the others their answers.

Metrics: ``modelshelf_batch_size`` (requests per joined model call) in the metrics process, as a
seldon-core histogram (its ``TIMER`` type, so buckets are seldon-core's: 1 … 30 and +Inf). Calls
of one request are not observed: seldon-core folds each observation in with numpy (tens of µs in
the metrics process), which cost 65 µs of CPU per single-row request at one connection when every
call was observed; ``modelshelf_predictions`` counts every model call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelshelf.errors import BadRequestError
from modelshelf.number_settings import env_number, whole_env_number
from modelshelf.serve.inference import Answer
from modelshelf.serve.ndarray import array_from_rows

logger = logging.getLogger(__name__)

MAX_BATCH_SIZE_VARIABLE = "MODELSHELF_MAX_BATCH_SIZE"
MAX_BATCH_TIME_VARIABLE = "MODELSHELF_MAX_BATCH_TIME_MS"
DEFAULT_MAX_BATCH_SIZE = 256
#: Joined calls checked against one-by-one calls before batching is trusted in a process.
VERIFIED_BATCHES = 8
BATCH_SIZE_METRIC = "modelshelf_batch_size"
#: How often batch sizes go to the metrics process (one message, not one per call).
METRICS_SECONDS = 1.0
_NUMERIC_KINDS = frozenset("biuf")

Reply = tuple[int, list[tuple[bytes, bytes]], bytes]


@dataclass(frozen=True, slots=True)
class BatchSettings:
    max_rows: int
    max_wait_seconds: float

    @classmethod
    def from_environment(cls) -> BatchSettings:
        """``MODELSHELF_MAX_BATCH_SIZE`` (rows, default 256; 1 turns batching off) and
        ``MODELSHELF_MAX_BATCH_TIME_MS`` (default 0: no added wait)."""
        size = whole_env_number(
            MAX_BATCH_SIZE_VARIABLE, DEFAULT_MAX_BATCH_SIZE, "a positive integer"
        )
        wait = env_number(
            MAX_BATCH_TIME_VARIABLE, 0.0, "0 to 60000 (ms)", zero=True, at_most=60_000
        )
        return cls(size, wait / 1000)


@dataclass(slots=True)
class Pending:
    """One queued request: its rows ``X``; ``run(X) -> (data, context)`` calls the model;
    ``finish(rows, context, first) -> Reply`` answers with its rows (``first``: the first
    request of its call); ``fail(exc) -> Reply`` answers an error as the unbatched path does."""

    key: tuple
    X: np.ndarray
    run: Callable[[np.ndarray], tuple[Any, Any]]
    finish: Callable[[Any, Any, bool], Reply]
    fail: Callable[[Exception], Reply]
    future: asyncio.Future = field(repr=False)

    def alone(self) -> Reply:
        """The request's own model call and answer (or error)."""
        try:
            data, context = self.run(self.X)
            return self.finish(data, context, True)
        except Exception as exc:
            return self.fail(exc)


class Batcher:
    """The queue of one worker's model; ``enqueue`` queues a request to join the next call."""

    def __init__(self, settings: BatchSettings, report: Callable[[list[int]], None] | None):
        self.settings = settings
        self.report = report
        self.enabled = True
        self.verified = 0
        self.queue: list[Pending] = []
        self.rows_queued = 0
        self.scheduled: asyncio.Handle | asyncio.TimerHandle | None = None
        self.sizes: list[int] = []
        self.report_due: asyncio.TimerHandle | None = None
        #: Non-zero from the end of a model call until two loop passes later (``_was_busy``).
        self.busy = 0
        #: The connection (its ``server`` address object) of the request last served alone,
        #: and whether a loop pass has run since its answer was written (``follows_answer``).
        self.answered: Any = None
        self.answered_pass_over = False
        #: The worker's loop once known: on Python 3.11 ``asyncio.get_running_loop`` is a
        #: ``getpid`` system call, and ``served_alone`` runs once per request.
        self.loop: asyncio.AbstractEventLoop | None = None

    def idle(self) -> bool:
        """Nothing queued, no model call in the last two loop passes, no wait configured: a
        request now can join nothing and is served at once (``served_alone`` after it)."""
        return not self.queue and not self.busy and self.settings.max_wait_seconds == 0

    def follows_answer(self, connection: Any) -> bool:
        """The next request of the connection whose request was last served alone, read at
        least a loop pass after its answer was written, nothing queued: served at once, as
        when ``idle``. Usually sent after that answer came (HTTP/1.1 answers in order), so it
        did not arrive while the model ran and can join nothing. A client at one connection
        whose next request beat the two passes (the client woken on this core) otherwise
        queued a call of one: a future and two more loop passes (~10 µs server CPU a request
        at one connection, measured on a one-row LogisticRegression). Requests pipelined in
        the same read still queue and join (modelshelf's server dispatches them in that pass);
        one pipelined in a later read, or any under uvicorn (which starts a connection's next
        request once the answer is sent), is served alone, and requests of other connections
        read in the same pass queue behind it: one more call, each answer the same.
        ``connection`` is compared by identity: the scope's ``server`` (the connection's local
        address tuple), made once per connection by both servers and never rewritten. Not
        ``client``: behind a trusted proxy that is made from ``X-Forwarded-For`` anew for each
        request, so every request of a one-connection client queued."""
        return (
            connection is not None
            and connection is self.answered
            and self.answered_pass_over
            and not self.queue
            and self.settings.max_wait_seconds == 0
        )

    def served_alone(self, connection: Any = None) -> None:
        """A request was just served outside the queue (``idle``): requests read in the next
        two loop passes arrived while it ran, and queue (but ``follows_answer``)."""
        loop = self.loop
        if loop is None or not loop.is_running():
            loop = self.loop = asyncio.get_running_loop()
        self._was_busy(loop)
        self.answered = connection

    def answer(self, alone: Callable[[], Any], queued: Callable[[], Any]) -> Any:
        """``alone()`` now when nothing can join (batching off, or idle: the requests read in
        the next passes then queue), else ``queued()`` (a request's future, or its answer
        when it does not qualify); how the gRPC services (V2 ``ModelInfer``, Seldon
        ``Predict``) use the batcher."""
        if not self.enabled:
            return alone()
        if self.idle():
            try:
                return alone()
            finally:
                self.served_alone()
        return queued()

    def enqueue(self, pending: Pending) -> asyncio.Future:
        """Queue ``pending`` to join the next model call; the future of its reply (an idle
        server's request never comes here: ``RestBatching.answer`` serves it at once)."""
        loop = asyncio.get_running_loop()
        self.queue.append(pending)
        self.rows_queued += len(pending.X)
        if self.rows_queued >= self.settings.max_rows:
            self._drop_gone()  # only now: no per-request bookkeeping for a rare event
        if self.rows_queued >= self.settings.max_rows:
            if self.scheduled is not None:
                self.scheduled.cancel()
            self.scheduled = loop.call_soon(self.flush)
        elif self.scheduled is None:
            wait = self.settings.max_wait_seconds
            self.scheduled = (
                loop.call_later(wait, self.flush) if wait > 0 else loop.call_soon(self.flush)
            )
        return pending.future

    def _drop_gone(self) -> None:
        """Queued requests whose client went away (their futures cancelled: a reset
        connection or stream, a gRPC deadline) leave the queue, and their rows stop counting
        toward ``MODELSHELF_MAX_BATCH_SIZE``: they cut the call short, flushing it before the
        live requests that would have filled it arrived."""
        self.queue = [pending for pending in self.queue if not pending.future.done()]
        self.rows_queued = sum(len(pending.X) for pending in self.queue)

    def flush(self) -> None:
        queued, self.queue, self.rows_queued, self.scheduled = self.queue, [], 0, None
        groups: dict[tuple, list[Pending]] = {}
        for pending in queued:
            # A future already done was cancelled: its client went away (a reset or closed
            # connection or stream, a gRPC deadline). Its rows are left out of the call, which
            # changes no one else's answer (a joined call answers each as alone).
            if not pending.future.done():
                groups.setdefault(pending.key, []).append(pending)
        for members in groups.values():
            chunk: list[Pending] = []
            rows = 0
            for pending in members:
                if chunk and rows + len(pending.X) > self.settings.max_rows:
                    self._serve(chunk)
                    chunk, rows = [], 0
                chunk.append(pending)
                rows += len(pending.X)
            self._serve(chunk)
        self._count_done()
        self._was_busy(asyncio.get_running_loop())
        self.answered = None

    def _was_busy(self, loop: asyncio.AbstractEventLoop) -> None:
        """Requests read in the next two loop passes arrived while the model was working: they
        queue (and join); after that the server counts as idle again. Two passes, because the
        sockets are read in the pass after the call and their handlers run in the one after."""
        self.busy += 1
        self.answered_pass_over = False
        loop.call_soon(self._pass_over, loop, self.busy)

    def _pass_over(self, loop: asyncio.AbstractEventLoop, generation: int) -> None:
        if self.busy == generation:
            self.answered_pass_over = True
        loop.call_soon(self._idle_if, generation)

    def _idle_if(self, generation: int) -> None:
        if self.busy == generation:
            self.busy = 0

    # ------------------------------------------------------------------ one model call

    def _serve(self, chunk: list[Pending]) -> None:
        if len(chunk) == 1 or not self.enabled:
            for pending in chunk:
                _settle(pending, pending.alone)
            return
        try:
            data, context = chunk[0].run(np.concatenate([p.X for p in chunk]))
        except Exception:  # one request may be bad: each alone gets its own answer or error
            for pending in chunk:
                _settle(pending, pending.alone)
            return
        parts = _split(data, [len(p.X) for p in chunk])
        if parts is None:
            self._turn_off(
                chunk[0],
                f"the model answered {_rows_of(data)} rows for a call of "
                f"{sum(len(p.X) for p in chunk)}: not row by row",
            )
        elif self.verified < VERIFIED_BATCHES:
            parts = self._verified(chunk, parts)
        if parts is None:
            for pending in chunk:
                _settle(pending, pending.alone)
            return
        self.sizes.append(len(chunk))
        for index, (pending, rows) in enumerate(zip(chunk, parts, strict=True)):
            _settle(pending, lambda p=pending, r=rows, i=index: p.finish(r, context, i == 0))

    def _verified(self, chunk: list[Pending], parts: list[Any]) -> list[Any] | None:
        """``parts`` if every request's own call answers exactly its part, else ``None``."""
        for pending, rows in zip(chunk, parts, strict=True):
            try:
                own, _ = pending.run(pending.X)
            except Exception:
                return None  # the request's own path answers its error
            if not _identical(own, rows):
                self._turn_off(
                    pending,
                    "a joined call's answer differs from the requests' own "
                    "calls in the last bits (e.g. a BLAS product)",
                )
                return None
        self.verified += 1
        if self.verified == VERIFIED_BATCHES:
            logger.info(
                "adaptive batching: %d joined calls equal one-by-one calls; batching stays on",
                VERIFIED_BATCHES,
            )
        return parts

    def _turn_off(self, pending: Pending, reason: str) -> None:
        self.enabled = False
        logger.warning("adaptive batching is off for this model (%s): %s", pending.key[0], reason)

    def _count_done(self) -> None:
        """Sizes go to the metrics process once a second (one message), not once a call."""
        if self.report is None:
            self.sizes.clear()
        elif self.report_due is None:
            self.report_due = asyncio.get_running_loop().call_later(
                METRICS_SECONDS, self._send_sizes
            )

    def _send_sizes(self) -> None:
        sizes, self.sizes, self.report_due = self.sizes, [], None
        if sizes and self.report is not None:
            try:
                self.report(sizes)
            except Exception:  # metrics must not fail requests
                logger.exception("could not report batch sizes")


def _settle(pending: Pending, answer: Callable[[], Reply]) -> None:
    # A guard: ``flush`` leaves cancelled futures out, and none can be cancelled while the
    # call holds the loop; set_result on one would raise out of the flush.
    if pending.future.done():
        return
    try:
        pending.future.set_result(answer())
    except Exception as exc:  # answering failed: that request's error, not the batch's
        try:
            pending.future.set_result(pending.fail(exc))
        except Exception as failed:
            pending.future.set_exception(failed)


def _rows_of(data: Any) -> int | None:
    shape = getattr(data, "shape", None)
    return shape[0] if shape else None


def _split(data: Any, counts: list[int]) -> list[Any] | None:
    """``data``'s rows, ``counts[i]`` for request ``i``; ``None`` unless an array of
    ``sum(counts)`` rows."""
    if not isinstance(data, np.ndarray) or data.ndim == 0 or data.shape[0] != sum(counts):
        return None
    parts = []
    at = 0
    for count in counts:
        parts.append(data[at : at + count])
        at += count
    return parts


def _identical(own: Any, rows: np.ndarray) -> bool:
    if not isinstance(own, np.ndarray) or own.dtype != rows.dtype or own.shape != rows.shape:
        return False
    if own.dtype.kind == "O":
        return own.tolist() == rows.tolist()
    return np.ascontiguousarray(own).tobytes() == np.ascontiguousarray(rows).tobytes()


def _first_row_holds_text(rows: Any) -> bool:
    """Whether Seldon rows are a table with text (``names`` + string/number rows, a pipeline's
    input): such rows never join (``batchable_rows``), and turning them into an array first
    made numpy write every value as text (~200 µs for 100 rows of 4, measured as the one-hot
    pipeline's 100-row requests at 16 connections costing 0.76 against 0.55 ms of server CPU
    with batching on and off in the realistic bench)."""
    first = rows[0] if type(rows) is list and rows else None
    return type(first) is list and str in set(map(type, first))


def batchable_rows(X: Any) -> bool:
    """A 2-D numeric array: what joins without any per-content conversion."""
    return isinstance(X, np.ndarray) and X.ndim == 2 and X.dtype.kind in _NUMERIC_KINDS


def batch_size_reporter(seldon_metrics: Any) -> Callable[[list[int]], None] | None:
    """Batch sizes to the metrics process, as a seldon-core histogram (``TIMER`` takes
    milliseconds and exposes seconds: a size ``n`` is sent as ``n * 1000``)."""
    update = getattr(seldon_metrics, "update", None)
    if update is None:
        return None

    def report(sizes: list[int]) -> None:
        update(
            [{"type": "TIMER", "key": BATCH_SIZE_METRIC, "value": n * 1000} for n in sizes], "batch"
        )

    return report


# ----------------------------------------------------------------------- the protocols' side

SELDON_PREDICT_PATHS = frozenset({"/predict", "/api/v1.0/predictions", "/api/v0.1/predictions"})


class RestBatching:
    """Which REST requests join a batch, and how each is answered from its rows."""

    def __init__(self, app: Any, protocols: Any, batcher: Batcher) -> None:
        from modelshelf.serve import protocol

        self.app = app
        self.core = protocols.core
        self.v2 = protocols.v2
        self.mlflow = protocols.mlflow
        self.batcher = batcher
        self.respond_seldon = protocol.respond
        self.run_seldon = seldon_model_call(app.user_model, app.metrics)

    def answer(self, scope: dict, body: bytes) -> Reply | asyncio.Future | None:
        """The reply when it is known now, else the future of the request queued to join a
        model call (no coroutine: modelshelf's HTTP/1.1 server waits on the future), or
        ``None`` for a request the unbatched path answers."""
        batcher = self.batcher
        if scope["method"] != "POST" or not batcher.enabled:
            return None
        path: str = scope["path"]
        seldon = path in SELDON_PREDICT_PATHS
        mlflow = path == "/invocations"
        if not (seldon or mlflow or (path.startswith("/v2/models/") and path.endswith("/infer"))):
            return None
        connection = scope.get("server")  # one object per connection (``follows_answer``)
        if batcher.idle() or batcher.follows_answer(connection):
            # Nothing to join: the unbatched path, without a queue entry, future or closures (a
            # single request at one connection then pays ~nothing for batching; measured with
            # the model stubbed: 2-3 µs less per V2 request, 5-6 µs per Seldon one). A call
            # that raises (the server answers a bare 500) ran the model all the same: the
            # requests read meanwhile must still queue (``served_alone`` in ``finally``).
            try:
                return self.app.handle(scope, body)
            finally:
                batcher.served_alone(connection)
        if seldon:
            pending = self._seldon(scope, path, body)
        elif mlflow:  # rows of numbers, read by the MLflow adapter (``MLflowScoring.pending``)
            pending = self.mlflow.pending(scope, body)
        else:
            pending = self._v2(scope, path, body)
        if pending is None or type(pending) is tuple:  # parsed, not batchable: answered here
            return pending
        return batcher.enqueue(pending)

    def _seldon(self, scope: dict, path: str, body: bytes) -> Pending | Reply | None:
        """A joinable request; else its reply (a body decoded here is not decoded again), or
        ``None`` for the unbatched path (not a fast-path body, or one for Flask to judge)."""
        app = self.app
        if app.fast.get(path) is not app.predict or not app._plain_json(scope):
            return None
        request = app.decode(body)
        if request is None:
            return None
        data = request.get("data") if type(request) is dict and len(request) == 1 else None
        names = data.get("names", []) if type(data) is dict else None
        if (
            names is None
            or "ndarray" not in data
            or not data.keys() <= _SELDON_KEYS
            or type(names) is not list
            or not all(type(n) is str for n in names)
        ):
            return app.call_decoded(app.predict, path, request)
        if app.check_body is not None:  # a SeldonRestApp always has it (None: unguarded)
            try:
                app.check_body(path, request)
            except Exception as exc:
                return app.flask_error(exc, path)
        rows = data["ndarray"]
        if _first_row_holds_text(rows):  # never joins: spare numpy's text array of it all
            return app.call_decoded(app.predict, path, request, checked=True)
        try:
            X = array_from_rows(rows)
        except Exception:
            X = None  # ragged, not numbers…: seldon-core's path answers (or refuses) it
        if X is None or not batchable_rows(X):
            return app.call_decoded(app.predict, path, request, checked=True)
        predict = app.predict
        respond = self.respond_seldon
        user_model = app.user_model

        def finish(rows: Any, context: Any, first: bool) -> Reply:
            metrics, tags = context
            response = respond(user_model, request, rows, None, metrics if first else [], tags)
            return app.encode(predict, response, path)

        return Pending(
            ("seldon", tuple(names), X.shape[1], X.dtype.str),
            X,
            self.run_seldon(names, None),
            finish,
            lambda exc: app.flask_error(exc, path),
            asyncio.get_running_loop().create_future(),
        )

    def _v2(self, scope: dict, path: str, body: bytes) -> Pending | Reply | None:
        parts = path.split("/")[1:]  # "v2", "models", name, ["versions", v,] "infer"
        if len(parts) == 4:
            version = None
        elif len(parts) == 6 and parts[3] == "versions":
            version = parts[4]
        else:
            return None
        core, v2 = self.core, self.v2
        try:
            core.check(parts[2], version)
            request, binary = v2.parse(scope, body)
            plan = core.plan(request)
        except Exception as exc:  # answered here: the body is not parsed again
            return v2.error(exc, f"POST {path}")
        pending = v2_pending(
            core,
            request,
            plan,
            lambda response: v2.reply(response, request, binary),
            lambda exc: v2.error(exc, path),
        )
        if pending is None:
            try:
                return v2.reply(core.run_plan(request, plan), request, binary)
            except Exception as exc:
                return v2.error(exc, f"POST {path}")
        return pending


_SELDON_KEYS = frozenset({"names", "ndarray"})


def v2_pending(
    core: Any,
    request: Any,
    plan: Any,
    reply: Callable[[Any], Any],
    error: Callable[[Exception], Any],
) -> Pending | None:
    """A planned V2 request (REST or gRPC) that may join others' model call, or ``None`` when
    it does not qualify (parameters, more than one method, not one 2-D numeric array): the
    caller runs it unbatched. ``reply(response)`` and ``error(exc)`` write the protocol's
    answers; a refusal names the input as ``run_plan``'s does."""
    if plan.params or len(plan.methods) != 1 or not batchable_rows(plan.X):
        return None
    if plan.methods[0] == core.frame_method:  # a DataFrame answer: served alone (see README)
        return None
    method = plan.methods[0]
    names = plan.names

    def run(X: np.ndarray) -> tuple[Any, Any]:
        answer = core.call(X, names, method)
        return answer.data, answer.output_names

    def finish(rows: Any, output_names: Any, first: bool) -> Any:
        return reply(core.respond(request, {method: Answer(rows, output_names)}))

    def fail(exc: Exception) -> Any:
        if isinstance(exc, BadRequestError):
            exc = core.named_input_error(request, exc) or exc
        return error(exc)

    return Pending(
        ("v2", method, tuple(names), plan.X.shape[1], plan.X.dtype.str),
        plan.X,
        run,
        finish,
        fail,
        asyncio.get_running_loop().create_future(),
    )


def seldon_model_call(
    user_model: Any, seldon_metrics: Any
) -> Callable[[list[str], Any], Callable[[np.ndarray], tuple[Any, Any]]]:
    """``run_for(names, meta)``: a joined Seldon request's ``Pending.run``, the model call as
    seldon-core's ``predict`` makes it (``client_predict``, then the custom metrics), for REST
    and gRPC alike; seldon-core's functions are imported here, at load, not per request."""
    from seldon_core.metrics import PREDICT_METRIC_METHOD_TAG
    from seldon_core.user_model import client_custom_metrics, client_predict

    def run_for(names: list[str], meta: Any) -> Callable[[np.ndarray], tuple[Any, Any]]:
        def run(X: np.ndarray) -> tuple[Any, Any]:
            answer = client_predict(user_model, X, names, meta=meta)
            metrics = client_custom_metrics(
                user_model, seldon_metrics, PREDICT_METRIC_METHOD_TAG, answer.metrics
            )
            return answer.data, (metrics, answer.tags)

        return run

    return run_for


def seldon_grpc_batching(
    user_model: Any, seldon_metrics: Any
) -> Callable[[Any, Callable[[Exception], Any]], Pending | None]:
    """``pending(request, fail)``: a Seldon-protocol gRPC ``Predict`` (a ``SeldonMessage``) that
    may join others' model call: ``data`` as a ``tensor`` or an ``ndarray`` of numbers, no
    ``meta``; else ``None`` (seldon-core's path answers it). Each answer is seldon-core's own
    ``construct_response`` for the request's rows; custom metrics go with the first request of
    a joined call, as on REST. Built once per gRPC worker: its imports run at load."""
    from seldon_core.utils import construct_response, extract_request_parts

    run_for = seldon_model_call(user_model, seldon_metrics)

    def pending(request: Any, fail: Callable[[Exception], Any]) -> Pending | None:
        if request.WhichOneof("data_oneof") != "data" or request.HasField("meta"):
            return None
        if request.data.WhichOneof("data_oneof") not in _SELDON_GRPC_DATA:
            return None
        try:
            X, meta, datadef, _ = extract_request_parts(request)
        except Exception:
            return None  # seldon-core's path answers (or refuses) it
        if not batchable_rows(X):
            return None
        names = list(datadef.names)

        def finish(rows: Any, context: Any, first: bool) -> Any:
            metrics, tags = context
            response = construct_response(
                user_model, False, request, rows, meta, metrics if first else [], tags
            )
            return response.SerializeToString(), 0, None

        return Pending(
            ("seldon-grpc", tuple(names), X.shape[1], X.dtype.str),
            X,
            run_for(names, meta),
            finish,
            fail,
            asyncio.get_running_loop().create_future(),
        )

    return pending


_SELDON_GRPC_DATA = frozenset({"tensor", "ndarray"})


def model_batcher(user_model: Any, metrics: Any) -> Batcher | None:
    """The batcher of a worker's model, or ``None``: off (``MODELSHELF_MAX_BATCH_SIZE=1``), or a
    class that is not one of modelshelf's servers (a user's ``predict`` may not be row by row),
    or one that reads raw payloads. A gRPC worker asks only with modelshelf's HTTP/2 server
    running one call at a time (``grpc_worker``): the batcher runs on its event loop, and V2
    ``ModelInfer`` and Seldon ``Predict`` share it."""
    from modelshelf.serve.protocol import _has_own_predict_raw
    from modelshelf.server import ModelServer

    settings = BatchSettings.from_environment()
    if settings.max_rows <= 1 or not isinstance(user_model, ModelServer):
        return None
    if _has_own_predict_raw(user_model):
        return None
    return Batcher(settings, batch_size_reporter(metrics))


def rest_batching(app: Any, protocols: Any) -> RestBatching | None:
    """Batching for the REST app of a MODEL, or ``None``: no ``model_batcher``, or a class
    with seldon-core's ``predict_rest``."""
    batcher = model_batcher(app.user_model, app.metrics)
    if batcher is None or hasattr(app.user_model, "predict_rest"):
        return None
    return RestBatching(app, protocols, batcher)
