"""Every malformed Seldon request is a 4xx naming what was wrong, on both front ends.

SKLearnServer (a ``ModelServer``: its ``model_error_handler`` guards its requests) runs under
``seldon-core-microservice`` and ``modelshelf serve``; each bad request below goes to both and
must get the same 4xx, with seldon-core's JSON status body naming the field or the cause. Then:
bodies over ``MODELSHELF_MAX_BODY_BYTES`` are refused with 413 before they are read, client
errors are counted and logged at WARNING at most once a minute (never at ERROR per request), and
both servers still answer.
"""

from __future__ import annotations

import json
import re
import socket
import time

import pytest
from frontends import MODELSHELF, SELDON, Launch, running

from microservice import SERVERS, seldon_parameters

ND = {"data": {"ndarray": [[5.1, 3.5, 1.4, 0.2]]}}
PREDICT = "/api/v1.0/predictions"
LIMIT = 2**20  # MODELSHELF_MAX_BODY_BYTES for these servers
JSON = "application/json"


def body(value: object) -> bytes:
    return json.dumps(value).encode()


def nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


#: name: (method, path, body, content type, status, what the answer's ``info`` must say).
BAD: dict[str, tuple[str, str, bytes | None, str, int, str]] = {
    "meta a string": (
        "POST",
        PREDICT,
        body({"meta": "x", "data": {"ndarray": [[1, 2, 3, 4]]}}),
        JSON,
        400,
        "meta must be an object",
    ),
    "meta null": ("POST", PREDICT, body({"meta": None, **ND}), JSON, 400, "meta must be"),
    "meta.tags a list": (
        "POST",
        PREDICT,
        body({"meta": {"tags": [1]}, **ND}),
        JSON,
        400,
        "meta.tags must be an object",
    ),
    "meta.metrics an object": (
        "POST",
        PREDICT,
        body({"meta": {"metrics": {}}, **ND}),
        JSON,
        400,
        "meta.metrics must be an array",
    ),
    "meta.metrics[0] without key": (
        "POST",
        PREDICT,
        body({"meta": {"metrics": [{"value": 1}]}, **ND}),
        JSON,
        400,
        "meta.metrics[0].key must be a string",
    ),
    "meta.puid a number": (
        "POST",
        PREDICT,
        body({"meta": {"puid": 5}, **ND}),
        JSON,
        400,
        "meta.puid must be a string",
    ),
    "meta.requestPath of numbers": (
        "POST",
        PREDICT,
        body({"meta": {"requestPath": {"a": 1}}, **ND}),
        JSON,
        400,
        "meta.requestPath.a must be a string",
    ),
    "tensor without shape": (
        "POST",
        PREDICT,
        body({"data": {"tensor": {"values": [1, 2, 3, 4]}}}),
        JSON,
        400,
        "data.tensor has no shape",
    ),
    "tensor without values": (
        "POST",
        PREDICT,
        body({"data": {"tensor": {"shape": [1, 4]}}}),
        JSON,
        400,
        "data.tensor has no values",
    ),
    "tensor shape of strings": (
        "POST",
        PREDICT,
        body({"data": {"tensor": {"shape": ["1"], "values": [1]}}}),
        JSON,
        400,
        "data.tensor.shape must be an array of integers",
    ),
    "tensor values of strings": (
        "POST",
        PREDICT,
        body({"data": {"tensor": {"shape": [2], "values": [1, "a"]}}}),
        JSON,
        400,
        "data.tensor.values must be numbers only (a tensor holds doubles), but "
        "data.tensor.values[1] is a string ('a')",
    ),
    "tensor shape not holding the values": (
        "POST",
        PREDICT,
        body({"data": {"tensor": {"shape": [3, 4], "values": [1, 2]}}}),
        JSON,
        400,
        "does not hold its 2 values",
    ),
    "tensor two -1": (
        "POST",
        PREDICT,
        body({"data": {"tensor": {"shape": [-1, -1], "values": [1, 2]}}}),
        JSON,
        400,
        "at most one -1",
    ),
    "tensor a list": ("POST", PREDICT, body({"data": {"tensor": [1]}}), JSON, 400, "data.tensor"),
    "tftensor": (
        "POST",
        PREDICT,
        body({"data": {"tftensor": {}}}),
        JSON,
        400,
        "data.tftensor needs TensorFlow",
    ),
    "binData a number": ("POST", PREDICT, body({"binData": 5}), JSON, 400, "binData must be"),
    "binData not base64": ("POST", PREDICT, body({"binData": "abc"}), JSON, 400, "padding"),
    "data true": ("POST", PREDICT, body({"data": True}), JSON, 400, "data must be an object"),
    "data a list": ("POST", PREDICT, body({"data": [1, 2]}), JSON, 400, "data must be an object"),
    "data.names a string": (
        "POST",
        PREDICT,
        body({"data": {"names": "abc", "ndarray": [[1, 2, 3, 4]]}}),
        JSON,
        400,
        "data.names must be an array of strings",
    ),
    "data.names of numbers": (
        "POST",
        PREDICT,
        body({"data": {"names": [1, 2, 3, 4], "ndarray": [[1, 2, 3, 4]]}}),
        JSON,
        400,
        "data.names must be an array of strings (the column names), but data.names[0] is a "
        "number (1)",
    ),
    "tensor shape a float": (
        "POST",
        PREDICT,
        body({"data": {"tensor": {"shape": [1e20], "values": [1]}}}),
        JSON,
        400,
        "data.tensor.shape must be an array of integers (sizes from 0, one -1), but "
        "data.tensor.shape[0] is a number (1e+20)",
    ),
    "an integer of 5000 digits": (
        "POST",
        PREDICT,
        b'{"data": {"ndarray": [[1, 2, ' + b"9" * 5000 + b", 4]]}}",
        JSON,
        400,
        "data.ndarray[0][2] is an integer of 5000 digits, out of range of every number type",
    ),
    "ndarray a number": (
        "POST",
        PREDICT,
        body({"data": {"ndarray": 5}}),
        JSON,
        400,
        "data.ndarray must be an array",
    ),
    "ndarray and tensor": (
        "POST",
        PREDICT,
        body({"data": {"ndarray": [[1]], "tensor": {"shape": [1], "values": [1]}}}),
        JSON,
        400,
        "holds tensor and ndarray",
    ),
    "ragged ndarray": (
        "POST",
        PREDICT,
        body({"data": {"ndarray": [[1, 2], [3]]}}),
        JSON,
        400,
        "data.ndarray[1] has 1 values, data.ndarray[0] has 2; expected rows of equal length",
    ),
    "ragged ndarray after 8 rows (the C conversion)": (
        "POST",
        PREDICT,
        body({"data": {"ndarray": [[1, 2, 3, 4]] * 8 + [[1, 2, 3]]}}),
        JSON,
        400,
        "data.ndarray[8] has 3 values, data.ndarray[0] has 4",
    ),
    "a value among the rows": (
        "POST",
        PREDICT,
        body({"data": {"ndarray": [[1, 2, 3, 4], 5]}}),
        JSON,
        400,
        "data.ndarray[1] is a number (5) but data.ndarray[0] is an array",
    ),
    "flat ndarray": (
        "POST",
        PREDICT,
        body({"data": {"ndarray": [5.1, 3.5, 1.4, 0.2]}}),
        JSON,
        400,
        "expected rows: the input is a flat list of 4 values (shape [4]), but this model takes "
        "rows of 4 values; send one row as [[…]], shape [1, 4]",
    ),
    "flat tensor": (
        "POST",
        PREDICT,
        body({"data": {"tensor": {"shape": [4], "values": [5.1, 3.5, 1.4, 0.2]}}}),
        JSON,
        400,
        "expected rows: the input is a flat list of 4 values",
    ),
    "data without values": (
        "POST",
        PREDICT,
        body({"data": {}}),
        JSON,
        400,
        "data has no values: expected one of tensor, ndarray, tftensor (with optional names), "
        "found no field",
    ),
    "data with names only": (
        "POST",
        PREDICT,
        body({"data": {"names": ["a"]}}),
        JSON,
        400,
        "found names",
    ),
    "integer too large for a float": (  # Python's json reads it; numpy: "int too large…"
        "POST",
        PREDICT,
        b'{"data": {"ndarray": [[1' + b"0" * 400 + b", 1, 2, 3]]}}",
        JSON,
        400,
        "data.ndarray[0][0] is an integer of 401 digits, out of range of every number type",
    ),
    "100,000 nested [": ("POST", PREDICT, b"[" * 100_000, JSON, 400, "too deeply"),
    "2,000 nested arrays in ndarray": (
        "POST",
        PREDICT,
        f'{{"data": {{"ndarray": {nested(2000)}}}}}'.encode(),
        JSON,
        400,
        "too deeply",
    ),
    "500 nested arrays in ndarray": (
        "POST",
        PREDICT,
        f'{{"data": {{"ndarray": {nested(500)}}}}}'.encode(),
        JSON,
        400,
        "dimension",
    ),
    "strData a number": ("POST", PREDICT, body({"strData": 5}), JSON, 400, "strData must be"),
    "strData an object": (
        "POST",
        PREDICT,
        body({"strData": {"a": 1}}),
        JSON,
        400,
        "strData must be",
    ),
    "two payloads": (
        "POST",
        PREDICT,
        body({**ND, "strData": "x"}),
        JSON,
        400,
        "holds data and strData",
    ),
    "no payload": ("POST", PREDICT, body({"something": 1}), JSON, 400, "has no payload"),
    "body an array": ("POST", PREDICT, b"[1, 2]", JSON, 400, "must be a JSON object"),
    "body a number": ("POST", PREDICT, b"5", JSON, 400, "must be a JSON object"),
    "body a string": ("POST", PREDICT, b'"text"', JSON, 400, "must be a JSON object"),
    "body null": ("POST", PREDICT, b"null", JSON, 400, "got null"),
    "body not JSON": ("POST", PREDICT, b"this is not json", JSON, 400, "not JSON"),
    "body truncated": ("POST", PREDICT, b'{"data": {"ndarray": [[1, 2', JSON, 400, "not JSON"),
    "body not UTF-8": (
        "POST",
        PREDICT,
        b'{"strData": "\xff\xfe"}',
        JSON,
        400,
        "strData is not UTF-8 text",
    ),
    "empty body": ("POST", PREDICT, b"", JSON, 400, "not JSON"),
    "text/plain body": ("POST", PREDICT, body(ND), "text/plain", 400, "must be JSON"),
    "json= not JSON": ("GET", "/predict?json=nope", None, JSON, 400, "json parameter is not"),
    "json= nested too deep": (
        "GET",
        "/predict?json=" + "[" * 2000,
        None,
        JSON,
        400,
        "too deeply",
    ),
    "transform-input bad meta": (
        "POST",
        "/transform-input",
        body({"meta": 1, **ND}),
        JSON,
        400,
        "meta must be",
    ),
    "route data true": ("POST", "/route", body({"data": True}), JSON, 400, "data must be"),
    "aggregate a message": ("POST", "/aggregate", body(ND), JSON, 400, "seldonMessages must be"),
    "aggregate empty": (
        "POST",
        "/aggregate",
        body({"seldonMessages": []}),
        JSON,
        400,
        "non-empty array",
    ),
    "aggregate bad message": (
        "POST",
        "/aggregate",
        body({"seldonMessages": [ND, {"data": True}]}),
        JSON,
        400,
        "seldonMessages[1].data must be",
    ),
    "feedback reward a string": (
        "POST",
        "/api/v1.0/feedback",
        body({"reward": "x"}),
        JSON,
        400,
        "reward must be a number",
    ),
    "feedback request a number": (
        "POST",
        "/send-feedback",
        body({"request": 5}),
        JSON,
        400,
        "request must be a JSON object",
    ),
    "feedback unknown field": (
        "POST",
        "/api/v1.0/feedback",
        body({"rewards": 1}),
        JSON,
        400,
        "Feedback has request",
    ),
    "GET on a POST path": ("GET", PREDICT, None, JSON, 405, "Method Not Allowed"),
    "PUT on predict": ("PUT", "/predict", body(ND), JSON, 405, "Method Not Allowed"),
    "DELETE on feedback": ("DELETE", "/api/v1.0/feedback", None, JSON, 405, "Not Allowed"),
    "POST on health": ("POST", "/health/status", body(ND), JSON, 405, "Not Allowed"),
    "unknown path": ("GET", "/no/such/path", None, JSON, 404, "Not Found"),
    "unknown POST path": ("POST", "/api/v2.0/predictions", body(ND), JSON, 404, "Not Found"),
}


@pytest.fixture(scope="module")
def both(sklearn_models):
    launch = Launch(
        "SKLearnServer",
        SERVERS / "sklearnserver",
        seldon_parameters(model_uri=sklearn_models["iris"]),
    )
    with running(launch, [SELDON, MODELSHELF], env={"MODELSHELF_MAX_BODY_BYTES": str(LIMIT)}) as s:
        yield dict(zip(("seldon", "modelshelf"), s, strict=True))


@pytest.mark.parametrize("front_end", ["seldon", "modelshelf"])
@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_request_is_a_4xx_naming_what_was_wrong(both, front_end, case):
    method, path, content, content_type, status, says = BAD[case]
    service = both[front_end]
    response = service.client.request(
        method, path, content=content, headers={"content-type": content_type}
    )
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"] == "application/json"
    found = response.json()["status"]
    assert says in found["info"], found
    expected_reason = {
        400: "MICROSERVICE_BAD_DATA",
        404: "MICROSERVICE_NOT_FOUND",
        405: "MICROSERVICE_METHOD_NOT_ALLOWED",
    }[status]
    assert found["reason"] == expected_reason
    assert found["code"] == -1 and found["status"] == 1  # seldon-core's status body
    if status == 405:
        assert method not in response.headers["allow"]
        assert set(response.headers["allow"].split(", ")) & {"GET", "POST"}


@pytest.mark.parametrize("front_end", ["seldon", "modelshelf"])
def test_both_front_ends_give_the_same_answers_to_bad_requests(both, front_end):
    """The front ends agree (the guard is the class's, not the front end's)."""
    other = both["modelshelf" if front_end == "seldon" else "seldon"]
    for method, path, content, content_type, _, _ in BAD.values():
        kwargs = {"content": content, "headers": {"content-type": content_type}}
        mine = both[front_end].client.request(method, path, **kwargs)
        theirs = other.client.request(method, path, **kwargs)
        assert (mine.status_code, mine.json()) == (theirs.status_code, theirs.json())


def _raw_request(port: int, head: bytes, chunks: list[bytes]) -> bytes:
    """Send ``head`` and ``chunks`` (stopping if the server closes), then read the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        for chunk in chunks:
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
        answer = b""
        try:
            while data := sock.recv(65536):
                answer += data
                if b"\r\n\r\n" in answer and answer.rstrip().endswith(b"}"):
                    break
        except ConnectionResetError:
            pass
        return answer


@pytest.mark.parametrize("front_end", ["seldon", "modelshelf"])
def test_a_body_over_the_limit_is_refused_before_it_is_read(both, front_end):
    """Content-Length says 10 GB and only the headers are sent: the 413 comes at once."""
    service = both[front_end]
    head = (
        f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {10 * 2**30}\r\n\r\n"
    ).encode()
    started = time.monotonic()
    answer = _raw_request(service.http_port, head, [])
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert time.monotonic() - started < 10
    found = json.loads(answer.partition(b"\r\n\r\n")[2])["status"]
    assert "10,737,418,240 bytes is over the limit of 1,048,576 bytes" in found["info"]
    assert "MODELSHELF_MAX_BODY_BYTES" in found["info"]
    # Just under the limit is read (and answered as the body deserves).
    under = b'{"strData": "' + b"a" * (LIMIT - 100) + b'"}'
    assert service.post(PREDICT, content=under, headers={"content-type": JSON}).status_code == 400


@pytest.mark.parametrize("front_end", ["seldon", "modelshelf"])
def test_a_chunked_body_over_the_limit_is_refused(both, front_end):
    service = both[front_end]
    head = (
        f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    piece = b"[" * 65536
    chunks = [b"%x\r\n%s\r\n" % (len(piece), piece)] * 40 + [b"0\r\n\r\n"]  # 2.5 MiB
    answer = _raw_request(service.http_port, head, chunks)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b"MODELSHELF_MAX_BODY_BYTES" in answer


@pytest.mark.parametrize(
    ("path", "expected_keys"),
    [
        ("/v2/models/iris/infer", {"error"}),
        ("/v1/models/iris:predict", {"error"}),
        ("/invocations", {"error_code", "message"}),
        (PREDICT, {"status"}),
    ],
    ids=["v2", "kserve-v1", "mlflow", "seldon"],
)
def test_a_body_over_the_limit_gets_its_protocols_error_body(both, path, expected_keys):
    """A 9 MB body over the 1 MiB limit: V2 and KServe V1 answer ``{"error": …}``, MLflow's
    scoring protocol ``{"error_code", "message"}``, Seldon's paths its status body."""
    size = 9_000_000
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {size}\r\n\r\n"
    ).encode()
    piece = b"1" * 65536
    answer = _raw_request(both["modelshelf"].http_port, head, [piece] * (size // len(piece)))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    found = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert set(found) == expected_keys, found
    text = json.dumps(found)
    assert "9,000,000 bytes is over the limit of 1,048,576 bytes" in text, found
    assert "MODELSHELF_MAX_BODY_BYTES" in text, found
    if path == "/invocations":
        assert found["error_code"] == "BAD_REQUEST", found


def _client_errors_counted(service) -> float:
    import httpx

    text = httpx.get(f"http://127.0.0.1:{service.metrics_port}/metrics", timeout=10).text
    pattern = r'^modelshelf_client_errors_total\{[^}]*status="400"[^}]*\} (\S+)$'
    return sum(float(value) for value in re.findall(pattern, text, re.M))


@pytest.mark.parametrize("front_end", ["seldon", "modelshelf"])
def test_client_errors_are_not_logged_per_request(both, front_end):
    service = both[front_end]
    for _ in range(30):
        assert service.post(PREDICT, {"data": True}).status_code == 400
    log = service.log()
    assert not [line for line in log.splitlines() if "ERROR" in line and "BAD_DATA" in line]
    warnings = re.findall(r"WARNING.*client error\(s\) \(4xx\).*", log)
    assert 1 <= len(warnings) <= 3, warnings  # one a minute: this module runs for 1-2 minutes
    assert "the last: " in warnings[0]


def test_modelshelf_serve_counts_client_errors(both):
    service = both["modelshelf"]
    before = _client_errors_counted(service)
    for _ in range(25):
        assert service.post(PREDICT, {"strData": 1}).status_code == 400
    deadline = time.monotonic() + 30
    while (found := _client_errors_counted(service)) < before + 25 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert found == before + 25


@pytest.mark.parametrize("front_end", ["seldon", "modelshelf"])
def test_a_cors_preflight_is_not_a_bad_request(both, front_end):
    response = both[front_end].client.options(
        PREDICT,
        headers={"origin": "http://ui.example", "access-control-request-method": "POST"},
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "http://ui.example"


@pytest.mark.parametrize("front_end", ["seldon", "modelshelf"])
def test_both_still_answer_good_requests(both, front_end):
    service = both[front_end]
    response = service.post(PREDICT, ND)
    assert response.status_code == 200
    assert response.json()["data"]["names"] == ["setosa", "versicolor", "virginica"]
    # A null among the tags: modelshelf serve's fast path hands the answer to Flask's encoder.
    with_null = {**ND, "meta": {"tags": {"caller": None}}}
    response = service.post(PREDICT, with_null)
    assert response.status_code == 200, response.text
    assert response.json()["meta"]["tags"] == {"caller": None}
    assert len(response.json()["data"]["ndarray"][0]) == 3
    assert service.process.poll() is None
    assert "Traceback" not in service.log()


def test_a_plain_class_keeps_seldon_s_answers_but_not_an_error_line_per_client_error():
    """A class that is not guarded answers as under seldon-core (its 400 for a body without a
    payload), and ``modelshelf serve`` counts it instead of logging an ERROR per request."""
    from frontends import COMPONENTS

    with running(Launch("ScoringModel", COMPONENTS), [MODELSHELF]) as (service,):
        for _ in range(20):
            response = service.post(PREDICT, {"something": 1})
            assert response.status_code == 400
            assert response.json()["status"]["info"].startswith("Invalid request data type")
        deadline = time.monotonic() + 30
        while (found := _client_errors_counted(service)) < 20 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert found == 20
        log = service.log()
        assert "MICROSERVICE_BAD_DATA" not in log
        warnings = re.findall(r"WARNING.*client error\(s\) \(4xx\).*", log)
        assert len(warnings) == 1 and "Invalid request data type" in warnings[0], warnings
        # Server faults are still logged at ERROR, once each.
        assert service.post(PREDICT, {"jsonData": {"fail": 1}}).status_code == 500
        errors = [line for line in service.log().splitlines() if "ERROR" in line]
        assert len([line for line in errors if "cannot score 1" in line]) == 1, errors
