"""Cold start: what ``modelshelf serve`` imports before it answers its first prediction.

Most of a cold start is imports (issue 20: scikit-learn alone pulls SciPy's stats and pandas).
Timing it here would only measure the machine, so this guards the cause instead: a real server,
run with ``python -X importtime`` (every process of the tree writes each import it makes to the
shared log), answers one prediction, and the modules it never needed must not be in the log.
The figures are in ``make bench`` (``bench/results/realistic.md``).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import httpx
import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from microservice import SERVERS, free_ports, seldon_parameters, started, wait_until_ready

#: Modules a scikit-learn model's first prediction does not need: the other commands of the
#: ``modelshelf`` CLI (the launcher's KServe arguments, graphs, environments), the other
#: frameworks, storage clients for URIs it does not use, and what the REST path never calls.
NOT_BEFORE_FIRST_PREDICTION = (
    "modelshelf.launcher",
    "modelshelf.commands.run",
    "modelshelf.commands.graph",
    "modelshelf.commands.env",
    "modelshelf.commands.fetch",
    "modelshelf.graph",
    "modelshelf.environment",
    "modelshelf.frameworks.xgboost",
    "modelshelf.frameworks.lightgbm",
    "modelshelf.frameworks.mlflow",
    "xgboost",
    "lightgbm",
    "mlflow",
    "boto3",
    "botocore",
    "google.cloud",
    "gunicorn",
    "tritonclient",
    "redis",
    # scikit-learn imports them at the top of several modules for fitting and scoring code;
    # deferred (``modelshelf.deferred_imports``), they are imported only by what uses them:
    # pandas by a model fitted on a DataFrame or a jsonData request.
    "pandas",
    "scipy.stats",
    "scipy.ndimage",
    # and SciPy's optimizers, integration, interpolation and spatial distances, for fitting
    # (linear models, calibration, neighbours' metric learning) and scoring code
    "scipy.optimize",
    "scipy.integrate",
    "scipy.interpolate",
    "scipy.spatial",
    # seldon-core's wrapper imports them at the top for its gRPC server; with no gRPC worker
    # (``--grpc-workers 0``) nothing uses them.
    "grpc",
    "grpc_reflection",
)


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("cold-start")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    joblib.dump(LogisticRegression().fit(X, X[:, 0] > 0), folder / "model.joblib")
    return folder


@pytest.fixture(scope="module")
def frame_model_folder(tmp_path_factory: pytest.TempPathFactory):
    """A LogisticRegression fitted on a DataFrame: its requests become DataFrames."""
    import pandas as pd

    folder = tmp_path_factory.mktemp("cold-start-frame")
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(200, 4)), columns=["a", "b", "c", "d"])
    joblib.dump(LogisticRegression().fit(X, X["a"] > 0), folder / "model.joblib")
    return folder


def _imported(log: str) -> set[str]:
    """Module names from ``-X importtime`` lines (``import time: self | cumulative | name``)."""
    return {m.group(1) for m in re.finditer(r"^import time:.*\|\s*(\S+)\s*$", log, re.M)}


def first_prediction(
    model_folder: Path,
    log_path: Path,
    body: dict,
    env: dict[str, str] | None = None,
    server: str = "SKLearnServer",
) -> tuple[dict, str]:
    """The first answer of a real ``server`` tree to ``body``, and its ``-X importtime`` log up
    to that answer."""
    http_port, grpc_port, metrics_port = free_ports(3)
    command = [
        sys.executable, "-X", "importtime", "-m", "modelshelf", "serve", server,
        "--parameters", seldon_parameters(model_uri=str(model_folder)),
        "--http-port", str(http_port), "--grpc-port", str(grpc_port),
        "--metrics-port", str(metrics_port), "--workers", "1", "--grpc-workers", "0",
    ]  # fmt: skip
    url = f"http://127.0.0.1:{http_port}/api/v1.0/predictions"
    answers: list[dict] = []

    def predicted() -> bool:
        try:
            response = httpx.post(url, json=body, timeout=5)
        except httpx.HTTPError:
            return False
        if response.status_code == 200:
            answers.append(response.json())
        return bool(answers)

    with started(command, SERVERS / server.lower(), env, log_path) as (process, path):
        wait_until_ready(process, path, predicted, timeout=120)
        log = path.read_text(errors="replace")
    assert "sklearn.linear_model" in _imported(log), "no -X importtime output: nothing to check"
    return answers[0], log


@pytest.fixture(scope="module")
def first_prediction_log(model_folder, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The ``-X importtime`` log of a real server tree up to its first correct prediction."""
    log_path = tmp_path_factory.mktemp("cold-start-log") / "server.log"
    answer, log = first_prediction(model_folder, log_path, ROW)
    assert len(answer["data"]["ndarray"][0]) == 2, json.dumps(answer)
    return log


ROW = {"data": {"ndarray": [[0.5, -1.0, 2.0, 0.1]]}}


def test_the_first_prediction_imports_only_what_it_needs(first_prediction_log):
    needless = sorted(
        name
        for name in _imported(first_prediction_log)
        if any(
            name == unwanted or name.startswith(unwanted + ".")
            for unwanted in NOT_BEFORE_FIRST_PREDICTION
        )
    )
    assert not needless, f"imported before the first prediction without need: {needless}"


def test_the_web_stack_is_imported_once_for_the_whole_tree(first_prediction_log):
    """The HTTP server (httptools under it) is imported by the parent before the forks, so the
    REST worker and the metrics process share its pages rather than each importing (and
    holding) a copy."""
    imports = re.findall(r"^import time:.*\|\s*httptools\s*$", first_prediction_log, re.M)
    assert len(imports) == 1, f"httptools imported {len(imports)} times in the tree"


def test_pandas_is_imported_as_scikit_learn_writes_it_with_the_switch_off(model_folder, tmp_path):
    """``MODELSHELF_DEFER_IMPORTS=false``: nothing deferred, scikit-learn imports pandas."""
    env = {"MODELSHELF_DEFER_IMPORTS": "false"}
    answer, log = first_prediction(model_folder, tmp_path / "server.log", ROW, env)
    assert len(answer["data"]["ndarray"][0]) == 2, json.dumps(answer)
    assert "pandas" in _imported(log)


def test_a_model_fitted_on_a_dataframe_gets_pandas_at_load(frame_model_folder, tmp_path):
    """Its requests need pandas: imported (for real, not deferred) while the model loads, and
    the rows, named in another order, reach the model as its columns."""
    body = {"data": {"names": ["d", "c", "b", "a"], "ndarray": [[0.1, 2.0, -1.0, 0.5]]}}
    answer, log = first_prediction(frame_model_folder, tmp_path / "server.log", body)
    lines = log.splitlines()
    loaded = next(i for i, line in enumerate(lines) if "SKLearnServer loaded" in line)
    pandas = [i for i, line in enumerate(lines) if re.search(r"\|\s*pandas\s*$", line)]
    assert pandas and pandas[0] < loaded, "pandas was not imported while the model loaded"
    probabilities = answer["data"]["ndarray"][0]
    assert probabilities[1] > 0.5, json.dumps(answer)  # column a = 0.5 > 0: class True


class ScaledLogistic:
    """An MLflow PythonModel's user code around an estimator (mixed with ``PythonModel`` when
    saved, and pickled by value: the server does not import this module)."""

    def __init__(self, estimator: object) -> None:
        self.estimator = estimator

    def predict(self, context: object, model_input: object, params: object = None) -> object:
        return self.estimator.predict_proba(np.asarray(model_input, dtype=np.float64))


def test_a_model_loaded_after_the_fork_defers_the_same_imports(tmp_path):
    """An MLflow PythonModel loads in the worker, after the fork: the scikit-learn its pickle
    imports there leaves scipy.stats unimported too."""
    import cloudpickle
    import mlflow.pyfunc

    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 4))
    model_class = type("ScaledLogisticModel", (ScaledLogistic, mlflow.pyfunc.PythonModel), {})
    python_model = model_class(LogisticRegression().fit(X, X[:, 0] > 0))
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        folder = tmp_path / "mlflow-model"
        mlflow.pyfunc.save_model(folder, python_model=python_model)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    answer, log = first_prediction(folder, tmp_path / "server.log", ROW, server="MLFlowServer")
    assert len(answer["data"]["ndarray"][0]) == 2, json.dumps(answer)
    imported = _imported(log)
    assert "sklearn.linear_model" in imported and "mlflow.pyfunc" in imported
    assert "scipy.stats" not in imported


def test_the_parent_builds_the_model_without_collector_passes_and_the_worker_has_it_back():
    """Importing the class's module and building it (a framework's import, a model's load)
    allocate what lives as long as the server: the parent makes it without the collector's
    automatic passes, then collects once and freezes it; the worker serves with the collector
    running as before (on, default threshold) and the model frozen."""
    from frontends import COMPONENTS, MODELSHELF, Launch, running

    with running(Launch("CollectorWitness", COMPONENTS), [MODELSHELF]) as (service,):
        response = service.post("/api/v1.0/predictions", {"data": {"ndarray": [[1.0]]}})
    assert response.status_code == 200, response.text
    passes, enabled, threshold, frozen = response.json()["data"]["ndarray"][0]
    assert passes == 0  # ~280 with the collector running
    assert (enabled, threshold, frozen) == (1, 700, 1)
