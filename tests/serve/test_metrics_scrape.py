"""``modelshelf serve``'s metrics port: scrapes never fail while a model adds a series per request,
and which process answers them (the worker itself when it is the only one)."""

from __future__ import annotations

import threading
import time

import httpx
import psutil
import pytest
from frontends import COMPONENTS, MODELSHELF, Launch, running
from prometheus_client.parser import text_string_to_metric_families

from microservice import wait_for_text

SCRAPES = 2000
#: One request (one new series) per this many scrapes, all through the run: each scrape formats
#: every series (~30 µs each), so the series must grow slowly to keep the test short.
SCRAPES_PER_REQUEST = 3
BODY = {"jsonData": {"x": 1}}


def _series(text: str) -> int:
    return sum(
        len(family.samples)
        for family in text_string_to_metric_families(text)
        if family.name == "series_requests"
    )


def test_scrapes_while_every_request_adds_a_series_all_succeed():
    launch = Launch("SeriesModel", COMPONENTS)
    with running(launch, [MODELSHELF]) as (service,):
        scraping = threading.Event()
        scraping.set()
        tokens = threading.Semaphore(0)
        sent: list[int] = []

        def send() -> None:
            with httpx.Client(base_url=service.url, timeout=30) as client:
                while scraping.is_set():
                    if tokens.acquire(timeout=0.5):
                        response = client.post("/api/v1.0/predictions", json=BODY)
                        sent.append(response.status_code)

        sender = threading.Thread(target=send)
        sender.start()
        failures: list[str] = []
        growing: list[int] = []
        url = f"http://127.0.0.1:{service.metrics_port}/metrics"
        try:
            with httpx.Client(timeout=30) as client:
                for index in range(SCRAPES):
                    response = client.get(url)
                    if response.status_code != 200:
                        failures.append(f"{response.status_code}: {response.text[:200]}")
                    elif index % 200 == 0:
                        growing.append(_series(response.text))
                    if index % SCRAPES_PER_REQUEST == 0:
                        tokens.release()
        finally:
            scraping.clear()
            sender.join(60)
        assert failures == [], f"{len(failures)} of {SCRAPES} scrapes failed: {failures[:3]}"
        assert set(sent) == {200}
        # The scrapes did race new series: their number grew while they ran.
        assert len(set(growing)) > 3, growing
        assert growing == sorted(growing)
        assert "Traceback" not in service.log()


def _children(service) -> list[psutil.Process]:
    return psutil.Process(service.process.pid).children(recursive=True)


def _listening_ports(process: psutil.Process) -> set[int]:
    return {c.laddr.port for c in process.net_connections("tcp") if c.status == "LISTEN"}


def _series_workers(service, requests: int) -> dict[str, float]:
    """``worker_id`` -> value of ``series_requests`` for requests 1..``requests``."""
    text = httpx.get(f"http://127.0.0.1:{service.metrics_port}/metrics", timeout=30).text
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "series_requests_total" and sample.labels["method"] == "predict":
                found[sample.labels["n"]] = (sample.labels["worker_id"], sample.value)
    assert sorted(found, key=int) == [str(n) for n in range(1, requests + 1)], found
    return {worker: value for worker, value in found.values()}


def test_one_worker_without_grpc_serves_its_metrics_itself():
    """The tree is the parent and the REST worker (no metrics process); the worker answers the
    metrics port with what it counted, labelled with its pid as the metrics process did."""
    with running(Launch("SeriesModel", COMPONENTS), [MODELSHELF]) as (service,):
        (worker,) = _children(service)
        assert _listening_ports(worker) >= {service.http_port, service.metrics_port}
        for _ in range(3):
            assert service.post("/api/v1.0/predictions", BODY).status_code == 200
        assert _series_workers(service, 3) == {str(worker.pid): 1.0}
        missing = httpx.get(f"http://127.0.0.1:{service.metrics_port}/other", timeout=30)
        assert missing.status_code == 404
        # The REST port does not answer as the metrics port does (seldon-core's unknown path).
        assert "series_requests" not in service.client.get("/metrics").text


def test_with_a_grpc_worker_the_metrics_process_gathers_both():
    """REST and gRPC workers: the metrics process serves every worker's metrics."""
    launch = Launch("SeriesModel", COMPONENTS, grpc=True)
    with running(launch, [MODELSHELF]) as (service,):
        children = _children(service)
        assert len(children) == 3  # metrics, gRPC, REST
        # every child inherits the parent's REST and metrics sockets; the gRPC port is its own
        (grpc,) = [c for c in children if service.grpc_port in _listening_ports(c)]
        for _ in range(2):
            assert service.post("/api/v1.0/predictions", BODY).status_code == 200
        deadline = time.monotonic() + 30
        while True:  # the metrics process folds the queue in as it arrives
            try:
                workers = _series_workers(service, 2)
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        (rest_worker,) = workers
        others = {c.pid for c in children} - {grpc.pid}
        assert int(rest_worker) in others  # the REST worker's series, gathered by the third


def test_a_replaced_worker_serves_the_metrics_port_again():
    """The parent keeps the metrics socket: the worker forked to replace a dead one answers it."""
    launch = Launch("CrashingModel", COMPONENTS)
    with running(launch, [MODELSHELF]) as (service,):
        url = f"http://127.0.0.1:{service.metrics_port}/metrics"
        assert httpx.get(url, timeout=30).status_code == 200
        (first,) = _children(service)
        with pytest.raises(httpx.HTTPError):  # the connection dies with the worker
            service.post("/api/v1.0/predictions", {"jsonData": {"exit": 3}})
        wait_for_text(service.log, "1 replacement(s) in the last 60 s")
        (replacement,) = _children(service)
        assert replacement.pid != first.pid
        assert service.metrics_port in _listening_ports(replacement)
        assert httpx.get(url, timeout=30).status_code == 200
