"""Adaptive batching in ``modelshelf serve``: concurrent requests through real HTTP clients
against a serving process, each answer byte-equal to the one the request gets alone."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest
from frontends import (
    COMPONENTS,
    MODELSHELF,
    Launch,
    batch_sizes,
    read_by_server,
    released_together,
    running,
    sklearn_launch,
    wait_for,
)
from sklearn.ensemble import RandomForestClassifier
from test_http1_server import Reader

from microservice import SERVERS, Microservice, seldon_parameters, wait_for_text
from modelshelf.serve.batching import Batcher, BatchSettings, Pending

COLUMNS = ["a", "b", "c", "d"]
# A wait long enough that requests sent at once join on a loaded machine.
BATCHING_ENV = {"MODELSHELF_MAX_BATCH_TIME_MS": "200", "MODELSHELF_MAX_BATCH_SIZE": "64"}


@pytest.fixture(scope="module")
def forest_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A forest fitted on a DataFrame, so the request's ``names`` order its columns."""
    rng = np.random.default_rng(7)
    X = pd.DataFrame(rng.normal(size=(300, 4)), columns=COLUMNS)
    y = (X["a"] + X["b"] * X["c"] > 0).astype(int) + (X["d"] > 1).astype(int)
    model = RandomForestClassifier(n_estimators=25, random_state=0).fit(X, y)
    folder = tmp_path_factory.mktemp("forest")
    joblib.dump(model, folder / "model.joblib")
    return folder


@pytest.fixture(scope="module")
def server(forest_dir: Path) -> Iterator[Microservice]:
    launch = sklearn_launch(forest_dir, "forest", method="predict_proba")
    with running(launch, [MODELSHELF], env=BATCHING_ENV) as (service,):
        yield service


def _rows(seed: int, count: int) -> list[list[float]]:
    return np.random.default_rng(seed).normal(size=(count, 4)).round(6).tolist()


def _seldon(rows: list[list[float]], names: list[str] | None = None) -> dict:
    data: dict = {"ndarray": rows}
    if names is not None:
        data["names"] = names
    return {"data": data}


def _v2(rows: list[list[float]]) -> dict:
    flat = [v for row in rows for v in row]
    return {"inputs": [{"name": "x", "datatype": "FP64", "shape": [len(rows), 4], "data": flat}]}


Request = tuple[str, dict]


def _at_once(url: str, requests: list[Request]) -> list[httpx.Response]:
    """Every request from its own client and thread, released together."""

    def send(index: int, barrier: threading.Barrier) -> httpx.Response:
        path, body = requests[index]
        with httpx.Client(base_url=url, timeout=60) as client:
            barrier.wait()
            return client.post(path, json=body)

    return released_together(len(requests), send)


def _answers(responses: list[httpx.Response]) -> list[tuple[int, bytes]]:
    """Status and body, without the ``meta.metrics`` a Seldon answer carries when modelshelf's
    own counters are due (by time, not by request)."""
    return [(response.status_code, _without_metrics(response.content)) for response in responses]


def _without_metrics(body: bytes) -> bytes:
    """A Seldon answer without its ``meta.metrics``."""
    if b'"metrics":' not in body:
        return body
    document = json.loads(body)
    document["meta"].pop("metrics")
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def _one_by_one(service: Microservice, requests: list[Request]) -> list[httpx.Response]:
    return [service.post(path, body) for path, body in requests]


def test_concurrent_answers_equal_one_by_one_and_join(server: Microservice) -> None:
    requests: list[Request] = []
    for i in range(12):
        requests.append(("/api/v1.0/predictions", _seldon(_rows(i, 1 + i % 3))))
    for i in range(6):
        requests.append(("/v2/models/forest/infer", _v2(_rows(100 + i, 1 + i % 2))))
    alone = _one_by_one(server, requests)
    assert all(r.status_code == 200 for r in alone), [r.text for r in alone]
    before_sum, before_count = batch_sizes(server)
    for _ in range(3):  # past the first joined calls, which are also checked one by one
        together = _at_once(server.url, requests)
        assert [r.status_code for r in together] == [200] * len(requests)
        assert _answers(together) == _answers(alone)
    # Some calls joined requests.
    assert wait_for(lambda: batch_sizes(server)[1] > before_count)
    total, count = batch_sizes(server)  # joined calls only: two requests or more each
    assert (total - before_sum) >= 2 * (count - before_count) > 0, (total, count)


def _post_bytes(path: str, body: dict) -> bytes:
    """One HTTP/1.1 POST of ``body`` (JSON), as sent on a kept-alive connection."""
    payload = json.dumps(body).encode()
    head = f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
    return f"{head}Content-Length: {len(payload)}\r\n\r\n".encode() + payload


def _raw_post(port: int, path: str, body: dict) -> socket.socket:
    """A connection that has sent one POST of ``body`` (JSON) and read nothing yet."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(_post_bytes(path, body))
    return sock


def _raw_answer(sock: socket.socket) -> tuple[int, bytes]:
    """Status and body of the one answer on ``sock`` (``Content-Length`` framed)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split()[1]), body


def test_requests_of_clients_gone_while_queued_are_not_computed(forest_dir: Path) -> None:
    """Four V2 requests queue for one model call (a 3 s batch wait); two clients reset their
    connections meanwhile. The call joins the other two only (the batch-size histogram sees
    one call of 2, not of 4), and their answers are byte-equal to their own calls'."""
    env = {"MODELSHELF_MAX_BATCH_TIME_MS": "3000", "MODELSHELF_MAX_BATCH_SIZE": "64"}
    launch = sklearn_launch(forest_dir, "forest", method="predict_proba")
    path = "/v2/models/forest/infer"
    bodies = [_v2(_rows(800 + i, 2)) for i in range(4)]
    with running(launch, [MODELSHELF], env=env) as (service,):
        alone = [service.post(path, body) for body in bodies]
        assert [r.status_code for r in alone] == [200] * 4, [r.text for r in alone]
        before = batch_sizes(service)
        socks = [_raw_post(service.http_port, path, body) for body in bodies]
        try:
            assert all(read_by_server(sock) for sock in socks)  # queued, the wait not over
            for gone in (socks[1], socks[3]):  # a reset: SO_LINGER on, 0 s
                gone.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                gone.close()
            answers = [_raw_answer(socks[0]), _raw_answer(socks[2])]
        finally:
            for sock in socks:
                sock.close()
        assert answers == [(200, alone[0].content), (200, alone[2].content)]
        assert wait_for(lambda: batch_sizes(service)[1] > before[1])
        total, count = batch_sizes(service)
        assert (total - before[0], count - before[1]) == (2, 1)


def test_rows_of_clients_gone_while_queued_do_not_cut_the_next_call_short(
    forest_dir: Path,
) -> None:
    """A batch of 4 rows at most, a 3 s wait: a 2-row request queues and its client resets.
    Two live 2-row requests then fill one call together. The gone rows counted until the
    flush: the first live request made 4 and was served alone at once, the second alone 3 s
    later -- no joined call."""
    env = {"MODELSHELF_MAX_BATCH_TIME_MS": "3000", "MODELSHELF_MAX_BATCH_SIZE": "4"}
    launch = sklearn_launch(forest_dir, "forest", method="predict_proba")
    path = "/v2/models/forest/infer"
    gone_body, *live_bodies = (_v2(_rows(1000 + i, 2)) for i in range(3))
    with running(launch, [MODELSHELF], env=env) as (service,):
        alone = [service.post(path, body) for body in live_bodies]
        assert [r.status_code for r in alone] == [200] * 2, [r.text for r in alone]
        before = batch_sizes(service)
        gone = _raw_post(service.http_port, path, gone_body)
        assert read_by_server(gone)  # queued, the wait not over
        gone.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        gone.close()  # a reset
        # A request answered afterwards: the server's loop has seen the reset by then.
        assert service.get("/v2/health/live").status_code == 200
        socks = []
        try:
            for body in live_bodies:
                socks.append(_raw_post(service.http_port, path, body))
                assert read_by_server(socks[-1])
            answers = [_raw_answer(sock) for sock in socks]
        finally:
            for sock in socks:
                sock.close()
        assert answers == [(200, alone[0].content), (200, alone[1].content)]
        assert wait_for(lambda: batch_sizes(service)[1] > before[1])
        total, count = batch_sizes(service)
        assert (total - before[0], count - before[1]) == (2, 1)  # one call of both


def test_a_request_whose_100_continue_waited_behind_a_queued_one_is_not_timed_out(
    forest_dir: Path,
) -> None:
    """``Expect: 100-continue`` pipelined behind a prediction queued longer than the stall
    seconds (a 3 s batch wait; 2 s): its body waits for the 100 Continue, which waits for the
    first answer -- the server's delay, not the client's. A body that starts 0.6 s after the
    100 Continue is read and answered (it was 408 'came too slowly: 0 bytes in 3 s')."""
    env = {"MODELSHELF_MAX_BATCH_TIME_MS": "3000", "MODELSHELF_CLIENT_STALL_SECONDS": "2"}
    launch = sklearn_launch(forest_dir, "forest", method="predict_proba")
    path = "/api/v1.0/predictions"
    first, second = (json.dumps(_seldon(_rows(900 + i, 2))).encode() for i in range(2))
    head = f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
    with (
        running(launch, [MODELSHELF], env=env) as (service,),
        socket.create_connection(("127.0.0.1", service.http_port), timeout=30) as sock,
    ):
        sock.sendall(
            f"{head}Content-Length: {len(first)}\r\n\r\n".encode()
            + first
            + f"{head}Expect: 100-continue\r\nContent-Length: {len(second)}\r\n\r\n".encode()
        )
        reader = Reader(sock)
        assert reader.answer()[0] == 200
        assert reader.answer()[0] == 100  # sent once the answer before it is
        time.sleep(0.6)  # the body's first bytes a sweep (0.5 s) later: a slow link's pace
        sock.sendall(second)
        status, _, answer = reader.answer()
        assert status == 200, answer
        assert len(json.loads(answer)["data"]["ndarray"]) == 2, answer


def test_a_bad_request_fails_alone(server: Microservice) -> None:
    good = [("/api/v1.0/predictions", _seldon(_rows(i, 2))) for i in range(7)]
    # float32 cannot hold 1e300: scikit-learn refuses the row (400), in a body that joins.
    bad = ("/api/v1.0/predictions", _seldon([[1e300, 0.0, 0.0, 0.0]]))
    requests = [*good[:3], bad, *good[3:]]
    alone = _one_by_one(server, requests)
    assert alone[3].status_code == 400, alone[3].text
    for _ in range(2):
        together = _at_once(server.url, requests)
        assert [r.status_code for r in together] == [r.status_code for r in alone]
        assert _answers(together) == _answers(alone)


def test_a_queued_v2_refusal_names_the_input_as_an_unqueued_one(server: Microservice) -> None:
    """With a batch wait every request queues; its refusal still names the input and what the
    model takes, as the unbatched path (and an idle server's) says it."""
    answer = server.post("/v2/models/forest/infer", _v2([[1e300, 0.0, 0.0, 0.0]]))
    assert answer.status_code == 400, answer.text
    message = answer.json()["error"]
    assert message.startswith("input 'x' (FP64, shape [1, 4]): "), message
    assert message.endswith("; this model takes FP64 rows, shape [-1, 4]"), message


def test_different_names_and_dtypes_are_not_mixed(server: Microservice) -> None:
    """The same rows with columns named in another order, and integer rows, join only their
    own kind: each answer equals its own."""
    rows = _rows(50, 2)
    reversed_rows = [list(reversed(r)) for r in rows]
    requests: list[Request] = []
    for i in range(4):
        requests.append(("/api/v1.0/predictions", _seldon(_rows(60 + i, 1), COLUMNS)))
        requests.append(("/api/v1.0/predictions", _seldon(reversed_rows, COLUMNS[::-1])))
        requests.append(("/api/v1.0/predictions", _seldon([[i, 1, 0, 2]])))
    alone = _one_by_one(server, requests)
    assert all(r.status_code == 200 for r in alone), [r.text for r in alone]
    # The reversed names give the model the same columns: same probabilities as ``rows``.
    direct = server.post("/api/v1.0/predictions", _seldon(rows, COLUMNS)).json()
    assert alone[1].json()["data"]["ndarray"] == direct["data"]["ndarray"]
    for _ in range(2):
        together = _at_once(server.url, requests)
        assert _answers(together) == _answers(alone)


def test_batching_off_with_batch_size_one(forest_dir: Path) -> None:
    launch = sklearn_launch(forest_dir)
    env = {"MODELSHELF_MAX_BATCH_SIZE": "1"}
    with running(launch, [MODELSHELF], env=env) as (service,):
        requests = [("/api/v1.0/predictions", _seldon(_rows(i, 1))) for i in range(8)]
        alone = _one_by_one(service, requests)
        together = _at_once(service.url, requests)
        assert _answers(together) == _answers(alone)
        # Batch sizes reach the metrics process once a second: none comes.
        assert not wait_for(lambda: batch_sizes(service) != (0, 0), timeout=1.5)


def test_a_bad_batch_setting_stops_the_server(forest_dir: Path) -> None:
    from microservice import run_to_exit

    parameters = seldon_parameters(model_uri=str(forest_dir))
    result = run_to_exit(
        [*MODELSHELF, "SKLearnServer", "--parameters", parameters, "--grpc-workers", "0"],
        SERVERS / "sklearnserver",
        env={"MODELSHELF_MAX_BATCH_SIZE": "lots"},
    )
    assert result.returncode != 0
    assert "MODELSHELF_MAX_BATCH_SIZE='lots'" in result.stdout + result.stderr


def test_batching_turns_itself_off_where_a_joined_call_is_not_exact(
    tmp_path: Path,
) -> None:
    """LogisticRegression's probabilities come from a matrix product whose last bits differ
    between a 1-row and an n-row call: the first joined calls show it, batching stops, and
    every answer is still the one-by-one answer."""
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    X, y = make_classification(500, 30, n_informative=10, n_classes=3, random_state=0)
    joblib.dump(LogisticRegression(max_iter=500).fit(X, y), tmp_path / "model.joblib")
    launch = sklearn_launch(tmp_path, method="predict_proba")
    with running(launch, [MODELSHELF], env=BATCHING_ENV) as (service,):
        rows = np.random.default_rng(3).normal(size=(12, 30)).round(6).tolist()
        requests = [("/api/v1.0/predictions", _seldon([row])) for row in rows]
        alone = _one_by_one(service, requests)
        for _ in range(3):
            assert _answers(_at_once(service.url, requests)) == _answers(alone)
        wait_for_text(service.log, "adaptive batching is off")


def test_requests_join_without_an_added_wait(forest_dir: Path) -> None:
    """Default settings (no MODELSHELF_MAX_BATCH_TIME_MS): clients that keep sending make
    requests arrive while the model works; those join, and every answer is still its own."""
    launch = sklearn_launch(forest_dir, method="predict_proba")
    with running(launch, [MODELSHELF]) as (service,):
        requests = [("/api/v1.0/predictions", _seldon(_rows(200 + i, 1 + i % 2))) for i in range(8)]
        alone = _answers(_one_by_one(service, requests))
        joined = False
        for _ in range(40):  # whether 16 clients overlap a call depends on the machine's load
            assert _answers(_at_once(service.url, requests * 2)) == alone * 2
            if wait_for(lambda: batch_sizes(service)[1] > 0, timeout=2.5):  # sent each second
                joined = True
                break
        assert joined, "no request joined another in 40 rounds of 16 clients at once"


def test_rows_with_text_are_served_one_by_one_while_others_queue(tmp_path: Path) -> None:
    """``names`` + string/number rows (a one-hot pipeline's input) never join: with a batch
    wait every request is read while others queue, and each is answered on its own path, as
    it is alone (none counted as joined)."""
    import models

    joblib.dump(models.flats_pipeline(), tmp_path / "model.joblib")
    names = list(models.FLATS.columns)
    rows = models.FLATS.astype(object).to_numpy().tolist()
    requests = [("/api/v1.0/predictions", _seldon([rows[i % 8]], names)) for i in range(8)]
    launch = sklearn_launch(tmp_path, method="predict_proba")
    with running(launch, [MODELSHELF], env=BATCHING_ENV) as (service,):
        alone = _answers(_one_by_one(service, requests))
        assert all(status == 200 for status, _ in alone)
        assert _answers(_at_once(service.url, requests * 2)) == alone * 2
        # Batch sizes reach the metrics process once a second: none comes.
        assert not wait_for(lambda: batch_sizes(service) != (0, 0), timeout=1.5)


def test_a_connection_s_request_after_its_answer_is_served_at_once_else_queued() -> None:
    """``Batcher.follows_answer`` on the worker's real loop: a connection's next request read a
    loop pass after its answer is served at once; in the same pass (pipelined in one read),
    from another connection (an equal address, another object), with a request queued, after a
    joined call's flush or with a wait configured, it queues."""

    def pending() -> Pending:
        return Pending(
            ("v2", "predict"),
            np.ones((1, 2)),
            lambda X: (X.sum(axis=1), None),
            lambda rows, context, first: (200, [], rows.tobytes()),
            lambda exc: (500, [], str(exc).encode()),
            asyncio.get_running_loop().create_future(),
        )

    async def scenario() -> None:
        batcher = Batcher(BatchSettings(256, 0.0), None)
        peer, other = tuple(["127.0.0.1", 40000]), tuple(["127.0.0.1", 40000])
        batcher.served_alone(peer)
        assert not batcher.follows_answer(peer)  # the same pass: it came with the first
        await asyncio.sleep(0)  # one loop pass
        assert not batcher.idle()
        assert batcher.follows_answer(peer)
        assert not batcher.follows_answer(other) and not batcher.follows_answer(None)
        queued = pending()
        batcher.enqueue(queued)
        assert not batcher.follows_answer(peer)  # it would overtake the queued request
        assert await queued.future == (200, [], np.array([2.0]).tobytes())
        await asyncio.sleep(0)
        assert not batcher.follows_answer(peer)  # the flush answered no one of its own
        waiting = Batcher(BatchSettings(256, 0.05), None)
        waiting.served_alone(peer)
        await asyncio.sleep(0)
        assert not waiting.follows_answer(peer)

    asyncio.run(scenario())


def _slow_launch(forest_dir: Path, component: str, **parameters: object) -> Launch:
    """A forest behind a test component of ``tests/serve/components`` whose model calls sleep;
    kept-alive connections outlive the tests' waits (not the default 2 s)."""
    params = seldon_parameters(model_uri=forest_dir, method="predict_proba", **parameters)
    return Launch(component, COMPONENTS, params, extra_args=("--keepalive", "30"))


def test_requests_read_while_a_failing_request_ran_still_join(forest_dir: Path) -> None:
    """A request served at once whose call raises out of the app (its error cannot even be
    written: the HTTP server answers a bare 500) ran the model all the same: requests that
    arrived meanwhile on open connections queue and join, as after any other call. They were
    served one at a time (the first alone, the second queued behind it), the batcher left
    believing the model idle (``Batcher.busy`` never set)."""
    launch = _slow_launch(forest_dir, "UnwritableErrorSKLearnServer", sleep_seconds=0.5)
    path = "/api/v1.0/predictions"
    failing = _seldon([[-999.0, 0.0, 0.0, 0.0]], COLUMNS)
    others = [_post_bytes(path, _seldon(_rows(900 + i, 1), COLUMNS)) for i in range(2)]
    with (
        running(launch, [MODELSHELF]) as (service,),
        socket.create_connection(("127.0.0.1", service.http_port), timeout=30) as one,
        socket.create_connection(("127.0.0.1", service.http_port), timeout=30) as two,
    ):
        readers = [Reader(one), Reader(two)]
        alone = []
        for sock, reader, request in zip((one, two), readers, others, strict=True):
            sock.sendall(request)  # accepted and read before the failing request comes
            status, _, body = reader.answer()
            alone.append((status, _without_metrics(body)))
        assert batch_sizes(service) == (0, 0)
        with _raw_post(service.http_port, path, failing) as first:
            assert read_by_server(first)  # its model call runs (half a second)
            one.sendall(others[0])
            two.sendall(others[1])
            assert _raw_answer(first)[0] == 500
        answers = [
            (status, _without_metrics(body)) for status, _, body in map(Reader.answer, readers)
        ]
        assert answers == alone
        assert wait_for(lambda: batch_sizes(service) == (2, 1)), batch_sizes(service)
        wait_for_text(service.log, "failed")  # the HTTP server's line for the bare 500


def test_requests_pipelined_in_one_write_still_join(forest_dir: Path) -> None:
    """Default settings. A connection's next request sent once its answer came joins nothing
    (the histogram stays empty; ``Batcher.follows_answer`` serves it at once, tested above),
    but requests pipelined in one write arrive while the first one's model call runs: the
    other three join one call, each answered as alone."""
    launch = sklearn_launch(forest_dir, method="predict_proba")
    path = "/api/v1.0/predictions"
    bodies = [_seldon(_rows(700 + i, 1), COLUMNS) for i in range(4)]
    requests = [_post_bytes(path, body) for body in bodies]
    with (
        running(launch, [MODELSHELF]) as (service,),
        socket.create_connection(("127.0.0.1", service.http_port), timeout=30) as sock,
    ):
        alone = [_without_metrics(service.post(path, body).content) for body in bodies]
        reader = Reader(sock)
        for _ in range(3):  # one at a time: served as they come
            for request, answer in zip(requests, alone, strict=True):
                sock.sendall(request)
                status, _, body = reader.answer()
                assert (status, _without_metrics(body)) == (200, answer)
        assert batch_sizes(service) == (0, 0)
        sock.sendall(b"".join(requests))
        assert [_without_metrics(reader.answer()[2]) for _ in requests] == alone
        assert wait_for(lambda: batch_sizes(service) == (3, 1)), batch_sizes(service)


@pytest.mark.parametrize(
    "forwarded", [b"", b"X-Forwarded-For: 203.0.113.7\r\n"], ids=["direct", "behind a proxy"]
)
def test_a_connection_s_request_after_its_answer_is_served_at_once_behind_a_proxy(
    forest_dir: Path, forwarded: bytes
) -> None:
    """The same at one connection whether or not a trusted proxy (127.0.0.1, the default
    ``FORWARDED_ALLOW_IPS``) names the client in ``X-Forwarded-For``: the connection's next
    request, read after its slow answer was written, is served at once (``follows_answer``)
    and the one pipelined with it queues behind it, so nothing joins. Keyed on the ``client``
    (made anew per request from the header) the two queued and joined behind a proxy."""
    launch = _slow_launch(forest_dir, "SlowSKLearnServer", sleep_seconds=0.5)
    path = "/api/v1.0/predictions"
    bodies = [_post_bytes(path, _seldon(_rows(950 + i, 1), COLUMNS)) for i in range(3)]
    requests = [body.replace(b"\r\n\r\n", b"\r\n" + forwarded + b"\r\n", 1) for body in bodies]
    with (
        running(launch, [MODELSHELF]) as (service,),
        socket.create_connection(("127.0.0.1", service.http_port), timeout=30) as sock,
    ):
        reader = Reader(sock)
        sock.sendall(requests[0])
        assert read_by_server(sock)  # its model call runs (half a second)
        sock.sendall(requests[1] + requests[2])  # read in one pass after the answer is written
        assert [reader.answer()[0] for _ in requests] == [200] * 3
        # Batch sizes reach the metrics process once a second: none comes.
        assert not wait_for(lambda: batch_sizes(service) != (0, 0), timeout=1.5)
        sock.sendall(b"".join(requests))  # in one read: the first served, two queue and join
        assert [reader.answer()[0] for _ in requests] == [200] * 3
        assert wait_for(lambda: batch_sizes(service) == (2, 1)), batch_sizes(service)


# ----------------------------------------------------------------- MLflow's /invocations

#: An MLflow PythonModel (models from code) answering a DataFrame: its records do not split back
#: into rows, so its /invocations requests are never joined.
FRAME_ANSWER_CODE = """
import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel


class Sums(PythonModel):
    def predict(self, context, model_input, params=None):
        rows = np.asarray(model_input, dtype=float)
        return pd.DataFrame({"sum": rows.sum(axis=1), "first": rows[:, 0]})


mlflow.models.set_model(Sums())
"""


def _mlflow_launch(folder: Path) -> Launch:
    return Launch("MLFlowServer", SERVERS / "mlflowserver", seldon_parameters(model_uri=folder))


def _invocations(rows: list[list[float]], key: str = "inputs") -> dict:
    return {key: rows}


def test_invocations_rows_join_and_answer_as_alone(forest_dir: Path, tmp_path: Path) -> None:
    """MLflow /invocations rows of numbers (``inputs``, ``instances``) join like Seldon rows,
    each answer byte-equal to its own; with ``params`` or by columns they are served alone."""
    import mlflow.sklearn

    folder = tmp_path / "mlflow-forest"
    mlflow.sklearn.save_model(joblib.load(forest_dir / "model.joblib"), folder)
    with running(_mlflow_launch(folder), [MODELSHELF], env=BATCHING_ENV) as (service,):
        requests: list[Request] = []
        for i in range(10):
            key = "inputs" if i % 2 else "instances"
            requests.append(("/invocations", _invocations(_rows(300 + i, 1 + i % 3), key)))
        requests.append(("/invocations", {"inputs": _rows(320, 2), "params": {"unused": 1}}))
        requests.append(
            ("/invocations", {"inputs": dict(zip(COLUMNS, _rows(321, 4), strict=True))})
        )
        alone = _one_by_one(service, requests)
        assert all(r.status_code == 200 for r in alone), [r.text for r in alone]
        for _ in range(3):  # past the first joined calls, which are also checked one by one
            assert _answers(_at_once(service.url, requests)) == _answers(alone)
        assert wait_for(lambda: batch_sizes(service)[1] > 0)
        assert "adaptive batching is off" not in service.log()


def test_invocations_of_a_model_answering_frames_are_not_joined(tmp_path: Path) -> None:
    """A model answering DataFrames: /invocations requests are served one by one (records do
    not split back into rows), and batching stays on for its Seldon requests."""
    import mlflow.pyfunc

    code = tmp_path / "sums.py"
    code.write_text(FRAME_ANSWER_CODE)
    folder = tmp_path / "sums"
    mlflow.pyfunc.save_model(path=str(folder), python_model=str(code))
    with running(_mlflow_launch(folder), [MODELSHELF], env=BATCHING_ENV) as (service,):
        invocations = [("/invocations", _invocations(_rows(400 + i, 1 + i % 2))) for i in range(8)]
        seldon = [("/api/v1.0/predictions", _seldon(_rows(500 + i, 1))) for i in range(8)]
        requests = invocations + seldon
        alone = _one_by_one(service, requests)
        assert all(r.status_code == 200 for r in alone), [r.text for r in alone]
        assert alone[0].json() == {
            "predictions": [{"sum": sum(row), "first": row[0]} for row in _rows(400, 1)]
        }
        for _ in range(3):
            assert _answers(_at_once(service.url, requests)) == _answers(alone)
        assert wait_for(lambda: batch_sizes(service)[1] > 0)  # the Seldon requests joined
        assert "adaptive batching is off" not in service.log()
