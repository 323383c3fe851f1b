"""The REST front end: an ASGI app with fast paths, and seldon-core's Flask app behind it.

Fast paths (measured: the Flask/gunicorn stack, stdlib JSON and the Manager-backed metrics cost
more than the model): ``POST`` with a JSON body to the predict, transform-input,
transform-output, route and aggregate endpoints. They decode with orjson, call seldon-core's own
protocol functions (``seldon_core.seldon_methods``; for ``ndarray`` predictions
``modelshelf.serve.protocol``, which converts the arrays in C) with Manager-free metrics, and
encode with orjson, keys sorted like Flask's ``jsonify``. An exception goes through the Flask
app's own error handlers (the wrapper's and the class's ``model_error_handler`` blueprint), so
statuses and bodies are the wrapper's.

Every other request -- form-encoded or multipart bodies, ``?json=``, feedback, health status,
metadata, ``/seldon.json``, unknown paths, CORS preflights, bodies orjson cannot read -- is handed
unchanged to seldon-core's Flask app, called in-process through a small WSGI bridge. Except
``/health/status`` while a gRPC worker does not listen yet: 503 for every class (``not_listening``);
and for a class without our guard (``request_guard``), a path no route serves: 404, as the guard
answers it (``not_found``), not seldon-core's 500.
"""

from __future__ import annotations

import io
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from seldon_core import seldon_methods
from seldon_core.metrics import SeldonMetrics
from seldon_core.utils import getenv_as_bool

from modelshelf.redaction import redact_parameters
from modelshelf.request_errors import ModelNotReadyError
from modelshelf.request_guard import (
    CLIENT_ERRORS,
    NOT_READY,
    body_checks,
    guarded,
    max_body_bytes,
    path_not_found,
    too_large,
)
from modelshelf.serve import listeners, protocol
from modelshelf.serve.http1.connection import content_length
from modelshelf.serve.inference import InferenceCore
from modelshelf.serve.protocol import without_fragments
from modelshelf.serve.protocols import ProtocolRoutes

# Keys sorted like Flask's jsonify; what orjson would write differently from Flask (datetimes,
# dataclasses) or not at all (numpy scalars: Flask fails on them) raises TypeError, and Flask
# answers instead.
JSON_OPTIONS = (
    orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
)
JSON_HEADERS = [(b"content-type", b"application/json")]
PING_PATH = "/health/ping"
#: seldon-core's readiness endpoints (its ``health_status``).
STATUS_PATHS = frozenset({"/health/status", "/api/v1.0/health/status"})
# orjson reads an integer beyond the 64-bit range (from 19 digits when negative, 20 otherwise)
# as a float, Python's json as an int. 19 digits in a row send the body to Flask: translating
# the body to find them costs about 25 µs for 1,000 rows, a regular expression 20 times that.
# A run right after a '.' is a fraction, which both read as the same float: a float's repr
# between 0.001 and 0.01 (0.0012345678901234567) has 19 such digits, and sent every row holding
# one to Flask (2.7x the server CPU of a one-row request). So a body goes to Flask only when it
# has more runs than fraction runs (a run of 38 digits or more counts twice: Flask, as before).
_DIGITS_AS_ZEROS = bytes(
    0x30 if 0x30 <= byte <= 0x39 else byte if byte == 0x2E else 0x20 for byte in range(256)
)
_LONG_DIGIT_RUN = b"0" * 19
_LONG_FRACTION_RUN = b"." + _LONG_DIGIT_RUN

Headers = list[tuple[bytes, bytes]]
Reply = tuple[int, Headers, bytes]


class RedactedAccessLog(logging.Filter):
    """uvicorn's access line (``MODELSHELF_HTTP_SERVER=uvicorn``) without the values of query
    parameters named as a secret's, as modelshelf's own server logs it: uvicorn writes the
    query as sent (``?token=…``, ``?key=…``) and has no hook but its logger's."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        # uvicorn's: (client, method, path with query, HTTP version, status)
        if type(args) is tuple and len(args) == 5 and type(args[2]) is str and "?" in args[2]:
            path, _, query = args[2].partition("?")
            record.args = (args[0], args[1], f"{path}?{redact_parameters(query)}", *args[3:])
        return True


def redact_uvicorn_access_log() -> None:
    """Install ``RedactedAccessLog`` on uvicorn's access logger (once per worker)."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(existing, RedactedAccessLog) for existing in access.filters):
        access.addFilter(RedactedAccessLog())


def _fast_methods() -> dict[str, Callable[..., Any]]:
    predict = protocol.predict
    return {
        "/predict": predict,
        "/api/v1.0/predictions": predict,
        "/api/v0.1/predictions": predict,
        "/transform-input": seldon_methods.transform_input,
        "/transform-output": seldon_methods.transform_output,
        "/route": seldon_methods.route,
        "/aggregate": seldon_methods.aggregate,
    }


def _is_json(content_type: bytes) -> bool:
    """Flask's ``request.is_json``, for UTF-8 bodies (other charsets take the Flask path)."""
    mimetype, _, params = content_type.partition(b";")
    mimetype = mimetype.strip().lower()
    if params and b"charset" in params.lower() and b"utf-8" not in params.lower():
        return False
    return mimetype == b"application/json" or (
        mimetype.startswith(b"application/") and mimetype.endswith(b"+json")
    )


class SeldonRestApp:
    """The ASGI app of one user object; ``flask_app`` is seldon-core's ``get_rest_microservice``.
    A ``MODEL``'s V2, KServe V1 and MLflow paths go to ``protocols`` (``model_name``: the name
    they serve the model under, default the model's own)."""

    def __init__(
        self,
        user_model: Any,
        metrics: SeldonMetrics,
        flask_app: Any,
        model_name: str | None = None,
        service_type: str = "MODEL",
    ) -> None:
        self.user_model = user_model
        self.metrics = metrics
        self.flask_app = flask_app
        self.fast = _fast_methods()
        if getenv_as_bool("PAYLOAD_PASSTHROUGH", default=False):
            # predict then takes the raw body: seldon-core's path does that.
            for path in ("/predict", "/api/v1.0/predictions", "/api/v0.1/predictions"):
                del self.fast[path]
        self.predict = protocol.predict
        # Guarded classes (ours): Seldon bodies checked before seldon-core reads them.
        self.check_body = body_checks(user_model)
        # Other classes: a path no route serves is our 404, not seldon-core's 500.
        self.unknown_path = None if guarded(user_model) else _unknown_path_test(flask_app)
        self.max_body = max_body_bytes()
        self.json_headers = [*JSON_HEADERS, *_cors_headers(flask_app)]
        self.ping_reply: Reply = (
            200,
            [(b"content-type", b"text/html; charset=utf-8"), *_cors_headers(flask_app)],
            b"pong",
        )
        self.protocols: ProtocolRoutes | None = None
        self.batching: Any = None
        if service_type == "MODEL":
            core = InferenceCore(user_model, model_name, seldon_metrics=metrics)
            self.protocols = ProtocolRoutes(core)
            from modelshelf.serve.batching import rest_batching

            self.batching = rest_batching(self, self.protocols)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await _read_body(receive, _content_length(scope), self.max_body)
        reply = self.answer(scope, body)
        status, headers, payload = reply if type(reply) is tuple else await reply
        # A new list: a reply's headers may be shared by every reply (``json_headers``).
        headers = [*headers, (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    def answer(self, scope: dict, body: bytes | None) -> Reply | Awaitable[Reply]:
        """One request, whole: the direct entry of modelshelf's HTTP/1.1 server (no ASGI
        messages, no Task). The reply, or for a prediction queued to join others' model call
        the future of it. ``body`` is ``None`` when it is over ``max_body``: refused before it
        is read whole. The reply has no ``content-length``; the server adds it."""
        if body is None:
            return self.too_large(scope)
        if self.batching is not None:  # predictions may join others' model call
            reply = self.batching.answer(scope, body)
            if reply is not None:
                return reply
        return self.handle(scope, body)

    def handle(self, scope: dict, body: bytes) -> Reply:
        path = scope["path"]
        method = scope["method"]
        if method == "POST":
            function = self.fast.get(path)
            if function is not None and self._plain_json(scope):
                reply = self.call(function, path, body)
                if reply is not None:
                    return reply
        elif path == PING_PATH and method == "GET":
            return self.ping_reply
        elif method == "GET" and path in STATUS_PATHS and not listeners.all_listening():
            return self.not_listening(scope, body)
        elif method == "HEAD":
            # As GET (RFC 9110 9.3.2: the same fields, Content-Length included); the server
            # sends no body. Flask's HEAD answer has none, and routes of ours take no HEAD.
            return self.handle({**scope, "method": "GET"}, body)
        if self.protocols is not None:
            reply = self.protocols.handle(scope, body)
            if reply is not None:
                return reply
        if self.unknown_path is not None and self.unknown_path(path):
            return self.not_found(scope, body)
        return self.call_flask(scope, body)

    @staticmethod
    def _plain_json(scope: dict) -> bool:
        """A JSON body and nothing Flask would read differently (``?json=``, CORS)."""
        if b"json" in scope.get("query_string", b""):
            return False
        json_body = False
        for name, value in scope["headers"]:
            if name == b"content-type":
                json_body = _is_json(value)
            elif name == b"origin":
                return False
        return json_body

    def call(self, function: Callable[..., Any], path: str, body: bytes) -> Reply | None:
        """One fast-path request; ``None`` when the body is for Flask to judge."""
        request = self.decode(body)
        if request is None:
            return None
        return self.call_decoded(function, path, request)

    def call_decoded(
        self, function: Callable[..., Any], path: str, request: Any, checked: bool = False
    ) -> Reply:
        """``call`` on a body already decoded (``checked``: and its checks passed)."""
        try:
            if self.check_body is not None and not checked:
                self.check_body(path, request)
            response = function(self.user_model, request, self.metrics)
        except Exception as exc:
            return self.flask_error(exc, path)
        return self.encode(function, response, path)

    @staticmethod
    def decode(body: bytes) -> Any:
        """A fast-path body as JSON; ``None`` when it is for Flask to judge."""
        digits = body.translate(_DIGITS_AS_ZEROS)
        if _LONG_DIGIT_RUN in digits and digits.count(_LONG_DIGIT_RUN) != digits.count(
            _LONG_FRACTION_RUN
        ):
            return None  # maybe an integer beyond 64 bits: Flask's json keeps it an int
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            return None  # NaN, other encodings, or not JSON: Flask answers as the wrapper does

    def encode(self, function: Callable[..., Any], response: Any, path: str) -> Reply:
        """A fast path's response as Flask's ``jsonify`` would write it."""
        status = 200
        if function is self.predict and isinstance(response, dict):
            found = response.get("status")
            if found is not None and "code" in found:
                status = found["code"]
        try:
            payload = orjson.dumps(response, option=JSON_OPTIONS) + b"\n"
        except TypeError:
            return self.flask_jsonify(without_fragments(response), path, status)
        if b"u" in payload and b"null" in payload:  # memchr first: a search costs 1 ns a byte
            # orjson writes NaN and infinities as null, Flask as NaN / Infinity: let Flask
            # encode any response that may hold one (a bytes search; true nulls are rare).
            return self.flask_jsonify(without_fragments(response), path, status)
        return status, self.json_headers, payload

    def too_large(self, scope: dict) -> Reply:
        """413 for a body over ``MODELSHELF_MAX_BODY_BYTES``; the connection is closed, so the
        rest of the body is never read."""
        error = too_large(_content_length(scope), self.max_body)
        CLIENT_ERRORS.record(413, scope["path"], error.message)
        found = self.protocols.refusal(scope["path"], error) if self.protocols else None
        if found is not None:  # V2, KServe V1, MLflow: their own error bodies
            return 413, [*found[1], (b"connection", b"close")], found[2]
        payload = orjson.dumps(error.to_dict()) + b"\n"
        return 413, [*self.json_headers, (b"connection", b"close")], payload

    def not_listening(self, scope: dict, body: bytes) -> Reply:
        """seldon-core's 503 "not ready" for its ``/health/status`` while a gRPC worker does
        not listen yet (``serve.listeners``), for every class: a user's own ``health_status``
        (or seldon-core's default, ready at once) knows nothing of our gRPC workers. Logged
        as our classes' are (``NOT_READY``: once at INFO), through Flask for its headers."""
        error = ModelNotReadyError()
        NOT_READY.record(scope["method"], scope["path"], str(error))
        return self.flask_answer(scope, body, error)

    def not_found(self, scope: dict, body: bytes) -> Reply:
        """404 for a path no route serves, as our classes' guard answers it
        (``request_guard``), for a class without the guard: seldon-core's catch-all handler
        made it a 500 with the text "404 Not Found" (405 for a POST: its static files rule
        takes every path, for GET)."""
        error = path_not_found(scope["method"], scope["path"])
        CLIENT_ERRORS.record(404, scope["path"], error.message)
        return self.flask_answer(scope, body, error)

    def flask_answer(self, scope: dict, body: bytes, error: Any) -> Reply:
        """``error`` (a ``SeldonMicroserviceException``) as Flask answers it to this request:
        its JSON, status, and the headers Flask's after-request hooks add (flask-cors')."""
        from flask import jsonify

        app = self.flask_app
        with app.request_context(_environ(scope, body)):
            response = jsonify(error.to_dict())
            response.status_code = error.status_code
            return _from_flask(app.process_response(response))

    # ------------------------------------------------------------------ Flask
    def flask_error(self, exc: Exception, path: str) -> Reply:
        """The wrapper's answer to ``exc``: its handlers, the class's blueprint, its logging."""
        app = self.flask_app
        with app.test_request_context(path, method="POST"):
            response = app.process_response(app.make_response(app.handle_user_exception(exc)))
            return _from_flask(response)

    def flask_jsonify(self, value: Any, path: str, status: int) -> Reply:
        """What orjson cannot encode, encoded (or refused) by Flask's ``jsonify``."""
        from flask import jsonify

        app = self.flask_app
        with app.test_request_context(path, method="POST"):
            try:
                response = jsonify(value)
                response.status_code = status
            except Exception as exc:
                response = app.make_response(app.handle_user_exception(exc))
            return _from_flask(app.process_response(response))

    def call_flask(self, scope: dict, body: bytes) -> Reply:
        """Run seldon-core's Flask app on this request (the WSGI interface, in-process)."""
        started: list[Any] = []

        def start_response(status: str, headers: list, exc_info: Any = None) -> Any:
            started[:] = [status, headers]
            return lambda chunk: None

        result = self.flask_app(_environ(scope, body), start_response)
        try:
            payload = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        status_line, headers = started
        return int(status_line.split(" ", 1)[0]), _asgi_headers(headers), payload


def _unknown_path_test(flask_app: Any) -> Callable[[str], bool] | None:
    """``unknown(path)``: whether no route of the Flask app serves ``path`` (by any method),
    its static files rule aside: seldon-core's app serves no files (it has no static folder)
    but that rule takes every path for GET. ``None`` (Flask answers as before) when the app
    serves files, or when the class registered its own handlers for HTTP errors (its
    ``model_error_handler`` blueprint): then it answers unknown paths its own way."""
    from werkzeug.exceptions import HTTPException, NotFound
    from werkzeug.routing import Map

    folder = flask_app.static_folder
    if folder is not None and os.path.isdir(folder):
        return None
    for by_code in flask_app.error_handler_spec.values():
        for code, by_class in by_code.items():
            if code is not None or any(issubclass(c, HTTPException) for c in by_class):
                return None
    url_map = flask_app.url_map
    rules = [rule for rule in url_map.iter_rules() if rule.endpoint != "static"]
    # A route's own path is served: a set lookup, not werkzeug's ~4 µs match (a user class's
    # /health/status probes and /metadata come here).
    served = frozenset(rule.rule for rule in rules if not rule.arguments)
    routes = Map(
        [rule.empty() for rule in rules],
        converters=url_map.converters,
        strict_slashes=url_map.strict_slashes,
        merge_slashes=url_map.merge_slashes,
    ).bind("")

    def unknown(path: str) -> bool:
        if path in served:
            return False
        try:
            routes.match(path)
        except NotFound:
            return True
        except HTTPException:  # another method, a redirect: a path the app serves
            return False
        return False

    return unknown


def _cors_headers(flask_app: Any) -> Headers:
    """The CORS headers the Flask app (flask-cors) adds to a request without ``Origin``."""
    probe = flask_app.test_client().get(PING_PATH)
    found = [(k, v) for k, v in probe.headers.items() if k.lower().startswith("access-control-")]
    return _asgi_headers(found)


def _from_flask(response: Any) -> Reply:
    return response.status_code, _asgi_headers(response.headers.items()), response.get_data()


def _asgi_headers(pairs: Any) -> Headers:
    """WSGI/Flask ``(name, value)`` strings as ASGI byte pairs, without ``content-length``
    (the ASGI app sets it from the body it sends)."""
    return [
        (k.lower().encode("latin-1"), v.encode("latin-1"))
        for k, v in pairs
        if k.lower() != "content-length"
    ]


def _content_length(scope: dict) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return content_length(value)
    return None


async def _read_body(receive: Any, declared: int | None, limit: int) -> bytes | None:
    """The whole body, or ``None`` once it is known to be over ``limit`` bytes (declared, or
    read so far: a chunked body), without reading further."""
    if declared is not None and declared > limit:
        return None
    message = await receive()
    body = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    chunks = [body]
    size = len(body)
    while message.get("more_body", False):
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _environ(scope: dict, body: bytes) -> dict[str, Any]:
    """A WSGI environ (PEP 3333) for an ASGI HTTP scope and its whole body."""
    server = scope.get("server") or ("localhost", 80)
    client = scope.get("client") or ("", 0)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": "",
        "PATH_INFO": scope["path"].encode("utf-8").decode("latin-1"),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "REMOTE_ADDR": str(client[0]),
        "REMOTE_PORT": str(client[1]),
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        value = raw_value.decode("latin-1")
        if name == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = value
        elif name == "CONTENT_LENGTH":
            continue
        else:
            key = "HTTP_" + name
            environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ
