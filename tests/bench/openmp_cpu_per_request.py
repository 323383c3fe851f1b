"""Server CPU per single-row request for an OpenMP model (HistGradientBoosting), beside the
model's own in-process call: the measure of the thread policy (issue 20).

    .venv/bin/python tests/bench/openmp_cpu_per_request.py [--requests 400] [--connections 4]

Starts ``modelshelf serve SKLearnServer`` (1 worker) on a fresh HistGradientBoostingClassifier,
sends single-row requests from ``--connections`` client threads and divides the server process
tree's CPU time by the requests. Prints one line per measure; ratios, not absolute figures, are
what carry across machines.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import joblib
import numpy as np
import psutil
from sklearn.datasets import make_classification
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))

from frontends import MODELSHELF, Launch, running

from microservice import SERVERS, seldon_parameters


def tree_cpu(pid: int) -> float:
    root = psutil.Process(pid)
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def in_process_cpu(model: object, row: np.ndarray, calls: int) -> float:
    model.predict_proba(row)  # type: ignore[attr-defined]
    started = time.process_time()
    for _ in range(calls):
        model.predict_proba(row)  # type: ignore[attr-defined]
    return (time.process_time() - started) / calls


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    X, y = make_classification(n_samples=5000, n_features=20, random_state=0)
    model = HistGradientBoostingClassifier(max_iter=100, random_state=0).fit(X, y)
    row = X[:1]
    folder = Path(tempfile.mkdtemp(prefix="hgb-bench-"))
    joblib.dump(model, folder / "model.joblib")
    own = in_process_cpu(model, row, 200)
    with threadpool_limits(1, "openmp"):
        own_single = in_process_cpu(model, row, 200)
    launch = Launch(
        "SKLearnServer", SERVERS / "sklearnserver", seldon_parameters(model_uri=str(folder))
    )
    payload = {"data": {"ndarray": row.tolist()}}
    with running(launch, [MODELSHELF]) as (service,):
        url = f"{service.url}/api/v1.0/predictions"

        def send(count: int) -> None:
            with httpx.Client(timeout=60) as client:
                for _ in range(count):
                    assert client.post(url, json=payload).status_code == 200

        send(20)  # warm up
        per_connection = args.requests // args.connections
        before = tree_cpu(service.process.pid)
        wall = time.perf_counter()
        with ThreadPoolExecutor(args.connections) as pool:
            list(pool.map(send, [per_connection] * args.connections))
        wall = time.perf_counter() - wall
        served = per_connection * args.connections
        cpu = (tree_cpu(service.process.pid) - before) / served
    print(f"model's own predict_proba, 1 row, in process: {own * 1e3:.2f} ms CPU")
    print(f"the same on one OpenMP thread: {own_single * 1e3:.2f} ms CPU")
    print(f"modelshelf serve, 1 row, {args.connections} connections: {cpu * 1e3:.2f} ms CPU")
    print(f"  per request, {served / wall:.0f} req/s; ratio server/own {cpu / own:.1f}")


if __name__ == "__main__":
    main()
