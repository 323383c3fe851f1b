"""The front door: one HTTP endpoint that walks the predictor graph per request, as Seldon's
executor does.

For each node, parents first: a MODEL's ``/predict`` or a TRANSFORMER's ``/transform-input``
(or a node whose ``methods`` list TRANSFORM_INPUT) turns the message; then the children: a
ROUTER's ``/route`` picks one child (``-1``: all of them), otherwise every child gets the message
(in parallel); several answers go to a COMBINER's ``/aggregate`` (anything else keeps the first);
last an OUTPUT_TRANSFORMER's ``/transform-output``. A node that answers with an error stops the
walk and its status code and message go back to the client, with the node's name in the message.
The answer's ``meta`` carries ``puid``, ``requestPath`` (node -> image) and ``routing``.

Feedback (``/api/v1.0/feedback``) goes down the graph as the executor sends it: a node's children
first -- to the one child ``response.meta.routing[node]`` names (what a router chose), else to all
of them -- then the node itself (``/send-feedback``) when it is a MODEL or a ROUTER or lists
SEND_FEEDBACK, so a router learns which branch earned the reward. Requests may carry the gateway's
prefix (``/seldon/NAMESPACE/NAME/`` or ``/seldon/NAME/``, as SeldonClient sends through Istio or
Ambassador) when it names the deployment being run.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from modelshelf.graph.manifest import GraphNode

logger = logging.getLogger(__name__)

PREDICTION_PATHS = ("/api/v1.0/predictions", "/api/v0.1/predictions")
FEEDBACK_PATHS = ("/api/v1.0/feedback", "/api/v0.1/feedback")
GATEWAY_PREFIX = "/seldon/"
_CONNECTION_ERRORS = (http.client.HTTPException, ConnectionError, OSError)


class FeedbackError(ValueError):
    """A feedback request the graph cannot deliver; ``field`` names what was wrong."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class NodeError(Exception):
    """A node answered with an error status (or could not be reached)."""

    def __init__(self, node: str, status: int, body: dict[str, Any]) -> None:
        self.node = node
        self.status = status
        self.body = body
        super().__init__(f"node {node!r} answered {status}: {body}")


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int


class NodeClient:
    """Keep-alive HTTP/1.1 connections to each node, one per front-door thread."""

    def __init__(self, endpoints: dict[str, Endpoint], timeout: float = 60) -> None:
        self.endpoints = endpoints
        self.timeout = timeout
        self._local = threading.local()

    def post(self, node: str, path: str, payload: Any) -> dict[str, Any]:
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        for attempt in (1, 2):  # gunicorn closes idle keep-alive connections: retry once
            connection = self._connection(node, fresh=attempt == 2)
            try:
                connection.request("POST", path, body, headers)
                response = connection.getresponse()
                data = response.read()
                status = response.status
                break
            except _CONNECTION_ERRORS as exc:
                connection.close()
                if attempt == 2:
                    raise NodeError(
                        node, 503, _status(f"node {node!r} unreachable: {exc}", "UNREACHABLE")
                    ) from exc
        try:
            answer = json.loads(data)
        except ValueError:
            text = data.decode("utf-8", errors="replace")[:500]
            answer = _status(text, "MICROSERVICE_BAD_ANSWER")
            status = status if status != 200 else 500
        if status != 200:
            raise NodeError(node, status, answer if isinstance(answer, dict) else {"raw": answer})
        if not isinstance(answer, dict):
            raise NodeError(node, 500, _status(f"answered {answer!r}, not a message", "BAD_ANSWER"))
        return answer

    def get(self, node: str, path: str) -> tuple[int, Any]:
        connection = self._connection(node, fresh=True)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        try:
            return response.status, json.loads(data)
        except ValueError:
            return response.status, data.decode("utf-8", errors="replace")

    def _connection(self, node: str, fresh: bool) -> http.client.HTTPConnection:
        connections = self._local.__dict__.setdefault("connections", {})
        if fresh or node not in connections:
            endpoint = self.endpoints[node]
            connections[node] = http.client.HTTPConnection(
                endpoint.host, endpoint.port, timeout=self.timeout
            )
        return connections[node]


def _status(info: str, reason: str) -> dict[str, Any]:
    return {"status": {"code": -1, "info": info, "reason": reason, "status": "FAILURE"}}


class GraphExecutor:
    """Walks one predictor graph; safe to call from many threads at once."""

    def __init__(self, graph: GraphNode, client: NodeClient) -> None:
        self.graph = graph
        self.client = client
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="graph-children")

    def predict(self, message: dict[str, Any]) -> dict[str, Any]:
        """The graph's answer to ``message``; raises ``NodeError`` for a node's error."""
        meta = message.get("meta") if isinstance(message.get("meta"), dict) else {}
        puid = meta.get("puid") or uuid.uuid4().hex
        message = {**message, "meta": {**meta, "puid": puid}}
        request_path: dict[str, str] = {}
        routing: dict[str, int] = {}
        answer = self._predict(self.graph, message, request_path, routing)
        answer_meta = answer.get("meta") if isinstance(answer.get("meta"), dict) else {}
        answer_meta = {**answer_meta, "puid": puid}
        answer_meta["requestPath"] = {**answer_meta.get("requestPath", {}), **request_path}
        if routing:
            answer_meta["routing"] = {**answer_meta.get("routing", {}), **routing}
        return {**answer, "meta": answer_meta}

    def feedback(self, feedback: dict[str, Any]) -> dict[str, Any]:
        """Deliver ``feedback`` to the graph's nodes; the answer is the top node's (else the
        first answer from below it). Raises ``FeedbackError`` for a ``meta.routing`` that names no
        child, ``NodeError`` for a node's error."""
        response = feedback.get("response")
        meta = response.get("meta") if isinstance(response, dict) else None
        routing = meta.get("routing") if isinstance(meta, dict) else None
        if routing is None:
            routing = {}
        if not isinstance(routing, dict):
            raise FeedbackError(
                "response.meta.routing",
                f"expected an object (node -> child index), got {routing!r}",
            )
        for node in self.graph.walk():  # all checked before any node gets the feedback
            if node.children:
                self._feedback_children(node, routing.get(node.name, -1))
        answer = self._feedback(self.graph, feedback, routing)
        # Nothing in the graph takes feedback: an empty SeldonMessage, as a node without
        # send_feedback answers (the executor echoes the Feedback, which SeldonClient cannot parse).
        return answer if answer is not None else {"meta": {}}

    def _feedback(
        self, node: GraphNode, feedback: dict[str, Any], routing: dict[str, Any]
    ) -> dict[str, Any] | None:
        answers: list[dict[str, Any] | None] = []
        if node.children:
            children = self._feedback_children(node, routing.get(node.name, -1))
            if len(children) == 1:
                answers = [self._feedback(children[0], feedback, routing)]
            else:
                futures = [
                    self._pool.submit(self._feedback, child, feedback, routing)
                    for child in children
                ]
                answers = [future.result() for future in futures]  # first error wins, in order
        if node.type in ("MODEL", "ROUTER") or "SEND_FEEDBACK" in node.methods:
            return self.client.post(node.name, "/send-feedback", feedback)
        return next((answer for answer in answers if answer is not None), None)

    @staticmethod
    def _feedback_children(node: GraphNode, branch: Any) -> list[GraphNode]:
        """The children that had the request: the routed one, or all (``-1`` / not routed)."""
        valid = isinstance(branch, int) and not isinstance(branch, bool)
        if valid and branch == -1:
            return node.children
        if valid and 0 <= branch < len(node.children):
            return [node.children[branch]]
        raise FeedbackError(
            f"response.meta.routing.{node.name}",
            f"{branch!r} is not a child of {node.name!r}: expected -1 (all) or "
            f"0..{len(node.children) - 1}",
        )

    def _predict(
        self,
        node: GraphNode,
        message: dict[str, Any],
        request_path: dict[str, str],
        routing: dict[str, int],
    ) -> dict[str, Any]:
        request_path[node.name] = node.image
        if node.type == "MODEL":
            message = self.client.post(node.name, "/predict", message)
        elif node.type == "TRANSFORMER" or "TRANSFORM_INPUT" in node.methods:
            message = self.client.post(node.name, "/transform-input", message)
        if node.children:
            message = self._children(node, message, request_path, routing)
        if node.type == "OUTPUT_TRANSFORMER" or "TRANSFORM_OUTPUT" in node.methods:
            message = self.client.post(node.name, "/transform-output", message)
        return message

    def _children(
        self,
        node: GraphNode,
        message: dict[str, Any],
        request_path: dict[str, str],
        routing: dict[str, int],
    ) -> dict[str, Any]:
        branch = -1
        if node.type == "ROUTER" or "ROUTE" in node.methods:
            branch = _branch(node, self.client.post(node.name, "/route", message))
            routing[node.name] = branch
        if branch >= 0:
            answers = [self._predict(node.children[branch], message, request_path, routing)]
        elif len(node.children) == 1:
            answers = [self._predict(node.children[0], message, request_path, routing)]
        else:
            paths = [dict[str, str]() for _ in node.children]
            routes = [dict[str, int]() for _ in node.children]
            futures = [
                self._pool.submit(self._predict, child, message, paths[i], routes[i])
                for i, child in enumerate(node.children)
            ]
            answers = [future.result() for future in futures]  # first error wins, in order
            for found in paths:
                request_path.update(found)
            for found in routes:
                routing.update(found)
        if node.type == "COMBINER" or "AGGREGATE" in node.methods:
            return self.client.post(node.name, "/aggregate", {"seldonMessages": answers})
        return answers[0]


def _branch(node: GraphNode, answer: dict[str, Any]) -> int:
    """The child index in a router's answer (``ndarray [[i]]`` or a one-value tensor)."""
    data = answer.get("data") or {}
    values: Any = data.get("ndarray")
    if values is None and isinstance(data.get("tensor"), dict):
        values = data["tensor"].get("values")
    while isinstance(values, list) and len(values) == 1:
        values = values[0]
    if isinstance(values, int | float) and not isinstance(values, bool) and values == int(values):
        branch = int(values)
        if -1 <= branch < len(node.children):
            return branch
        info = f"router {node.name!r} chose child {branch}, but it has {len(node.children)}"
    else:
        info = f"router {node.name!r} answered {data!r}: expected one child index, e.g. [[0]]"
    raise NodeError(node.name, 500, _status(info, "ROUTER_BAD_ANSWER"))


def error_body(error: NodeError) -> dict[str, Any]:
    """The node's error answer, its message prefixed with the node's name."""
    body = dict(error.body)
    status = body.get("status")
    if isinstance(status, dict):
        info = str(status.get("info", ""))
        prefix = f"node {error.node!r}: "
        body["status"] = {**status, "info": info if info.startswith(prefix) else prefix + info}
    return body


class JsonAnsweringHandler(BaseHTTPRequestHandler):
    """What both front doors' handlers share: keep-alive HTTP/1.1, JSON answers, and request
    lines logged at debug level only (the nodes' own logs say what happened)."""

    protocol_version = "HTTP/1.1"
    #: Where request lines go; each front door logs under its own module's name.
    request_logger = logger

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        self.request_logger.debug("%s " + format, self.address_string(), *args)


def gateway_path(path: str, deployment: str | None, namespace: str | None) -> str | None:
    """``path`` without the gateway's ``/seldon/NAMESPACE/NAME`` (or ``/seldon/NAME``) prefix;
    ``None`` when the prefix names another deployment (or, when ``namespace`` is known, another
    namespace). A path without the prefix is returned as it is."""
    if deployment is None or not path.startswith(GATEWAY_PREFIX):
        return path
    parts = path[len(GATEWAY_PREFIX) :].split("/", 2)
    if len(parts) == 3 and parts[1] == deployment and namespace in (None, parts[0]):
        return "/" + parts[2]
    if parts[0] == deployment:
        return "/" + "/".join(parts[1:])
    return None


def make_handler(
    executor: GraphExecutor,
    ready: Callable[[], bool],
    metadata: Callable[[], Any],
    deployment: str | None = None,
    namespace: str | None = None,
) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to ``executor``; with ``deployment``, paths may carry the
    gateway's prefix for it (in ``namespace``, or any namespace when ``None``)."""
    here = f"{namespace or '<any namespace>'}/{deployment}"

    class FrontDoorHandler(JsonAnsweringHandler):
        server_version = "modelshelf-graph"

        def do_POST(self) -> None:
            path = self._path()
            if path is None:
                return
            if path not in PREDICTION_PATHS and path not in FEEDBACK_PATHS:
                self._send(404, _status(f"no such endpoint {path}", "NOT_FOUND"))
                return
            try:
                message = self._message()
            except ValueError as exc:
                self._send(400, _status(f"the request is not JSON: {exc}", "BAD_REQUEST"))
                return
            try:
                if path in FEEDBACK_PATHS:
                    self._send(200, executor.feedback(message))
                else:
                    self._send(200, executor.predict(message))
            except FeedbackError as exc:
                self._send(400, _status(str(exc), "BAD_FEEDBACK"))
            except NodeError as exc:
                self._send(exc.status, error_body(exc))
            except Exception as exc:  # a bug here must still answer, and be logged
                logger.exception("front door failed")
                self._send(500, _status(f"{type(exc).__name__}: {exc}", "GRAPH_ERROR"))

        def do_GET(self) -> None:
            path = self._path()
            if path is None:
                return
            if path in ("/live", "/health/ping"):
                self._send(200, {"status": "live"})
            elif path in ("/ready", "/health/status"):
                ok = ready()
                self._send(200 if ok else 503, {"status": "ready" if ok else "not ready"})
            elif path == "/api/v1.0/metadata":
                self._send(200, metadata())
            else:
                self._send(404, _status(f"no such endpoint {path}", "NOT_FOUND"))

        def _path(self) -> str | None:
            """The request's path without the gateway prefix; ``None`` after answering 404
            (the body drained, so the connection stays usable) when it names another deployment."""
            raw = self.path.split("?", 1)[0]
            path = gateway_path(raw, deployment, namespace)
            if path is None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                info = f"no SeldonDeployment at {raw}: this front door serves {here}"
                self._send(404, _status(info, "NOT_FOUND"))
            return path

        def _message(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            content_type = self.headers.get("Content-Type", "")
            if content_type.startswith("application/x-www-form-urlencoded"):
                raw = parse_qs(raw.decode()).get("json", [""])[0].encode()
            message = json.loads(raw)
            if not isinstance(message, dict):
                raise ValueError('expected a JSON object such as {"data": {"ndarray": ...}}')
            return message

    return FrontDoorHandler


class FrontDoor(ThreadingHTTPServer):
    """A threaded local HTTP server whose threads do not hold up the process's exit."""

    daemon_threads = True
    allow_reuse_address = True
