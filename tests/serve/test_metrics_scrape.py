"""Metrics scrapes never fail while a model adds a series per request (``modelshelf serve``)."""

from __future__ import annotations

import threading

import httpx
from frontends import COMPONENTS, MODELSHELF, Launch, running
from prometheus_client.parser import text_string_to_metric_families

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
