"""The floor: what one predict call costs inside a process, with no HTTP and no protocol.

Run as ``python -m bench.inprocess MODELS_DIR BATCH_ROWS`` (a process of its own, so imports and
thread pools of the harness do not colour it); prints one JSON object of microseconds per call.
Our servers' own ``predict`` (after the front end has decoded the request) is timed beside the
bare framework call, so the gap is what our code adds.
"""

from __future__ import annotations

import importlib
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.config import REPO
from bench.models import SINGLE_ROW, batch_rows
from bench.report import XGB_DMATRIX, XGB_OURS


def per_call_us(call: Callable[[], Any], batches: int = 5, batch_seconds: float = 0.1) -> float:
    """Median over ``batches`` timed loops of the microseconds one call takes."""
    call()
    n, elapsed = 1, 0.0
    while elapsed < batch_seconds / 4:
        n *= 2
        started = time.perf_counter()
        for _ in range(n):
            call()
        elapsed = time.perf_counter() - started
    n = max(1, int(n * batch_seconds / elapsed))
    timings = []
    for _ in range(batches):
        started = time.perf_counter()
        for _ in range(n):
            call()
        timings.append((time.perf_counter() - started) / n)
    return round(statistics.median(timings) * 1e6, 1)


def our_server(folder: str, cls: str, **parameters: str) -> Any | None:
    """``servers/<folder>/<cls>.py``'s class, instantiated and loaded; None if it is missing."""
    path = REPO / "servers" / folder
    if not (path / f"{cls}.py").exists():
        return None
    sys.path.insert(0, str(path))
    server = getattr(importlib.import_module(cls), cls)(**parameters)
    server.load()
    return server


def measure(models_dir: Path, rows: int) -> dict[str, dict[str, float | None]]:
    import joblib
    import xgboost as xgb

    inputs = {1: np.asarray(SINGLE_ROW), rows: np.asarray(batch_rows(rows))}
    found: dict[str, dict[str, float | None]] = {}

    def add(name: str, call: Callable[[np.ndarray], Any] | None) -> None:
        found[name] = {
            f"{n}_rows_us": per_call_us(lambda x=x: call(x)) if call else None
            for n, x in inputs.items()
        }

    estimator = joblib.load(models_dir / "sklearn" / "model.joblib")
    add("sklearn predict_proba (the estimator alone)", estimator.predict_proba)
    sklearn_server = our_server(
        "sklearnserver", "SKLearnServer", model_uri=str(models_dir / "sklearn")
    )
    add("ours: SKLearnServer.predict", sklearn_server.predict if sklearn_server else None)

    booster = xgb.Booster(model_file=str(models_dir / "xgboost" / "model.json"))
    add(
        XGB_DMATRIX,
        lambda x: booster.predict(xgb.DMatrix(x)),
    )
    add("xgboost Booster.inplace_predict(X)", booster.inplace_predict)
    xgboost_server = our_server(
        "xgboostserver", "XGBoostServer", model_uri=str(models_dir / "xgboost")
    )
    add(XGB_OURS, xgboost_server.predict if xgboost_server else None)

    import mlflow.pyfunc

    pyfunc = mlflow.pyfunc.load_model(str(models_dir / "mlflow"))
    add("mlflow pyfunc.predict(ndarray)", pyfunc.predict)
    mlflow_server = our_server("mlflowserver", "MLFlowServer", model_uri=str(models_dir / "mlflow"))
    add("ours: MLFlowServer.predict", mlflow_server.predict if mlflow_server else None)

    bodies = {n: json.dumps({"data": {"ndarray": x.tolist()}}) for n, x in inputs.items()}
    found["JSON request decode (stdlib json + np.asarray)"] = {
        f"{n}_rows_us": per_call_us(lambda b=b: np.asarray(json.loads(b)["data"]["ndarray"]))
        for n, b in bodies.items()
    }
    probabilities = {n: estimator.predict_proba(x) for n, x in inputs.items()}
    found["JSON response encode (tolist + stdlib json)"] = {
        f"{n}_rows_us": per_call_us(lambda p=p: json.dumps({"data": {"ndarray": p.tolist()}}))
        for n, p in probabilities.items()
    }
    return found


if __name__ == "__main__":
    print(json.dumps(measure(Path(sys.argv[1]), int(sys.argv[2]))))
