"""modelshelf's HTTP/1.1 server (``modelshelf.serve.http1``), the REST front end's default, as
clients meet it: real ``modelshelf serve`` processes, raw sockets for what client libraries
hide (pipelining, chunked bodies, 100-continue, malformed requests, a client that does not read,
the idle timeout), and httpx."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from frontends import COMPONENTS, MODELSHELF, Launch, running, sklearn_launch

from microservice import Microservice, run_to_exit, wait_for_text

PREDICT = "/api/v1.0/predictions"
ND = {"data": {"ndarray": [[1.0, 2.0]]}}
CHUNKED_HEAD = (
    f"POST {PREDICT} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
    "Transfer-Encoding: chunked\r\n\r\n"
).encode()


#: A request body may stop, or answers stay unread, this long (the default is 30 s); a head
#: must come whole within it; a body must average 2 bytes/s past it (the default is 1024).
STALL_2_SECONDS = {"MODELSHELF_CLIENT_STALL_SECONDS": "2", "MODELSHELF_CLIENT_MIN_SPEED": "2"}


@pytest.fixture(scope="module")
def service():
    launch = Launch("SleepyModel", COMPONENTS, extra_args=("--keepalive", "1"))
    with running(launch, [MODELSHELF], env=STALL_2_SECONDS) as (served,):
        yield served


def _request(method: str, path: str, body: bytes = b"", headers: str = "") -> bytes:
    """One HTTP/1.1 request as bytes; a JSON body gets its Content-Length."""
    head = f"{method} {path} HTTP/1.1\r\nHost: test\r\n{headers}"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def _predict(value: float, headers: str = "") -> bytes:
    return _request("POST", PREDICT, json.dumps({"data": {"ndarray": [[value]]}}).encode(), headers)


class Reader:
    """Reads answers off a raw socket, one at a time (Content-Length framed)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.head = ""  # the last answer's status line and header lines, as sent

    def _fill(self) -> bool:
        data = self.sock.recv(1 << 20)
        self.buffer += data
        return bool(data)

    def answer(self, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            if not self._fill():
                raise ConnectionError(f"closed before an answer; got {self.buffer[:200]!r}")
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        self.head = head.decode("latin-1")
        status_line, *lines = self.head.split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = 0 if head_only else int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            if not self._fill():
                raise ConnectionError("closed inside a body")
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(status_line.split()[1]), headers, body

    def closed(self) -> bool:
        """True once the server has closed the connection (nothing more was sent)."""
        try:
            return not self.buffer and not self._fill()
        except ConnectionResetError:
            return True


def _connect(port: int, timeout: float = 30) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def _ndarray(body: bytes) -> list:
    return json.loads(body)["data"]["ndarray"]


def test_keep_alive_serves_many_requests_on_one_connection_without_server_or_date(service):
    with _connect(service.http_port) as sock:
        reader = Reader(sock)
        for value in (1.0, 2.0, 3.0):
            sock.sendall(_predict(value))
            status, headers, body = reader.answer()
            assert status == 200 and _ndarray(body) == [[value]]
            assert headers["content-length"] == str(len(body))
            assert "connection" not in headers
            assert "server" not in headers and "date" not in headers


def test_connection_close_is_honoured(service):
    with _connect(service.http_port) as sock:
        sock.sendall(_predict(1.0, "Connection: close\r\n") + _predict(2.0))
        reader = Reader(sock)
        status, headers, _ = reader.answer()
        assert status == 200 and headers["connection"] == "close"
        assert reader.closed()  # the second request is not answered


def test_an_upgrade_is_declined_with_an_http_1_1_answer_that_closes(service):
    """curl --http2 asks for h2c: the answer is HTTP/1.1 and says the connection ends."""
    with _connect(service.http_port) as sock:
        sock.sendall(
            b"GET /health/ping HTTP/1.1\r\nHost: test\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n"
        )
        reader = Reader(sock)
        status, headers, body = reader.answer()
        assert (status, body, headers["connection"]) == (200, b"pong", "close")
        assert reader.closed()


H2C = "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQC\r\n"


@pytest.mark.parametrize("split", [False, True], ids=["one read", "body in a later read"])
def test_an_upgrade_request_with_a_body_is_answered_on_its_body(service, split):
    """``curl --http2 -d …`` asks for h2c on a POST: declined, the answer is the prediction of
    the body it sent (httptools skips an upgrade request's body), then the connection ends."""
    request = _predict(5.0, H2C)
    head, body = request.split(b"\r\n\r\n", 1)
    with _connect(service.http_port) as sock:
        if split:
            sock.sendall(head + b"\r\n\r\n")
            time.sleep(0.05)  # arrives in a separate read
            sock.sendall(body)
        else:
            sock.sendall(_request("GET", "/health/ping") + request)
        reader = Reader(sock)
        if not split:
            assert reader.answer()[2] == b"pong"
        status, headers, answer = reader.answer()
        assert (status, headers["connection"]) == (200, "close"), answer
        assert _ndarray(answer) == [[5.0]]
        assert reader.closed()


def test_a_chunked_upgrade_request_with_expect_gets_one_100_and_its_answer(service):
    body = json.dumps({"data": {"ndarray": [[6.0]]}}).encode()
    head = (
        f"POST {PREDICT} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n{H2C}"
        "Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
    ).encode()
    with _connect(service.http_port) as sock:
        sock.sendall(head)
        reader = Reader(sock)
        assert reader.answer(head_only=True)[0] == 100
        sock.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
        status, headers, answer = reader.answer()
        assert (status, headers["connection"], _ndarray(answer)) == (200, "close", [[6.0]])
        assert reader.closed()


def test_http_1_0_closes_unless_keep_alive_is_asked(service):
    request = b"GET /health/ping HTTP/1.0\r\n\r\n"
    with _connect(service.http_port) as sock:
        sock.sendall(request)
        reader = Reader(sock)
        assert reader.answer()[2] == b"pong"
        assert reader.closed()
    with _connect(service.http_port) as sock:
        reader = Reader(sock)
        for _ in range(2):
            sock.sendall(b"GET /health/ping HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            status, headers, body = reader.answer()
            assert (status, body, headers["connection"]) == (200, b"pong", "keep-alive")


def test_pipelined_requests_are_answered_in_order(service):
    values = [float(i) for i in range(20)]
    requests = [_predict(v) for v in values]
    requests.insert(5, _request("GET", "/health/ping"))
    requests.insert(9, _request("HEAD", "/health/ping"))
    with _connect(service.http_port) as sock:
        sock.sendall(b"".join(requests))
        reader = Reader(sock)
        answers = [reader.answer(head_only=(i == 9)) for i in range(len(requests))]
    assert answers[5][2] == b"pong"
    # HEAD: GET's headers, Content-Length included, and no body after them.
    assert answers[9][0] == 200 and answers[9][1]["content-length"] == "4"
    predictions = [a for i, a in enumerate(answers) if i not in (5, 9)]
    assert [_ndarray(body)[0][0] for _, _, body in predictions] == values


def _assert_head_as_get(port: int, path: str, then: str, then_body: bytes) -> None:
    """HEAD ``path`` answers GET's status, content-type and Content-Length, and no body: the
    request pipelined after it (``then``) is answered ``then_body``."""
    got = httpx.get(f"http://127.0.0.1:{port}{path}")
    with _connect(port) as sock:
        sock.sendall(_request("HEAD", path) + _request("GET", then))
        reader = Reader(sock)
        status, headers, _ = reader.answer(head_only=True)
        assert (status, headers["content-type"], headers["content-length"]) == (
            got.status_code,
            got.headers["content-type"],
            str(len(got.content)),
        ), path
        assert reader.answer()[2] == then_body, path  # no body came between the two


@pytest.mark.parametrize("server", ["modelshelf", "uvicorn"])
def test_a_head_answer_has_the_fields_of_get_and_no_body(server):
    """HEAD is answered as GET without the body (RFC 9110 9.3.2), on our server as on uvicorn:
    the same status, content-type and Content-Length (it said 0 on both), for Flask's routes
    and ours (V2, KServe V1 and MLflow's, which answered HEAD 405; a POST-only path 405 as for
    GET), and on the metrics port."""
    paths = ("/health/ping", "/health/status", "/v2/health/ready", "/v2/models/SleepyModel")
    paths += ("/", "/v1/models/SleepyModel", "/ping", "/version", "/invocations")
    env = {"MODELSHELF_HTTP_SERVER": server}
    with running(Launch("SleepyModel", COMPONENTS), [MODELSHELF], env=env) as (served,):
        for path in paths:
            _assert_head_as_get(served.http_port, path, "/health/ping", b"pong")
        for path in ("/metrics", "/nowhere"):  # the metrics port: its page, and its 404
            _assert_head_as_get(served.metrics_port, path, "/nowhere", b"not found\n")


def test_a_chunked_body_is_read_whole(service):
    body = json.dumps({"data": {"ndarray": [[4.0, 5.0, 6.0]]}}).encode()
    pieces = [body[:7], body[7:20], body[20:]]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    with _connect(service.http_port) as sock:
        sock.sendall(CHUNKED_HEAD)
        for piece in chunked[:30], chunked[30:]:
            time.sleep(0.05)  # arrives in separate reads
            sock.sendall(piece)
        status, _, answer = Reader(sock).answer()
    assert status == 200 and _ndarray(answer) == [[4.0, 5.0, 6.0]]


def test_trailer_fields_are_not_merged_into_the_headers(service):
    """A chunked body's trailer fields are dropped (RFC 9110 6.5.1): a trailer content-type
    does not replace the one the request was sent with."""
    body = json.dumps(ND).encode()
    trailers = b"Content-Type: text/plain\r\nX-Checksum: 1234\r\n\r\n"
    with _connect(service.http_port) as sock:
        sock.sendall(CHUNKED_HEAD + b"%x\r\n%s\r\n0\r\n" % (len(body), body) + trailers)
        status, _, answer = Reader(sock).answer()
    assert status == 200 and _ndarray(answer) == ND["data"]["ndarray"], answer


def test_expect_100_continue_is_answered_before_the_body(service):
    body = json.dumps(ND).encode()
    head = _request("POST", PREDICT, body, "Expect: 100-continue\r\n")[: -len(body)]
    with _connect(service.http_port) as sock:
        sock.sendall(head)
        reader = Reader(sock)
        status, _, _ = reader.answer(head_only=True)
        assert status == 100
        sock.sendall(body)
        status, _, answer = reader.answer()
    assert status == 200 and _ndarray(answer) == ND["data"]["ndarray"]


def test_expect_100_continue_from_an_http_1_0_client_is_ignored(service):
    """An HTTP/1.0 client cannot take a 1xx answer: the first answer is the final one."""
    body = json.dumps(ND).encode()
    request = _request("POST", PREDICT, body, "Expect: 100-continue\r\n")
    with _connect(service.http_port) as sock:
        sock.sendall(request.replace(b"HTTP/1.1", b"HTTP/1.0", 1))
        status, _, answer = Reader(sock).answer()
    assert status == 200 and _ndarray(answer) == ND["data"]["ndarray"]


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /health/ping HTTP/1.1\r\nHost test\r\n\r\n",  # a header without a colon
        b"NOT-A-METHOD /health/ping HTTP/1.1\r\n\r\n",
        b"GET /health/ping HTTP/9.9\r\n\r\n",
        b"POST /predict HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"GET /\xff\xfe HTTP/1.1\r\nHost: test\r\n\r\n",  # a path that is not ASCII
    ],
)
def test_a_malformed_request_gets_400_then_close_and_the_server_keeps_serving(
    service, request_bytes
):
    with _connect(service.http_port) as sock:
        sock.sendall(_request("GET", "/health/ping") + request_bytes)
        reader = Reader(sock)
        assert reader.answer()[2] == b"pong"  # what came before is answered first
        status, headers, body = reader.answer()
        assert (status, headers["connection"]) == (400, "close"), body
        assert reader.closed()
    assert httpx.get(f"{service.url}/health/ping").text == "pong"


def test_headers_over_the_limit_get_431(service):
    many = "".join(f"X-Filler-{i}: {'v' * 100}\r\n" for i in range(700))  # ~80 KB
    with _connect(service.http_port) as sock:
        sock.sendall(_request("GET", "/health/ping", headers=many))
        reader = Reader(sock)
        status, headers, _ = reader.answer()
        assert (status, headers["connection"]) == (431, "close")
        assert reader.closed()


def test_a_request_target_over_the_limit_gets_414_saying_to_post(service):
    """A GET of ``?json=`` with a large input: 414 saying the target is too long and what to
    do instead (not 431, which names the headers); the server serves on."""
    query = json.dumps({"data": {"ndarray": [[1.0] * 20_000]}}, separators=(",", ":"))
    with _connect(service.http_port) as sock:
        sock.sendall(_request("GET", f"{PREDICT}?json={query}"))
        reader = Reader(sock)
        status, headers, body = reader.answer()
        assert (status, headers["connection"]) == (414, "close")
        assert b"65,536 bytes" in body and b"as a body" in body
        assert reader.closed()
    assert httpx.get(f"{service.url}/health/ping").text == "pong"


@pytest.mark.parametrize(
    "start",
    [
        b"GET /health/ping HTTP/1.1\r\nX-Endless: ",
        CHUNKED_HEAD + b"0\r\nX-Endless: ",  # a trailer field, after the last chunk
    ],
    ids=["header", "trailer"],
)
def test_a_header_line_that_never_ends_gets_431_and_the_connection_ends(service, start):
    """A header (or trailer) value that never ends (the client keeps sending): 431 once
    ~320 KB are in, and the server ends the connection instead of holding the line in memory."""
    failed: list[OSError] = []
    with _connect(service.http_port) as sock:

        def send_forever() -> None:
            try:
                sock.sendall(start)
                while True:
                    sock.sendall(b"a" * 65536)
            except OSError as error:
                failed.append(error)

        sender = threading.Thread(target=send_forever, daemon=True)
        sender.start()
        reader = Reader(sock)
        status, headers, _ = reader.answer()
        assert (status, headers["connection"]) == (431, "close")
        assert reader.closed()
        sender.join(20)
        assert failed, "the server still reads a header line that never ends"


@pytest.mark.parametrize(
    "codings",
    [["gzip, chunked"], ["gzip", "chunked"]],
    ids=["one field", "two fields"],
)
@pytest.mark.parametrize("expect", [False, True], ids=["", "expect 100-continue"])
def test_a_transfer_coding_other_than_chunked_gets_501_naming_it(service, codings, expect):
    """``Transfer-Encoding: gzip, chunked``: llhttp reads the body as chunked; the gzip coding
    cannot be ignored, so 501 (RFC 9112 6.1) naming it, then close; before any 100 Continue."""
    body = json.dumps(ND).encode()
    head = f"POST {PREDICT} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
    head += "".join(f"Transfer-Encoding: {coding}\r\n" for coding in codings)
    head += "Expect: 100-continue\r\n" if expect else ""
    with _connect(service.http_port) as sock:
        sock.sendall(head.encode() + b"\r\n")
        if not expect:
            sock.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
        reader = Reader(sock)
        status, headers, answer = reader.answer()
        assert (status, headers["connection"]) == (501, "close"), answer
        assert b"gzip" in answer and b"chunked" in answer
        assert reader.closed()
    assert httpx.get(f"{service.url}/health/ping").text == "pong"


def test_a_body_over_the_limit_after_pipelined_requests_is_refused_in_order(service):
    big = f"POST {PREDICT} HTTP/1.1\r\nContent-Type: application/json\r\n"
    big += f"Content-Length: {10 * 2**30}\r\n\r\n"  # over the 64 MiB default limit
    with _connect(service.http_port) as sock:
        sock.sendall(_predict(7.0) + big.encode())
        reader = Reader(sock)
        assert _ndarray(reader.answer()[2]) == [[7.0]]
        status, headers, body = reader.answer()
        assert status == 413 and headers["connection"] == "close"
        assert reader.head.lower().count("\r\nconnection:") == 1, reader.head
        assert "MODELSHELF_MAX_BODY_BYTES" in json.loads(body)["status"]["info"]
        assert reader.closed()


def test_the_metrics_port_refuses_a_body_over_its_own_1_mib_limit_not_the_rest_one(service):
    """The worker serves the metrics port with the REST app: a body over the metrics port's
    limit (a scrape has none) is refused unread, not awaited up to the REST port's 64 MiB."""
    head = f"POST /prometheus HTTP/1.1\r\nContent-Length: {2 * 2**20}\r\n\r\n"
    with _connect(service.metrics_port, timeout=10) as sock:
        sock.sendall(head.encode())
        reader = Reader(sock)
        status, headers, body = reader.answer()
        assert (status, headers["connection"]) == (413, "close"), body
        assert b"1,048,576 bytes" in body
        assert reader.closed()


def test_percent_encoded_paths_are_decoded_and_queries_kept(service):
    answer = service.client.post("/api/v1.0/%70redictions", json=ND)
    assert answer.status_code == 200 and answer.json()["data"]["ndarray"] == [[1.0, 2.0]]
    # ?json= is a query the Flask path reads: the raw query reaches the app.
    query = json.dumps({"data": {"ndarray": [[3.0]]}})
    answer = service.client.post(PREDICT, params={"json": query})
    assert answer.status_code == 200 and answer.json()["data"]["ndarray"] == [[3.0]]
    # A fragment (clients strip it; llhttp lets it through) is not part of the path routed.
    with _connect(service.http_port) as sock:
        sock.sendall(_request("GET", "/health/ping#top"))
        assert Reader(sock).answer()[2] == b"pong"


def test_an_idle_keep_alive_connection_is_closed_after_the_keepalive_seconds(service):
    with _connect(service.http_port) as sock:
        sock.sendall(_request("GET", "/health/ping"))
        reader = Reader(sock)
        assert reader.answer()[2] == b"pong"
        answered = time.monotonic()
        assert reader.closed()  # blocks until the server closes (--keepalive 1)
        idle = time.monotonic() - answered
    assert 0.9 < idle < 10, idle


def test_a_request_head_left_unfinished_is_closed_after_the_keepalive_seconds(service):
    """Slowloris: a head that stops coming (after a request answered on the connection, or
    as its first bytes) is closed like an idle connection, with no answer."""
    with _connect(service.http_port) as stalled, _connect(service.http_port) as first:
        stalled.sendall(_request("GET", "/health/ping") + b"GET /health/ping HTTP/1.1\r\nHost:")
        first.sendall(b"GET /health/ping HTTP/1.1\r\nHo")
        started = time.monotonic()
        reader = Reader(stalled)
        assert reader.answer()[2] == b"pong"
        assert reader.closed()  # blocks until the server closes (--keepalive 1)
        assert Reader(first).closed()
        assert 0.9 < time.monotonic() - started < 10


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_request_body_that_stops_coming_gets_408_naming_the_timeout_then_close(service, chunked):
    """A body that stops coming (headers and part of it, then nothing) is answered 408 with a
    JSON error naming the timeout once no byte of it came for MODELSHELF_CLIENT_STALL_SECONDS
    (2 here; the keep-alive second does not apply), then the connection ends; the server
    serves others meanwhile."""
    body = json.dumps(ND).encode()
    if chunked:
        stalled_request = CHUNKED_HEAD + b"%x\r\n%s" % (len(body), body[:-5])
    else:
        stalled_request = _request("POST", PREDICT, body)[:-5]
    with _connect(service.http_port) as sock:
        sock.sendall(stalled_request)
        started = time.monotonic()
        assert httpx.get(f"{service.url}/health/ping").text == "pong"
        reader = Reader(sock)
        status, headers, answer = reader.answer()  # blocks until the stall timeout (2 s)
        waited = time.monotonic() - started
        assert (status, headers["connection"]) == (408, "close"), answer
        assert headers["content-type"] == "application/json"
        error = json.loads(answer)["error"]
        assert "no byte of it for 2 s" in error, error
        assert "MODELSHELF_CLIENT_STALL_SECONDS" in error, error
        assert reader.closed()
    assert 1.9 < waited < 10, waited


def test_a_body_paused_longer_than_the_keep_alive_second_is_still_read(service):
    """A pause mid-body longer than the keep-alive second (--keepalive 1) but under the stall
    seconds (a lossy link's retransmissions) is waited out: the body is read and answered."""
    request = _request("POST", PREDICT, json.dumps(ND).encode())
    with _connect(service.http_port) as sock:
        sock.sendall(request[:-5])
        time.sleep(1.6)
        sock.sendall(request[-5:])
        status, _, answer = Reader(sock).answer()
    assert status == 200 and _ndarray(answer) == ND["data"]["ndarray"], answer


def test_a_body_sent_while_the_app_holds_the_loop_is_not_timed_out(service):
    """A body whose rest comes while the app answers another client for longer than the
    keep-alive second (a 2.5 s prediction, inline on the event loop): the bytes wait unread in
    the kernel, which is the server's delay, not the client's -- answered 200, not 408."""
    body = json.dumps(ND).encode()
    request = _request("POST", PREDICT, body)
    with _connect(service.http_port) as sock, _connect(service.http_port) as sleeper:
        sock.sendall(request[:-5])
        time.sleep(0.3)  # read before the prediction starts: its rest then waits behind it
        sleep = json.dumps({"jsonData": {"sleep": 2.5}}).encode()
        sleeper.sendall(_request("POST", PREDICT, sleep))
        wait_for_text(service.log, "sleeping 2.5s")
        sock.sendall(request[-5:])
        status, _, answer = Reader(sock).answer()
        assert status == 200 and _ndarray(answer) == ND["data"]["ndarray"], answer
        assert Reader(sleeper).answer()[0] == 200


def test_a_slow_body_that_keeps_coming_is_not_timed_out(service):
    """A body that does not stop and keeps over the minimum speed (2 bytes/s here) is not
    timed out: one byte every 0.3 s, for longer than the keep-alive second and the stall
    seconds in all, is read whole and answered."""
    request = _request("POST", PREDICT, json.dumps(ND).encode())
    head_end = request.index(b"\r\n\r\n") + 4
    with _connect(service.http_port) as sock:
        sock.sendall(request[:head_end])
        started = time.monotonic()
        for byte in range(head_end, len(request)):
            time.sleep(0.3 if time.monotonic() - started < 2.5 else 0)  # the pace is the test
            sock.sendall(request[byte : byte + 1])
        status, _, answer = Reader(sock).answer()
    assert status == 200 and _ndarray(answer) == ND["data"]["ndarray"], answer
    assert time.monotonic() - started > 2


def test_a_request_head_trickled_byte_by_byte_gets_408_at_the_stall_seconds(service):
    """Slowloris on the head: a byte every 0.4 s (under the keep-alive second, so the idle
    rule never fires) holds the connection no longer than the stall seconds (2) from the
    head's first byte: 408 naming the setting, then close; others are served meanwhile."""
    head = _request("GET", "/health/ping")
    with _connect(service.http_port) as sock:
        started = time.monotonic()
        answered = threading.Event()

        def trickle() -> None:
            for byte in range(len(head) - 1):  # never the last byte: the head is never whole
                if answered.wait(0.4):
                    return
                with contextlib.suppress(OSError):
                    sock.sendall(head[byte : byte + 1])

        sender = threading.Thread(target=trickle)
        sender.start()
        try:
            assert httpx.get(f"{service.url}/health/ping").text == "pong"
            reader = Reader(sock)
            status, headers, answer = reader.answer()
            waited = time.monotonic() - started
            answered.set()
        finally:
            answered.set()
            sender.join()
        assert (status, headers["connection"]) == (408, "close"), answer
        error = json.loads(answer)["error"]
        assert "head did not come whole within 2 s" in error, error
        assert "MODELSHELF_CLIENT_STALL_SECONDS" in error, error
        assert reader.closed()
    assert 1.9 < waited < 6, waited


def test_a_request_body_trickled_under_the_minimum_speed_gets_408_naming_it(service):
    """Slowloris on the body: a byte every 1.5 s never stops for the stall seconds (2), but
    averages under the minimum speed (2 bytes/s past the first 2 s): 408 naming
    MODELSHELF_CLIENT_MIN_SPEED, then close, within a few seconds rather than never."""
    request = _request("POST", PREDICT, json.dumps(ND).encode())
    head_end = request.index(b"\r\n\r\n") + 4
    with _connect(service.http_port) as sock:
        sock.sendall(request[:head_end])
        started = time.monotonic()
        answered = threading.Event()

        def trickle() -> None:
            for byte in range(head_end, len(request) - 1):
                if answered.wait(1.5):
                    return
                with contextlib.suppress(OSError):
                    sock.sendall(request[byte : byte + 1])

        sender = threading.Thread(target=trickle)
        sender.start()
        try:
            reader = Reader(sock)
            status, headers, answer = reader.answer()
            waited = time.monotonic() - started
        finally:
            answered.set()
            sender.join()
        assert (status, headers["connection"]) == (408, "close"), answer
        error = json.loads(answer)["error"]
        assert "came too slowly" in error and "under 2 bytes/s" in error, error
        assert "MODELSHELF_CLIENT_MIN_SPEED" in error, error
        assert reader.closed()
    # 2 s of grace, then 1 byte per 1.5 s is behind 2 bytes/s from the first byte on.
    assert 2.5 < waited < 10, waited


def test_a_bad_client_min_speed_stops_the_start_naming_the_variable():
    result = run_to_exit(
        [*MODELSHELF, "SleepyModel", "--http-port", "0", "--grpc-workers", "0"],
        COMPONENTS,
        env={"MODELSHELF_CLIENT_MIN_SPEED": "fast"},
    )
    assert result.returncode == 1, result.stdout
    assert "MODELSHELF_CLIENT_MIN_SPEED='fast'" in result.stdout, result.stdout


def test_a_client_that_does_not_read_is_not_read_either(service):
    """Backpressure: 200 pipelined requests of 100 KB echoed back, the answers unread. The
    server stops reading once its writes back up, so the client's send blocks; once the
    client reads, every answer arrives, whole and in order."""
    text = "x" * 100_000
    requests = [
        _request("POST", PREDICT, json.dumps({"jsonData": {"i": i, "text": text}}).encode())
        for i in range(200)
    ]
    with _connect(service.http_port, timeout=60) as sock:
        sent = threading.Event()
        sender = threading.Thread(target=lambda: (sock.sendall(b"".join(requests)), sent.set()))
        sender.start()
        # Less than the keep-alive second: a client that reads nothing for longer is dropped.
        assert not sent.wait(0.5), "20 MB of requests were all read with no answer read"
        reader = Reader(sock)
        for i in range(200):
            status, _, body = reader.answer()
            assert status == 200 and json.loads(body)["jsonData"] == {"i": i, "text": text}
        sender.join(30)
        assert sent.is_set()


def test_requests_pipelined_behind_a_queued_prediction_are_not_read_without_bound(tmp_path):
    """A prediction queued to join a batch (a 5 s batch wait), then 200 requests of 100 KB the
    app answers at once: their answers wait behind the queued one, so past a few of them the
    server reads no more (the client's send blocks) instead of holding all the client sends;
    once the batch is served every answer arrives, in order."""
    import joblib
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit([[0.0, 0.0], [1.0, 1.0]], [0, 1])
    joblib.dump(model, tmp_path / "model.joblib")
    env = {"MODELSHELF_MAX_BATCH_TIME_MS": "5000"}
    filler = _request("POST", "/health/ping", b"x" * 100_000)
    launch = sklearn_launch(tmp_path)
    with (
        running(launch, [MODELSHELF], env=env) as (served,),
        _connect(served.http_port, 60) as sock,
    ):
        sent = threading.Event()
        requests = _request("POST", PREDICT, json.dumps(ND).encode()) + filler * 200
        sender = threading.Thread(target=lambda: (sock.sendall(requests), sent.set()))
        sender.start()
        assert not sent.wait(2.0), "20 MB of requests were read behind a queued prediction"
        reader = Reader(sock)
        status, _, body = reader.answer()
        assert status == 200 and len(_ndarray(body)) == 1, body  # one row's probabilities
        statuses = {reader.answer()[0] for _ in range(200)}
        assert statuses == {405}
        sender.join(30)
        assert sent.is_set()


@contextlib.contextmanager
def _serving(tmp_path: Path, name: str, source: str) -> Iterator[Microservice]:
    """The class ``name``, its ``source`` written to ``tmp_path``, served by modelshelf."""
    (tmp_path / f"{name}.py").write_text(source)
    with running(Launch(name, tmp_path), [MODELSHELF], env=STALL_2_SECONDS) as (served,):
        yield served


LARGE_ANSWER_MODEL = """
class LargeAnswerModel:
    calls = 0

    def predict(self, X, features_names=None, meta=None):
        if X == "calls":
            return str(LargeAnswerModel.calls)
        LargeAnswerModel.calls += 1
        return X + ":" + "x" * 500_000
"""


def test_requests_read_while_answers_back_up_are_answered_only_once_the_client_reads(tmp_path):
    """40 small pipelined requests, in one read, each answered with 500 KB, the answers unread:
    once they back up, the requests already read are not answered (the app is not run, their
    answers are not built) until the client reads; then every answer arrives, whole and in
    order, and the last one's ``Connection: close`` ends the connection (the request after
    it is never run)."""
    requests = [
        _request("POST", PREDICT, json.dumps({"strData": str(i)}).encode()) for i in range(41)
    ]
    requests[39] = requests[39].replace(b"Host: test\r\n", b"Host: test\r\nConnection: close\r\n")
    with _serving(tmp_path, "LargeAnswerModel", LARGE_ANSWER_MODEL) as served:
        with _unread_socket(served.http_port) as sock:
            sock.sendall(b"".join(requests))
            # Another connection's answer comes after the server handled all the first read.
            calls = httpx.post(f"{served.url}{PREDICT}", json={"strData": "calls"}).json()
            assert int(calls["strData"]) < 10, "requests were answered with no answer read"
            reader = Reader(sock)
            for i in range(40):
                status, headers, body = reader.answer()
                assert status == 200 and json.loads(body)["strData"] == f"{i}:" + "x" * 500_000
            assert headers["connection"] == "close"
            assert reader.closed()
        calls = httpx.post(f"{served.url}{PREDICT}", json={"strData": "calls"}).json()
        assert calls["strData"] == "40"


def _tcp_established(sock: socket.socket) -> bool:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == 1  # tcpi_state


def _unread_socket(port: int) -> socket.socket:
    """A client connected to ``port`` whose small receive buffer makes answers back up soon."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", port))
    return sock


def _seconds_until_dropped(sock: socket.socket, limit: float, why: str) -> float:
    """Seconds until the server drops ``sock``'s connection; fails (``why``) past ``limit``."""
    started = time.monotonic()
    while _tcp_established(sock):
        assert time.monotonic() - started < limit, why
        time.sleep(0.05)
    return time.monotonic() - started


def _rest_worker_rss_kib(served: Microservice) -> int:
    parent = served.process.pid
    (worker,) = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    status = Path(f"/proc/{worker}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0])


def test_clients_that_never_read_their_answers_are_dropped_and_others_served(tmp_path):
    """Four clients pipeline 40 requests for 500 KB answers each and never read: once their
    answers back up and none is read for the keep-alive seconds (2, the default), the server
    drops each connection with its unsent answers (the client's socket is reset), without
    building the rest; another client is served meanwhile, and the worker's memory stays
    bounded."""
    requests = b"".join(
        _request("POST", PREDICT, json.dumps({"strData": str(i)}).encode()) for i in range(40)
    )
    with _serving(tmp_path, "LargeAnswerModel", LARGE_ANSWER_MODEL) as served:
        rss_before = _rest_worker_rss_kib(served)
        with contextlib.ExitStack() as stack:
            silent = []
            for _ in range(4):
                sock = stack.enter_context(_unread_socket(served.http_port))
                sock.sendall(requests)
                silent.append(sock)
            started = time.monotonic()
            assert httpx.get(f"{served.url}/health/ping").text == "pong"
            rss_peak = rss_before
            while any(_tcp_established(sock) for sock in silent):
                assert time.monotonic() - started < 30, "a client that never reads was kept"
                rss_peak = max(rss_peak, _rest_worker_rss_kib(served))
                time.sleep(0.05)
            dropped_after = time.monotonic() - started
            for sock in silent:
                with pytest.raises(ConnectionResetError):
                    while sock.recv(1 << 20):
                        pass
        assert 1.5 < dropped_after < 30, dropped_after
        calls = httpx.post(f"{served.url}{PREDICT}", json={"strData": "calls"}).json()
        assert int(calls["strData"]) < 4 * 10, "answers were built for requests never read"
        # Their 160 answers would be 80 MB: a few each are built (~10 MB in all, measured).
        assert rss_peak - rss_before < 40 * 1024, (rss_before, rss_peak)
        assert httpx.get(f"{served.url}/health/ping").text == "pong"


HUGE_ANSWER_MODEL = """
class HugeAnswerModel:
    def predict(self, X, features_names=None, meta=None):
        return "x" * 8_000_000
"""


def test_a_client_that_asks_to_close_and_never_reads_its_answer_is_reset(tmp_path):
    """One request with ``Connection: close`` whose 8 MB answer is more than the kernel's
    send buffer takes: the server has ended the connection on its side, but the rest of the
    answer waits in its own buffer for a client that takes none of it; after the keep-alive
    seconds the connection is reset all the same, as when the client keeps it open."""
    request = _request("POST", PREDICT, json.dumps(ND).encode(), "Connection: close\r\n")
    with (
        _serving(tmp_path, "HugeAnswerModel", HUGE_ANSWER_MODEL) as served,
        _unread_socket(served.http_port) as sock,
    ):
        sock.sendall(request)
        _seconds_until_dropped(sock, 30, "a client that never reads was kept")
        with pytest.raises(ConnectionResetError):
            while sock.recv(1 << 20):
                pass


SIZED_ANSWER_MODEL = """
class SizedAnswerModel:
    def predict(self, X, features_names=None, meta=None):
        return "x" * int(X)
"""


def _kernel_send_capacity() -> int:
    """Bytes the kernel takes from a loopback socket whose peer reads nothing (its receive
    buffer 4096): what a server's ``write`` leaves the kernel before its own buffer fills."""
    with socket.create_server(("127.0.0.1", 0)) as listener, socket.socket() as client:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect(listener.getsockname())
        server, _ = listener.accept()
        with server:
            server.setblocking(False)
            sent = 0
            with contextlib.suppress(BlockingIOError):
                while True:
                    sent += server.send(b"x" * 1_000_000)
    return sent


def test_a_closed_connection_whose_last_answer_is_never_read_is_reset(tmp_path):
    """``Connection: close`` and an answer 128 KB more than the kernel takes: the rest waits in
    the server's buffer, under the 256 KB at which writes pause, so only ``close`` waited for
    it -- for good, for a client that reads nothing. After the stall seconds (2) the
    connection is reset, the buffer dropped, as for answers backed up on an open one."""
    size = _kernel_send_capacity() + 128 * 1024
    body = json.dumps({"strData": str(size)}).encode()
    request = _request("POST", PREDICT, body, "Connection: close\r\n")
    with (
        _serving(tmp_path, "SizedAnswerModel", SIZED_ANSWER_MODEL) as served,
        _unread_socket(served.http_port) as sock,
    ):
        sock.sendall(request)
        waited = _seconds_until_dropped(sock, 20, "a closed connection never read was kept")
        assert waited > 1.9  # the stall seconds, not at once
        received = 0
        with pytest.raises(ConnectionResetError):
            while chunk := sock.recv(1 << 20):
                received += len(chunk)
        assert received < size


def test_a_client_that_reads_its_answers_slowly_is_kept(tmp_path):
    """A client that reads its backed-up answers slowly (8 KB every 30 ms for 4 s, longer
    than the keep-alive 2, then at full speed) is not dropped: what counts is that it reads.
    The kernel holds megabytes of them meanwhile, so the transport's own buffer does not go
    down for seconds (judged by it alone, this client was reset after 2.6 s)."""
    requests = [
        _request("POST", PREDICT, json.dumps({"strData": str(i)}).encode()) for i in range(8)
    ]
    with (
        _serving(tmp_path, "LargeAnswerModel", LARGE_ANSWER_MODEL) as served,
        socket.socket() as sock,
    ):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        sock.settimeout(30)
        sock.connect(("127.0.0.1", served.http_port))
        sock.sendall(b"".join(requests))
        started = time.monotonic()
        reader = Reader(sock)
        while len(reader.buffer) < 8 * 500_000:  # then ``answer`` reads the rest
            assert reader._fill(), "closed before every answer was read"
            time.sleep(0.03 if time.monotonic() - started < 4 else 0)  # the pace is the test
        answers = [json.loads(reader.answer()[2])["strData"] for _ in range(8)]
        assert answers == [f"{i}:" + "x" * 500_000 for i in range(8)]


UNDESCRIBABLE_MODEL = """
class Undescribable(Exception):
    def __str__(self):
        raise RuntimeError("cannot describe this error")


class UndescribableModel:
    def predict(self, X, features_names=None, meta=None):
        raise Undescribable()
"""


def test_an_error_that_escapes_the_app_is_a_json_500_and_the_connection_serves_on(tmp_path):
    """An exception seldon-core's Flask handlers cannot describe escapes the app: 500 with a
    JSON body and an ERROR log; the same connection then serves the next request."""
    with _serving(tmp_path, "UndescribableModel", UNDESCRIBABLE_MODEL) as served:
        with _connect(served.http_port) as sock:
            sock.sendall(_predict(1.0) + _request("GET", "/health/ping"))
            reader = Reader(sock)
            status, headers, body = reader.answer()
            assert (status, headers["content-type"]) == (500, "application/json")
            assert "error" in json.loads(body)
            assert "connection" not in headers
            assert reader.answer()[2] == b"pong"
        wait_for_text(served.log, "cannot describe this error")
        assert "ERROR" in served.log()


TEAPOT_MODEL = """
class TeapotModel:
    def predict(self, X, features_names=None):
        return X

    def predict_raw(self, request):
        return {"status": {"code": "teapot"}, "strData": "tea"}
"""


def test_a_reply_the_server_cannot_write_is_a_json_500_logged_at_error_not_a_400(tmp_path):
    """The server's own failure while answering (here: a Seldon response whose ``status.code``
    is not a number, passed on as the HTTP status) is not the client's fault: 500 with the
    app's JSON error, the traceback at ERROR, then close -- not 400 'Invalid HTTP request'."""
    with _serving(tmp_path, "TeapotModel", TEAPOT_MODEL) as served:
        with _connect(served.http_port) as sock:
            ping = _request("GET", "/health/ping")
            sock.sendall(ping + _predict(1.0) + ping)
            reader = Reader(sock)
            assert reader.answer()[2] == b"pong"
            status, headers, body = reader.answer()
            assert (status, headers["content-type"]) == (500, "application/json"), body
            assert headers["connection"] == "close" and "error" in json.loads(body)
            assert reader.closed()
        wait_for_text(served.log, "a real number is required")
        log = served.log()
        assert "ERROR" in log and "Traceback" in log and "Invalid HTTP request" not in log
        assert httpx.get(f"{served.url}/health/ping").text == "pong"


SCRIPTED_SERVER = """
import asyncio, json, logging, socket
from modelshelf.serve.http1.server import serve

APP_SOURCE

logging.basicConfig(level=logging.INFO)
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen()
print(sock.getsockname()[1], flush=True)
serve(App(), [sock], 5.0, False, 1.0)
"""


@contextlib.contextmanager
def _scripted_server(
    tmp_path: Path, app: str, env: dict[str, str] | None = None
) -> Iterator[tuple[int, list[str]]]:
    """modelshelf's HTTP/1.1 server in a process of its own, serving ``app`` (the source of a
    class ``App``), for what no real app does or shows. Yields the port and a list that holds
    the server's log once it has stopped."""
    script = tmp_path / "scripted_server.py"
    script.write_text(SCRIPTED_SERVER.replace("APP_SOURCE", app))
    process = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    log: list[str] = []
    try:
        yield int(process.stdout.readline()), log
    finally:
        process.terminate()
        log.append(process.communicate(timeout=15)[1])


CANCELLING_APP = """
class App:
    max_body = 1024

    def answer(self, scope, body):
        if scope["path"] == "/cancelled":
            future = asyncio.get_running_loop().create_future()
            future.cancel()
            return future
        return 200, [(b"content-type", b"text/plain")], b"pong"
"""


def test_an_answer_cancelled_is_a_500_that_ends_the_connection(tmp_path):
    """An app's awaitable answer that is cancelled (no real app does it yet; the server must
    not rely on that): 500 and close, logged at ERROR, instead of a connection that hangs."""
    with (
        _scripted_server(tmp_path, CANCELLING_APP) as (port, log),
        _connect(port, timeout=10) as sock,
    ):
        sock.sendall(_request("GET", "/cancelled") + _request("GET", "/ping"))
        reader = Reader(sock)
        status, headers, body = reader.answer()
        assert (status, headers["connection"]) == (500, "close"), body
        assert "error" in json.loads(body)
        assert reader.closed()
    assert "ERROR" in log[0] and "GET /cancelled failed: its answer was cancelled" in log[0]


def test_an_unknown_http_server_stops_the_start_naming_the_variable():
    result = run_to_exit(
        [*MODELSHELF, "SleepyModel", "--http-port", "0", "--grpc-workers", "0"],
        COMPONENTS,
        env={"MODELSHELF_HTTP_SERVER": "gunicorn"},
    )
    assert result.returncode == 1, result.stdout
    assert "MODELSHELF_HTTP_SERVER" in result.stdout and "gunicorn" in result.stdout


def test_a_bad_client_stall_timeout_stops_the_start_naming_the_variable():
    result = run_to_exit(
        [*MODELSHELF, "SleepyModel", "--http-port", "0", "--grpc-workers", "0"],
        COMPONENTS,
        env={"MODELSHELF_CLIENT_STALL_SECONDS": "0"},
    )
    assert result.returncode == 1, result.stdout
    assert "MODELSHELF_CLIENT_STALL_SECONDS='0'" in result.stdout, result.stdout
    assert "a number of seconds > 0" in result.stdout


@pytest.mark.parametrize(
    ("allowed", "logged"),
    [(None, "203.0.113.7:0"), ("192.0.2.1", "127.0.0.1:")],
    ids=["from the sidecar", "not a trusted proxy"],
)
def test_x_forwarded_for_names_the_client_when_the_proxy_is_trusted(allowed, logged):
    """As uvicorn's ``proxy_headers``: a connection from a trusted proxy (127.0.0.1 by
    default, the sidecar; ``FORWARDED_ALLOW_IPS`` otherwise) has its client taken from
    ``X-Forwarded-For`` (the last host that is not a trusted proxy), as the access log shows."""
    launch = Launch("SleepyModel", COMPONENTS, extra_args=("--access-log",))
    env = {} if allowed is None else {"FORWARDED_ALLOW_IPS": allowed}
    with running(launch, [MODELSHELF], env=env) as (served,), _connect(served.http_port) as sock:
        forwarded = "X-Forwarded-For: 198.51.100.1, 203.0.113.7, 127.0.0.1\r\n"
        forwarded += "X-Forwarded-Proto: https\r\n"
        sock.sendall(_request("GET", "/health/ping?forwarded", headers=forwarded))
        assert Reader(sock).answer()[2] == b"pong"
        wait_for_text(served.log, '"GET /health/ping?forwarded HTTP/1.1" 200')
        line = next(line for line in served.log().splitlines() if "?forwarded" in line)
        assert f"{logged}" in line and ' - "GET' in line, line


SCOPE_ECHO_APP = """
class App:
    max_body = 1024

    def answer(self, scope, body):
        seen = {"client": scope["client"], "scheme": scope["scheme"]}
        return 200, [(b"content-type", b"application/json")], json.dumps(seen).encode()
"""
XFF = "X-Forwarded-For: "
PROTO = "X-Forwarded-Proto: "


@pytest.mark.parametrize(
    ("allowed", "headers", "client", "scheme"),
    [
        (
            None,
            f"{XFF}198.51.100.1, 203.0.113.7, 127.0.0.1\r\n{PROTO}https\r\n",
            ["203.0.113.7", 0],
            "https",
        ),
        (None, f"{XFF}198.51.100.1\r\n{XFF}[2001:db8::1]:4711\r\n", ["2001:db8::1", 4711], "http"),
        (None, f"{XFF}\r\n{PROTO}gopher\r\n", ["127.0.0.1", None], "http"),
        ("10.0.0.0/8", f"{XFF}203.0.113.7\r\n{PROTO}https\r\n", ["127.0.0.1", None], "http"),
        ("*", f"{XFF}203.0.113.7:8080, 10.1.1.1\r\n", ["203.0.113.7", 8080], "http"),
    ],
    ids=[
        "last untrusted host",
        "fields joined, v6 port",
        "empty or unknown",
        "untrusted peer",
        "*",
    ],
)
def test_forwarded_headers_set_the_client_and_scheme_as_uvicorn(
    tmp_path, allowed, headers, client, scheme
):
    """The scope the app gets, as uvicorn's ``proxy_headers`` make it: from a trusted peer
    (``FORWARDED_ALLOW_IPS``, default 127.0.0.1 and ::1) the client is the last host of
    ``X-Forwarded-For`` that is not a trusted proxy (port 0 unless given), the scheme a known
    ``X-Forwarded-Proto``; from any other peer, nothing changes."""
    env = {} if allowed is None else {"FORWARDED_ALLOW_IPS": allowed}
    with (
        _scripted_server(tmp_path, SCOPE_ECHO_APP, env) as (port, _),
        _connect(port, timeout=10) as sock,
    ):
        sock.sendall(_request("GET", "/", headers=headers) + _request("GET", "/"))
        reader = Reader(sock)
        seen = json.loads(reader.answer()[2])
        plain = json.loads(reader.answer()[2])  # the next request on the connection
    assert seen["scheme"] == scheme and seen["client"][0] == client[0], seen
    if client[1] is not None:
        assert seen["client"][1] == client[1], seen
    assert plain["scheme"] == "http" and plain["client"][0] == "127.0.0.1", plain


@pytest.mark.parametrize("server", ["modelshelf", "uvicorn"])
def test_the_access_log_redacts_the_values_of_secret_query_parameters(server):
    """``--access-log`` shows a request's query as sent, but not the value of a parameter
    named as a secret's (token, signature, password, key, api_key…: ``modelshelf.redaction``),
    on our server and on the uvicorn fallback alike."""
    launch = Launch("SleepyModel", COMPONENTS, extra_args=("--access-log",))
    secrets = ("tok-4f1e9", "sig-8c2d7", "key-0b6a3", "gkey-77e1c")
    query = "token={}&x=1&X-Amz-Signature={}&api_key={}&key={}&n=json".format(*secrets)
    with running(launch, [MODELSHELF], env={"MODELSHELF_HTTP_SERVER": server}) as (served,):
        assert httpx.get(f"{served.url}/health/ping?{query}").text == "pong"
        shown = (
            "/health/ping?token=<redacted>&x=1&X-Amz-Signature=<redacted>&api_key=<redacted>"
            "&key=<redacted>"
        )
        wait_for_text(served.log, f'"GET {shown}&n=json HTTP/1.1" 200')
        log = served.log()
        assert not [secret for secret in secrets if secret in log], log[-2000:]


def test_sigterm_closes_idle_connections_and_exits_0_with_the_access_log(tmp_path):
    """SIGTERM to the parent: an idle keep-alive connection, and one whose request head is
    unfinished (nothing under way yet, as uvicorn counts it), are closed at once (not at the
    end of the grace period); the worker, then the tree, exit 0. ``--access-log`` logs each
    request as uvicorn did."""
    launch = Launch("SleepyModel", COMPONENTS, extra_args=("--access-log", "--keepalive", "60"))
    with (
        running(launch, [MODELSHELF]) as (served,),
        _connect(served.http_port) as sock,
        _connect(served.http_port) as stalled,
    ):
        sock.sendall(_predict(1.0))
        reader = Reader(sock)
        assert reader.answer()[0] == 200
        stalled.sendall(_request("GET", "/health/ping") + b"GET /health/ping HTTP/1.1\r\nHost:")
        stalled_reader = Reader(stalled)
        assert stalled_reader.answer()[2] == b"pong"
        wait_for_text(served.log, f'"POST {PREDICT} HTTP/1.1" 200')
        started = time.monotonic()
        os.kill(served.process.pid, signal.SIGTERM)
        assert reader.closed() and stalled_reader.closed()
        closed_after = time.monotonic() - started
        code = served.process.wait(15)
        exited_after = time.monotonic() - started
    assert code == 0, served.log()[-3000:]
    assert closed_after < 5, closed_after
    assert exited_after < 5, exited_after
