"""The front door of a locally run InferenceService, routing as KServe's ingress does.

A request reaches the InferenceService by its host (``NAME.NAMESPACE.example.com``, KServe's
default domain, or ``NAME-predictor…`` / ``NAME-transformer…`` for one component) or by path
(``/serving/NAMESPACE/NAME/…``, KServe's path-based routing); a request naming neither goes to it
too (there is one). It goes to the transformer when there is one, else the predictor, unchanged:
KServe V1 (``/v1/models/NAME:predict``), V2 REST (``/v2/…``, binary extension included) and any
other path the component serves. ``/v2/health/ready`` and ``/v2/health/live`` are answered here
and are true only when every component's are.
"""

from __future__ import annotations

import http.client
import logging
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler

from modelshelf.graph.frontdoor import JsonAnsweringHandler

logger = logging.getLogger(__name__)

DEFAULT_DOMAIN = "example.com"
#: Headers passed to the component and back (V2's binary extension needs the length header).
FORWARDED_HEADERS = ("content-type", "inference-header-content-length", "accept")
_HOP_BY_HOP = ("connection", "keep-alive", "transfer-encoding", "content-length", "server", "date")


def make_kserve_handler(
    name: str,
    namespace: str,
    hosts: dict[str, str],
    ready: Callable[[], bool],
    timeout: float = 60,
) -> type[BaseHTTPRequestHandler]:
    """``hosts``: component role (``transformer`` / ``predictor``) -> ``HOST:PORT``."""
    entry = "transformer" if "transformer" in hosts else "predictor"
    path_prefix = f"/serving/{namespace}/{name}"

    class KServeFrontDoorHandler(JsonAnsweringHandler):
        server_version = "modelshelf-kserve"
        request_logger = logger

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self._route()

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            self._route()

        def _route(self) -> None:
            role, path = self._target()
            if role is None:
                self._send(404, {"error": f"no InferenceService at {self.headers.get('Host')}"})
                return
            if path in ("/v2/health/ready", "/v2/health/live"):
                self._drain()
                key = path.rsplit("/", 1)[1]  # "ready" or "live"
                ok = ready() if key == "ready" else True
                self._send(200 if ok else 503, {key: ok})
                return
            self._forward(hosts[role], path)

        def _target(self) -> tuple[str | None, str]:
            path = self.path
            if path.startswith(path_prefix + "/") or path == path_prefix:
                path = path[len(path_prefix) :] or "/"
            host = (self.headers.get("Host") or "").split(":", 1)[0].lower()
            if not host or host in ("localhost", "127.0.0.1") or "." not in host:
                return entry, path
            label, _, rest = host.partition(".")
            if not rest.startswith(f"{namespace}."):
                return (entry, path) if not rest.count(".") else (None, path)
            if label == name:
                return entry, path
            for role in hosts:
                if label == f"{name}-{role}":
                    return role, path
            return None, path

        def _drain(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _forward(self, host: str, path: str) -> None:
            body = self._drain()
            headers = {k: v for k, v in self.headers.items() if k.lower() in FORWARDED_HEADERS}
            address, _, port = host.partition(":")
            connection = http.client.HTTPConnection(address, int(port), timeout=timeout)
            try:
                connection.request(self.command, path, body or None, headers)
                response = connection.getresponse()
                data = response.read()
            except (http.client.HTTPException, OSError) as exc:
                self._send(503, {"error": f"{host} unreachable: {exc}"})
                return
            finally:
                connection.close()
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in _HOP_BY_HOP:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return KServeFrontDoorHandler
