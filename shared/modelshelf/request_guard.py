"""The front of every Seldon REST request: body size, body shape, unknown paths, client errors.

``ModelServer.model_error_handler`` is a ``RequestGuard``: read on a server object (as
seldon-core's wrapper does, to register it on its Flask app), it is a Flask blueprint bound to
that object which

* refuses a body over ``MODELSHELF_MAX_BODY_BYTES`` with a 413 before reading it;
* reads the body as seldon-core's ``get_request`` would and checks its shape
  (``modelshelf.seldon_payload``) before seldon-core's protocol code sees it: a 400 naming the
  field, never a 500 from deep inside seldon-core;
* answers an unknown path with 404 and a wrong method with 405 (seldon-core's catch-all handler
  makes both a 500), a ``ValueError`` from reading the payload (a ragged ``ndarray``) with 400;
* logs client errors at WARNING at most once a minute (with the last cause), not at ERROR once
  per request;
* answers a request that comes before the model is ready (``ModelNotReadyError``: a readiness
  probe polling ``/health/status`` during a normal start) with seldon-core's 503 and body, logged
  at INFO once per worker and then at DEBUG: seldon-core's handler logged an ERROR per poll.

``modelshelf serve`` applies the same checks on its fast path (``body_checks``) and the same size
limit to every class. A user class opts in with ``model_error_handler = RequestGuard()``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from modelshelf.json_values import number_out_of_range, refused_json_message
from modelshelf.number_settings import whole_env_number
from modelshelf.request_errors import BadRequestError, ModelNotReadyError, RequestRefusedError
from modelshelf.seldon_payload import FEEDBACK_PATHS, PREDICT_PATHS, BodyChecks, unequal_rows

logger = logging.getLogger("modelshelf.requests")

MAX_BODY_ENV = "MODELSHELF_MAX_BODY_BYTES"
#: Large enough for a 1,000,000-value float ndarray as JSON (~20 MB), small enough for a pod.
DEFAULT_MAX_BODY_BYTES = 64 * 2**20
#: Seconds between two WARNINGs about client errors (one process).
WARNING_INTERVAL = 60.0
BLUEPRINT_NAME = "modelshelf_request_errors"
#: seldon-core's wrapper: the endpoints that read a Seldon body, and their paths.
SELDON_ENDPOINTS = frozenset(
    {"Predict", "SendFeedback", "TransformInput", "TransformOutput", "Route", "Aggregate"}
)
SELDON_PATHS = frozenset(
    {
        *PREDICT_PATHS,
        *FEEDBACK_PATHS,
        "/transform-input",
        "/transform-output",
        "/route",
        "/aggregate",
    }
)
_REASONS = {
    404: "MICROSERVICE_NOT_FOUND",
    405: "MICROSERVICE_METHOD_NOT_ALLOWED",
    413: "MICROSERVICE_PAYLOAD_TOO_LARGE",
}


def max_body_bytes() -> int:
    """``MODELSHELF_MAX_BODY_BYTES``: the largest request body read, in bytes."""
    return whole_env_number(MAX_BODY_ENV, DEFAULT_MAX_BODY_BYTES, "a positive number of bytes")


def too_large(size: int | None, limit: int) -> RequestRefusedError:
    """The 413 for a body of ``size`` bytes (``None``: a chunked body, size unknown)."""
    told = f"{size:,} bytes" if size is not None else "a body"
    return RequestRefusedError(
        f"{told} is over the limit of {limit:,} bytes ({MAX_BODY_ENV})", 413, _REASONS[413]
    )


def path_not_found(method: str, path: str) -> RequestRefusedError:
    """The 404 for a path no route serves (for any method): the guard's, and ``modelshelf
    serve``'s for a class without the guard (``SeldonRestApp.not_found``)."""
    return RequestRefusedError(f"{method} {path}: Not Found", 404, _REASONS[404])


def too_deep(where: str) -> BadRequestError:
    """The 400 for JSON nested beyond what Python's reader (its recursion limit) can read."""
    return BadRequestError(
        f"{where} nests arrays or objects too deeply to be read (about 1,000 levels at most)"
    )


class ClientErrorLog:
    """Client errors (4xx) of this process: counted, and a WARNING at most once a minute naming
    the last one -- a client sending bad bodies in a loop must not fill the log."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._unreported = 0
        self._warned_at = -float("inf")
        #: Called with the status of each client error (``modelshelf serve``: a counter metric).
        self.sink: Callable[[int, str], None] | None = None

    def record(self, status: int, path: str, cause: str) -> None:
        """One client error: counted by the sink, and warned about if none was this minute."""
        now = time.monotonic()
        with self._lock:
            self._unreported += 1
            due = now - self._warned_at >= WARNING_INTERVAL
            if due:
                unreported, self._unreported, self._warned_at = self._unreported, 0, now
        if due:
            logger.warning(
                "%d client error(s) (4xx) since the last such warning (at most one a minute); "
                "the last: %d on %s: %s",
                unreported,
                status,
                path,
                cause[:500],
            )
        if self.sink is not None:
            self.sink(status, path)


CLIENT_ERRORS = ClientErrorLog()


class NotReadyLog:
    """Answers of "not ready yet" (503) in this process: the first at INFO, the rest at DEBUG.
    During a start they are expected (a probe polls until ready); not an error."""

    def __init__(self) -> None:
        self.told = False

    def record(self, method: str, path: str, cause: str) -> None:
        level = logging.DEBUG if self.told else logging.INFO
        self.told = True
        logger.log(
            level,
            "not ready yet: %s %s answered 503 (%s) until the model is loaded and every port "
            "listens; further such answers are logged at DEBUG",
            method,
            path,
            cause,
        )


NOT_READY = NotReadyLog()


class SeldonClientErrorFilter(logging.Filter):
    """On seldon-core's wrapper logger: its per-request ERROR line for an error it answers as bad
    data (``MICROSERVICE_BAD_DATA``, a 400) becomes a count in ``CLIENT_ERRORS`` (which warns at
    most once a minute). ``modelshelf serve`` installs it in its workers; for a guarded class the
    guard's own after-request hook has counted the error already (``count=False``)."""

    def __init__(self, count: bool) -> None:
        super().__init__()
        self.count = count

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR or record.funcName != "handle_invalid_usage":
            return True
        found = record.args if isinstance(record.args, dict) else None
        status = found.get("status") if found else None
        if type(status) is not dict or status.get("reason") != "MICROSERVICE_BAD_DATA":
            return True
        if self.count:
            from flask import has_request_context, request

            path = request.path if has_request_context() else "?"
            CLIENT_ERRORS.record(400, path, str(status.get("info")))
        return False


class RequestGuard:
    """``model_error_handler``: on a component, the blueprint guarding its requests."""

    def __get__(self, component: Any, owner: type | None = None) -> Any:
        if component is None:
            return self
        return seldon_request_blueprint(component)


def guarded(component: Any) -> bool:
    """Whether ``component`` carries a ``RequestGuard`` (its requests get these checks)."""
    return isinstance(getattr(type(component), "model_error_handler", None) or None, RequestGuard)


def body_checks(component: Any) -> Callable[[str, Any], None] | None:
    """The body check of ``modelshelf serve``'s fast path for ``component``, if it is guarded."""
    return BodyChecks(component).check if guarded(component) else None


def seldon_request_blueprint(component: Any) -> Any:
    """The Flask blueprint for ``component`` (see the module's description)."""
    from flask import Blueprint, jsonify, request
    from werkzeug.exceptions import HTTPException

    blueprint = Blueprint(BLUEPRINT_NAME, __name__)
    checks = BodyChecks(component)
    limit = max_body_bytes()

    def answer(error: Any) -> Any:
        response = jsonify(error.to_dict())
        response.status_code = error.status_code
        return response

    @blueprint.before_app_request
    def check_request() -> None:
        size = request.content_length
        if size is not None and size > limit:
            raise too_large(size, limit)
        if size is None and request.environ.get("wsgi.input_terminated"):
            # chunked: werkzeug would read it all; stop at the limit instead
            request.environ["wsgi.input"] = _CappedStream(request.environ["wsgi.input"], limit)
        if request.routing_exception is not None:
            return  # Flask answers 404 / 405 next (http_error)
        if request.endpoint not in SELDON_ENDPOINTS:
            if request.path in SELDON_PATHS:  # the static files rule took a wrong method
                raise _method_not_allowed(request.method, request.path)
            return
        if request.method not in ("GET", "POST") or request.path not in checks.by_path:
            return  # OPTIONS: a CORS preflight, answered by Flask and flask-cors
        content_type = request.content_type or ""
        if "multipart/form-data" in content_type:
            return  # seldon-core reads each form field as JSON: its errors are ValueErrors
        text = request.form.get("json") or request.args.get("json")
        if text:
            try:
                body = json.loads(text)
            except RecursionError:
                raise too_deep("the json parameter") from None
            except ValueError as exc:
                raise BadRequestError(f"the json parameter is not JSON: {exc}") from None
        elif not request.is_json:
            raise BadRequestError(
                "the body must be JSON with Content-Type: application/json (or a json= form "
                f"field or query parameter); got Content-Type {content_type or 'none'}"
            )
        else:
            try:
                body = request.get_json(silent=True)  # parsed once: seldon-core reuses it
                if body is None:
                    body = json.loads(request.get_data())  # null, or the parser's complaint
            except RecursionError:
                raise too_deep("the body") from None
            except ValueError as exc:  # a number beyond any type, text that is not UTF-8…
                message = refused_json_message(
                    request.get_data(), exc, "the body is not JSON", non_finite_read=True
                )
                raise BadRequestError(message) from None
        checks.check(request.path, body)

    @blueprint.app_errorhandler(BadRequestError)
    @blueprint.app_errorhandler(RequestRefusedError)
    def refused(error: Any) -> Any:
        response = answer(error)
        if getattr(error, "allow", ()):
            response.headers["Allow"] = ", ".join(error.allow)
        return response

    @blueprint.app_errorhandler(ModelNotReadyError)
    def not_ready(error: ModelNotReadyError) -> Any:
        NOT_READY.record(request.method, request.path, str(error))
        return answer(error)  # seldon-core's status and body (its handler also logs an ERROR)

    @blueprint.app_errorhandler(ValueError)
    @blueprint.app_errorhandler(OverflowError)  # a JSON integer too large for a float
    def bad_payload(exc: Exception) -> Any:
        return answer(BadRequestError(unreadable_data_message(exc, request)))

    @blueprint.app_errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        code = exc.code or 500
        if code == 405:
            error = _method_not_allowed(request.method, request.path)
        elif code == 413:
            error = too_large(request.content_length, limit)
        else:
            reason = _REASONS.get(code, "MICROSERVICE_BAD_DATA")
            text = f"{request.method} {request.path}: {exc.name}"
            if code != 404 and exc.description:
                text += f": {exc.description}"
            error = RequestRefusedError(text, code, reason)
        return refused(error)

    @blueprint.after_app_request
    def count_client_errors(response: Any) -> Any:
        if 400 <= response.status_code < 500:
            found = response.get_json(silent=True) if response.is_json else None
            status = found.get("status") if type(found) is dict else None
            cause = status.get("info") if type(status) is dict else None
            CLIENT_ERRORS.record(response.status_code, request.path, str(cause or response.status))
        return response

    return blueprint


def unreadable_data_message(exc: Exception, current: Any) -> str:
    """What a 400 says when the payload could not become an array: for an ``ndarray`` whose
    rows are of unequal length, which row (numpy's own text names none); else the error."""
    notes = getattr(exc, "__notes__", None)  # modelshelf serve's reader named the row
    if notes:
        return f"the request's data could not be read: {notes[-1]}"
    body = current.get_json(silent=True) if current.is_json else None
    if isinstance(exc, OverflowError):  # "int too large to convert to float": which one
        found = number_out_of_range(body)
        if found is not None:
            return found.message()
    data = body.get("data") if type(body) is dict else None
    rows = data.get("ndarray") if type(data) is dict else None
    try:
        where = unequal_rows(rows)
    except RecursionError:
        where = None
    return f"the request's data could not be read: {where or exc}"


def _method_not_allowed(method: str, path: str) -> RequestRefusedError:
    """405 naming the methods ``path`` takes; 404 when no endpoint has that path (Flask says 405
    for any path there: the static files rule takes every path, for GET)."""
    from flask import current_app

    allowed = sorted(
        {
            found
            for rule in current_app.url_map.iter_rules()
            if rule.rule == path and rule.endpoint != "static"
            for found in rule.methods or ()
        }
    )
    if not allowed:
        return path_not_found(method, path)
    return RequestRefusedError(
        f"{method} {path}: Method Not Allowed (this path takes {', '.join(allowed)})",
        405,
        _REASONS[405],
        allow=allowed,
    )


class _CappedStream:
    """A WSGI input that refuses (413) to give more than ``limit`` bytes."""

    def __init__(self, stream: Any, limit: int) -> None:
        self.stream = stream
        self.limit = limit
        self.left = limit

    def read(self, size: int | None = -1) -> bytes:
        if size is not None and size >= 0:
            return self._read_some(size)
        chunks = []
        while chunk := self._read_some(2**16):
            chunks.append(chunk)
        return b"".join(chunks)

    def readline(self, size: int | None = -1) -> bytes:
        want = self.left + 1 if size is None or size < 0 else min(size, self.left + 1)
        return self._counted(self.stream.readline(want))

    def _read_some(self, size: int) -> bytes:
        return self._counted(self.stream.read(min(size, self.left + 1)))

    def _counted(self, data: bytes) -> bytes:
        self.left -= len(data)
        if self.left < 0:
            raise too_large(None, self.limit)
        return data
