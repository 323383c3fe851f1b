"""Server CPU per request for an OpenMP model, beside the model's own in-process call: the
measure of the thread policy (issue 20).

    .venv/bin/python tests/bench/openmp_cpu_per_request.py [--model hgb|xgboost] [--rows 1]
        [--requests 400] [--connections 4]

Starts ``modelshelf serve`` (1 worker) on a fresh HistGradientBoostingClassifier (SKLearnServer)
or a 300-round depth-6 XGBoost booster on 30 features (XGBoostServer), sends requests of
``--rows`` rows from ``--connections`` client threads and divides the server process tree's CPU
time by the requests. Ratios, not absolute figures, are what carry across machines.
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


def in_process_cpu(predict: object, rows: np.ndarray, calls: int) -> float:
    predict(rows)  # type: ignore[operator]
    started = time.process_time()
    for _ in range(calls):
        predict(rows)  # type: ignore[operator]
    return (time.process_time() - started) / calls


def hgb_model(folder: Path) -> tuple[object, np.ndarray, Launch]:
    X, y = make_classification(n_samples=5000, n_features=20, random_state=0)
    model = HistGradientBoostingClassifier(max_iter=100, random_state=0).fit(X, y)
    joblib.dump(model, folder / "model.joblib")
    parameters = seldon_parameters(model_uri=str(folder))
    return model.predict_proba, X, Launch("SKLearnServer", SERVERS / "sklearnserver", parameters)


def xgboost_model(folder: Path) -> tuple[object, np.ndarray, Launch]:
    import xgboost as xgb

    X, y = make_classification(n_samples=5000, n_features=30, random_state=0)
    booster = xgb.train({"max_depth": 6, "objective": "binary:logistic"}, xgb.DMatrix(X, y), 300)
    booster.save_model(folder / "model.json")
    booster = xgb.Booster(model_file=str(folder / "model.json"))
    parameters = seldon_parameters(model_uri=str(folder))
    return (
        booster.inplace_predict,
        X,
        Launch("XGBoostServer", SERVERS / "xgboostserver", parameters),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--model", choices=("hgb", "xgboost"), default="hgb")
    parser.add_argument("--rows", type=int, default=1)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="openmp-bench-"))
    predict, X, launch = (hgb_model if args.model == "hgb" else xgboost_model)(folder)
    row = X[: args.rows]
    own = in_process_cpu(predict, row, 200)
    with threadpool_limits(1, "openmp"):
        own_single = in_process_cpu(predict, row, 200)
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
    what = f"{args.model}, {args.rows} row(s)"
    print(f"{what}: the model's own call in process: {own * 1e3:.2f} ms CPU")
    print(f"the same on one OpenMP thread: {own_single * 1e3:.2f} ms CPU")
    print(f"modelshelf serve, {args.connections} connections: {cpu * 1e3:.2f} ms CPU")
    print(f"  per request, {served / wall:.0f} req/s; ratio server/own {cpu / own:.1f}")


if __name__ == "__main__":
    main()
