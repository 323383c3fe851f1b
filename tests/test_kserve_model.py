"""``modelshelf.kserve_model``'s transformer side against a real HTTP predictor: one kept-alive
connection per serving thread (not one per request), one event loop for ``async`` methods (not
``asyncio.run`` per call), and a connection the predictor closed is opened again."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from modelshelf.kserve_model import InvalidInput, Model


class Predictor(ThreadingHTTPServer):
    """Answers KServe V1 by doubling the rows; records each request's client port."""

    daemon_threads = True

    def __init__(self, close_each: bool) -> None:
        super().__init__(("127.0.0.1", 0), PredictorHandler)
        self.close_each = close_each
        self.ports: list[int] = []


class PredictorHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive unless the server closes

    def do_POST(self) -> None:
        server: Predictor = self.server  # type: ignore[assignment]
        server.ports.append(self.client_address[1])
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        rows = payload["instances"]
        if rows == [["bad"]]:
            status, body = 400, {"error": "rows must be numbers"}
        else:
            status, body = 200, {"predictions": [[2 * v for v in row] for row in rows]}
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        if server.close_each:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def predictor(close_each: bool = False) -> Iterator[Predictor]:
    server = Predictor(close_each)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class AsyncTransformer(Model):
    """An ``async`` preprocess, as KServe allows; records the loop each call ran on."""

    def __init__(self, name: str, predictor_host: str) -> None:
        super().__init__(name, predictor_host)
        self.loops: list[int] = []
        self.ready = True

    async def preprocess(self, payload, headers=None):
        self.loops.append(id(asyncio.get_running_loop()))
        await asyncio.sleep(0)
        return payload


def test_requests_share_one_connection_and_one_event_loop():
    with predictor() as server:
        model = AsyncTransformer("m", f"127.0.0.1:{server.server_address[1]}")
        answers = [model({"instances": [[i, 1.0]]}) for i in range(5)]
    assert answers == [{"predictions": [[2 * i, 2.0]]} for i in range(5)]
    assert len(server.ports) == 5 and len(set(server.ports)) == 1, server.ports
    assert len(model.loops) == 5 and len(set(model.loops)) == 1


def test_a_connection_the_predictor_closed_is_opened_again():
    with predictor(close_each=True) as server:
        model = AsyncTransformer("m", f"http://127.0.0.1:{server.server_address[1]}")
        answers = [model({"instances": [[1.0]]}) for _ in range(3)]
    assert answers == [{"predictions": [[2.0]]}] * 3
    assert len(set(server.ports)) == 3  # closed after each answer: a new one each time


def test_the_predictors_400_is_invalid_input_naming_its_answer():
    with predictor() as server:
        model = AsyncTransformer("m", f"127.0.0.1:{server.server_address[1]}")
        with pytest.raises(InvalidInput, match=r"refused the request.*rows must be numbers"):
            model({"instances": [["bad"]]})
        assert model({"instances": [[3.0]]}) == {"predictions": [[6.0]]}  # still connected
