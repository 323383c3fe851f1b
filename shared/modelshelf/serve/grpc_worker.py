"""One gRPC worker process: seldon-core's own services (``Model``, ``Generic``, ``Transformer``,
``OutputTransformer``, ``Router``, ``Combiner``, ``Seldon``) and, for a ``MODEL``, the Open
Inference Protocol's ``inference.GRPCInferenceService`` -- all on one server, one port, with
reflection listing them.

The server is, by default, modelshelf's own (``serve/http2``): HTTP/2 on one asyncio thread that
runs each unary call inline, as the REST front end does with httptools. ``MODELSHELF_GRPC_SERVER=
grpcio`` serves with grpcio's server instead, built as seldon-core's ``get_grpc_server`` builds it
(same options) with at least ``POOL_THREADS`` threads. Both take the same servicers (grpcio's
registration API), seldon-core's ``seldon.io/grpc-max-message-size`` annotation, and
``GRPC_THREADS``: how many calls run the user's code at once (1 by default: a class sees one call
at a time, as under seldon-core; on our server more than 1 runs calls in a pool of that many).

Why our own server (measured on 2 cores, h2load with 4 connections, one call in flight each,
``bench/grpc_transport_probe.py``; same handler on both servers, same run): grpcio's own work is
~100 µs of CPU per call (a handler answering fixed bytes: ~225 µs vs ~14 µs here), spread over
its poller, event-engine and pool threads with ~10 context switches per call; and the model's
call ran ~2x slower beside those threads, since numpy releases the GIL inside each ufunc and
they take it. V2 ``ModelInfer`` on the iris LogisticRegression, one row: grpcio 1,773 calls/s at
640 µs of CPU per call, ours 4,828 at 206 (2.7x). Pool sizes (1, 2, 4), grpc.aio with the call
inline, poll strategies and ``grpc.http2.bdp_probe`` had not changed grpcio's figure. In the
bench's gRPC rows (three runs on the shared machine, each the median of 2 rounds) single-row
V2 went from 1.2-1.6x KServe's ModelServer and 2.4-3.4x MLServer (grpcio) to 3.0-4.4x and
5.0-7.2x; 1,000 rows from 1.3-1.4x and 3.3-4.2x to 2.4-3.3x and 4.7-5.4x. A single thread
loses more than grpcio's threads when other processes compete for the cores. Each write to
the socket is a send(2): an answer's frames go out in one.

OpenMP threads: the process counts as one more worker on the cores. ``modelshelf.openmp`` gives a
large request cores ÷ REST workers threads, which in the REST workers is the whole share; a gRPC
process's large requests get cores ÷ (REST workers + gRPC workers) threads unless the class was
given a thread count (XGBoost's ``nthread``). Measured under grpcio on 2 cores, XGBoost, 1,000-row
V2 gRPC requests, 4 connections: 2 threads ~800 calls/s at ~1,000 µs of CPU per call; 1 thread
~1,250 calls/s at ~730 µs.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import threading
from concurrent import futures
from typing import TYPE_CHECKING, Any

import grpc
from seldon_core.metrics import SeldonMetrics

if TYPE_CHECKING:
    from modelshelf.serve.batching import Batcher
    from modelshelf.serve.listeners import ListenerSlot

logger = logging.getLogger(__name__)

#: Seconds in-flight calls get to finish after SIGTERM.
GRACE_SECONDS = 5.0
#: Threads of the gRPC server, at least (calls in the user's code: ``GRPC_THREADS``).
POOL_THREADS = 4


#: Env var choosing the gRPC server: ``http2`` (ours, the default) or ``grpcio``.
SERVER_ENV = "MODELSHELF_GRPC_SERVER"
SERVERS = ("http2", "grpcio")


def grpc_server_kind() -> str:
    """Which server serves gRPC (``MODELSHELF_GRPC_SERVER``); an unknown name is an error."""
    from modelshelf.errors import ConfigurationError

    kind = os.environ.get(SERVER_ENV, "").strip().lower() or SERVERS[0]
    if kind not in SERVERS:
        raise ConfigurationError(
            SERVER_ENV,
            kind,
            "http2 (the default: modelshelf's own single-threaded server) or grpcio (grpcio's)",
            source="environment variable",
        )
    return kind


def run_grpc_worker(
    user_model: Any,
    metrics: SeldonMetrics,
    args: argparse.Namespace,
    annotations: dict[str, str],
    listening: ListenerSlot | None = None,
) -> None:
    """Serve gRPC on ``args.grpc_port`` (SO_REUSEPORT: every gRPC worker binds it) until SIGTERM;
    ``listening`` is set once the port accepts (``modelshelf.serve.listeners``: readiness)."""
    from grpc_reflection.v1alpha import reflection

    from modelshelf.serve.supervisor import load_user_model

    kind = grpc_server_kind()
    calls_at_once = max(args.grpc_threads, 1)
    # Built after the fork: gRPC must not start threads in the parent.
    if kind == "grpcio":
        server: Any = build_grpc_server(annotations, calls_at_once)
    else:
        from modelshelf.serve.http2.grpc_server import GrpcServer

        server = GrpcServer(calls_at_once, max_message_bytes(annotations))
    # Adaptive batching needs the calls on one event loop: our server, one call at a time
    # (grpcio's server and GRPC_THREADS > 1 run calls in threads).
    batcher = None
    if kind == "http2" and calls_at_once == 1 and args.service_type == "MODEL":
        from modelshelf.serve.batching import model_batcher

        batcher = model_batcher(user_model, metrics)
    services = add_seldon_services(server, user_model, metrics, batcher)
    share_cores_with_rest(user_model, args)
    load_user_model(user_model)
    if args.service_type == "MODEL" and _add_v2_service(server, user_model, metrics, args, batcher):
        from modelshelf.serve.grpc_v2 import SERVICE_NAME

        services.append(SERVICE_NAME)
    reflection.enable_server_reflection([*services, reflection.SERVICE_NAME], server)
    if kind == "grpcio":
        _serve_grpcio(server, args.grpc_port, listening)
    else:
        _serve_http2(server, args.grpc_port, listening)


def _serve_http2(server: Any, port: int, listening: ListenerSlot | None) -> None:
    import asyncio

    import uvloop

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        await server.start("0.0.0.0", port)
        if listening is not None:
            listening.set()
        logger.info("gRPC worker listening on 0.0.0.0:%d (modelshelf http2)", port)
        await stop.wait()
        await server.stop(GRACE_SECONDS)

    uvloop.run(serve())


def _serve_grpcio(server: grpc.Server, port: int, listening: ListenerSlot | None) -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    address = f"0.0.0.0:{port}"
    if server.add_insecure_port(address) == 0:
        raise OSError(f"gRPC could not bind {address}")
    server.start()
    if listening is not None:
        listening.set()
    logger.info("gRPC worker listening on %s (grpcio)", address)
    while not stop.wait(1.0):
        pass
    server.stop(GRACE_SECONDS).wait()


def max_message_bytes(annotations: dict[str, str]) -> int | None:
    """Seldon's ``seldon.io/grpc-max-message-size`` annotation, if set (else gRPC's default)."""
    from seldon_core.flask_utils import ANNOTATION_GRPC_MAX_MSG_SIZE

    from modelshelf.errors import ConfigurationError

    if ANNOTATION_GRPC_MAX_MSG_SIZE not in annotations:
        return None
    text = annotations[ANNOTATION_GRPC_MAX_MSG_SIZE]
    try:
        size = int(text)
    except ValueError:
        raise ConfigurationError(
            ANNOTATION_GRPC_MAX_MSG_SIZE,
            text,
            "a whole number of bytes, e.g. 104857600",
            source="annotation",
        ) from None
    logger.info("Setting grpc max message and receive length to %d", size)
    return size


def share_cores_with_rest(user_model: Any, args: argparse.Namespace) -> None:
    """This process's OpenMP threads per large request: cores ÷ every serving process, unless
    the class asked for a count (see the module's docstring). Runs after the fork, so only this
    process's calls change."""
    from modelshelf.openmp import ProcessThreads, available_cores, rest_workers

    threads = getattr(user_model, "threads", None)
    if not isinstance(threads, ProcessThreads) or threads.requested:
        return
    processes = rest_workers() + max(args.grpc_workers, 1)
    threads.requested = max(1, available_cores() // processes)


def build_grpc_server(annotations: dict[str, str], calls_at_once: int) -> grpc.Server:
    """A server with seldon-core's options, ``POOL_THREADS`` threads or more, and at most
    ``calls_at_once`` calls inside a handler at a time."""
    options: list[tuple[str, Any]] = [("grpc.so_reuseport", 1)]
    size = max_message_bytes(annotations)
    if size is not None:
        options += [
            ("grpc.max_message_length", size),
            ("grpc.max_send_message_length", size),
            ("grpc.max_receive_message_length", size),
        ]
    pool = futures.ThreadPoolExecutor(max_workers=max(calls_at_once, POOL_THREADS))
    return grpc.server(pool, options=options, interceptors=[CallsAtOnce(calls_at_once)])


def add_seldon_services(
    server: Any, user_model: Any, metrics: SeldonMetrics, batcher: Batcher | None = None
) -> list[str]:
    """seldon-core's servicer under every service name it answers, on ``server`` (grpcio's or
    ours: both take grpcio's registration calls); the names, for reflection. ``batcher``:
    adaptive batching of ``Predict`` (modelshelf's HTTP/2 server, one call at a time)."""
    from seldon_core.proto import prediction_pb2, prediction_pb2_grpc
    from seldon_core.wrapper import SeldonModelGRPC

    servicer = GuardedSeldonServicer(SeldonModelGRPC(user_model, metrics))
    if batcher is not None and not hasattr(user_model, "predict_grpc"):  # seldon-core's own
        servicer.Predict = _batched_predict(servicer.Predict, user_model, metrics, batcher)
    names = ("Generic", "Model", "Router", "Transformer", "OutputTransformer", "Combiner", "Seldon")
    for name in names:
        getattr(prediction_pb2_grpc, f"add_{name}Servicer_to_server")(servicer, server)
    return [prediction_pb2.DESCRIPTOR.services_by_name[name].full_name for name in names]


class GuardedSeldonServicer:
    """seldon-core's servicer with every call's error answered as a status code.

    Unguarded, any exception became UNKNOWN ("Exception calling application: …") with a
    traceback logged per call. Here a request error (a message that REST's body checks refuse,
    or a 4xx of ``modelshelf.request_errors``) is INVALID_ARGUMENT naming what was wrong, counted in
    the same once-a-minute WARNING as REST's client errors; a model not ready is UNAVAILABLE;
    anything else is INTERNAL with its message, and its traceback logged (a server fault). The
    checks run only after a call failed: a good request pays nothing.
    """

    def __init__(self, servicer: Any) -> None:
        self._servicer = servicer

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._servicer, name)
        if name.startswith("_") or not callable(method):
            return method

        def guarded(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                return method(request, context)
            except Exception as exc:
                _abort_seldon_call(context, name, request, exc)
            raise AssertionError("unreachable: abort raises")

        setattr(self, name, guarded)  # looked up once, when the services are registered
        return guarded


def _batched_predict(
    guarded: Any, user_model: Any, metrics: SeldonMetrics, batcher: Batcher
) -> Any:
    """``Predict`` that joins others' model call while the batcher is busy (a future of the
    call's outcome for our HTTP/2 server); idle, or a request that does not qualify, is
    seldon-core's call as before."""
    from modelshelf.serve.batching import seldon_grpc_batching
    from modelshelf.serve.http2.calls import CallAbortedError

    seldon_pending = seldon_grpc_batching(user_model, metrics)

    def predict(request: Any, context: Any) -> Any:
        def queued() -> Any:
            def fail(exc: Exception) -> tuple[None, int, str | None]:
                with contextlib.suppress(CallAbortedError):  # it sets the code, then raises
                    _abort_seldon_call(context, "Predict", request, exc)
                return None, context.code.value[0], context.details

            pending = seldon_pending(request, fail)
            if pending is None:
                return guarded(request, context)
            return batcher.enqueue(pending)

        return batcher.answer(lambda: guarded(request, context), queued)

    return predict


#: HTTP status of an error (``inference.status_of``) → the gRPC status code that both
#: protocols (Seldon's services, V2's) answer; see ``status_code_of`` for the others.
STATUS_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}


def status_code_of(http_status: int) -> grpc.StatusCode:
    """The gRPC status code of an error with ``http_status``: ``STATUS_CODES``, else any other
    4xx is INVALID_ARGUMENT (the request) and anything else INTERNAL (a server fault)."""
    found = STATUS_CODES.get(http_status)
    if found is not None:
        return found
    if 400 <= http_status < 500:
        return grpc.StatusCode.INVALID_ARGUMENT
    return grpc.StatusCode.INTERNAL


def _abort_seldon_call(
    context: grpc.ServicerContext, method: str, request: Any, exc: Exception
) -> None:
    from modelshelf.request_guard import CLIENT_ERRORS
    from modelshelf.serve.inference import message_of, status_of

    if method == "GraphMetadata" and type(exc) is NotImplementedError:
        # seldon-core's answer on every component (a graph's metadata is the executor's):
        # a method this server does not implement, not a fault with a traceback per call
        context.abort(grpc.StatusCode.UNIMPLEMENTED, str(exc))
    status = status_of(exc)
    message = message_of(exc)
    if status != 503:  # REST's checks name a malformed message better than seldon-core does
        refused = _refusal(method, request)
        if refused is not None:
            status, message = 400, refused
    code = status_code_of(status)
    if code is grpc.StatusCode.INTERNAL:
        logger.exception("Seldon gRPC %s failed", method)
    elif status != 503:
        CLIENT_ERRORS.record(status, f"gRPC {method}", message)
    context.abort(code, message)


def _refusal(method: str, request: Any) -> str | None:
    """What REST's body checks say about ``request`` (the message as JSON), if they refuse it."""
    from google.protobuf.json_format import MessageToDict

    from modelshelf.request_errors import BadRequestError
    from modelshelf.seldon_payload import check_feedback, check_message, check_message_list
    from modelshelf.server import INPUT_ERRORS

    check = {
        "Predict": check_message,
        "TransformInput": check_message,
        "TransformOutput": check_message,
        "Route": check_message,
        "Aggregate": check_message_list,
        "SendFeedback": check_feedback,
    }.get(method)
    if check is None:  # metadata: no payload of the client's to blame
        return None
    body = MessageToDict(request)
    _tensor_values_as_sent(method, body, request)
    try:
        check(body)
    except BadRequestError as refused:
        return refused.message
    except Exception:  # a message the checks cannot read: the call's own error stands
        return None
    if check is check_message and request.HasField("data"):
        # seldon-core turns data into an array before any model code runs (REST does it in
        # our own reader, a 400): ragged rows, or a tensor its values cannot fill, fail there.
        from seldon_core.utils import grpc_datadef_to_array

        if request.data.HasField("tensor") and -1 in request.data.tensor.shape:
            shape = list(request.data.tensor.shape)
            return (  # REST reads it as numpy's reshape; seldon-core's gRPC reader cannot
                f"data.tensor.shape {shape} cannot be read over gRPC: a -1 is not a size "
                "here (seldon-core's gRPC reader sizes the tensor from its shape); send the "
                "number of rows"
            )
        try:
            grpc_datadef_to_array(request.data)
        except INPUT_ERRORS as unreadable:
            return (
                f"data cannot be read as an array ({unreadable}); expected rows of equal "
                "length (ndarray) or a tensor whose shape its values fill"
            )
    return None


def _tensor_values_as_sent(method: str, body: dict, request: Any) -> None:
    """Each SeldonMessage's ``tensor.values`` in ``body`` (the message as JSON) set back to the
    doubles sent: JSON writes a non-finite double as a string ("NaN", "Infinity"), which the
    checks would call text; the tensor holds doubles, and the model's refusal of them stands.
    Every message of the request: Predict's, Aggregate's list, SendFeedback's three."""
    if method == "Aggregate":
        pairs = zip(body.get("seldonMessages") or [], request.seldonMessages, strict=False)
    elif method == "SendFeedback":
        if "reward" in body:  # a float as well: NaN too
            body["reward"] = request.reward
        parts = ("request", "response", "truth")
        pairs = ((body[part], getattr(request, part)) for part in parts if part in body)
    else:
        pairs = ((body, request),)
    for found, message in pairs:
        tensor = found.get("data", {}).get("tensor")
        if tensor is not None and "values" in tensor:
            tensor["values"] = list(message.data.tensor.values)


class CallsAtOnce(grpc.ServerInterceptor):
    """At most ``permits`` unary calls inside their handlers at a time (the others wait for a
    permit in their own thread, after their request has been received and parsed).

    One permit (the default) is a plain lock: a contended ``BoundedSemaphore`` waits and wakes
    through a Python ``Condition``, which under load held ~10 % of the gRPC process's GIL time
    (py-spy, 4 connections). Each method's limited handler is built once, on its first call,
    not a closure per call."""

    def __init__(self, permits: int) -> None:
        self.permits: Any = (
            threading.Lock() if permits == 1 else threading.BoundedSemaphore(permits)
        )
        self._limited: dict[str, Any] = {}

    def intercept_service(self, continuation: Any, details: Any) -> Any:
        limited = self._limited.get(details.method)
        if limited is not None:
            return limited
        handler = continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler  # reflection's stream: no user code; unknown methods: UNIMPLEMENTED
        limited = handler._replace(unary_unary=_limited_call(handler.unary_unary, self.permits))
        self._limited[details.method] = limited  # services are fixed once the server starts
        return limited


def _limited_call(call: Any, permits: Any) -> Any:
    def limited(request: Any, context: grpc.ServicerContext) -> Any:
        with permits:
            return call(request, context)

    return limited


def _add_v2_service(
    server: Any,
    user_model: Any,
    metrics: SeldonMetrics,
    args: argparse.Namespace,
    batcher: Batcher | None = None,
) -> bool:
    """The V2 service beside Seldon's, unless the process cannot hold its stubs.

    Stubs of the protocol (tritonclient's, KServe's, ours) all register ``inference.*`` in
    protobuf's default pool, and a second set fails to import ("Conflict register"). A user's
    class that imported tritonclient then keeps Seldon's gRPC services; only V2 gRPC is missing
    (calls to it answer UNIMPLEMENTED), and the log says why.
    """
    try:
        from modelshelf.serve.grpc_v2 import add_inference_service
    except TypeError as exc:  # descriptor_pool's conflict error
        logger.error(
            "V2 gRPC (inference.GRPCInferenceService) is not served: this process already "
            "holds another copy of the protocol's messages (%s)",
            exc,
        )
        return False
    from modelshelf.serve.inference import InferenceCore

    core = InferenceCore(user_model, args.model_name, seldon_metrics=metrics)
    add_inference_service(server, core, batcher)
    return True
