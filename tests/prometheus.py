"""Read a server's metrics port as Prometheus does: ``/prometheus``, then one sample by labels."""

from __future__ import annotations

import re
import time

import httpx


def scrape(service, timeout: float = 30) -> str:
    """The metrics page; waits for the metrics process, which may listen after REST does."""
    url = f"http://127.0.0.1:{service.metrics_port}/prometheus"
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = service.client.get(url)
        except httpx.ConnectError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
            continue
        assert response.status_code == 200, response.text
        return response.text


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the first sample of ``name`` whose labels include ``labels``."""
    for line in text.splitlines():
        match = re.match(rf"{name}\{{(.*)\}} (\S+)$", line)
        if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
            return float(match.group(2))
    return None
