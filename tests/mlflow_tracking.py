"""A real MLflow tracking server (sqlite backend, artifacts in S3 on the session's moto server),
and the models the MLflow tests log and register in it once per session."""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from microservice import BIN, free_port, http_answers, running_process
from s3server import S3Server

ARTIFACT_BUCKET = "mlflow-artifacts"
#: The package the PythonModel needs: built as a wheel at test time, never installed beforehand.
TINY_PACKAGE, TINY_VERSION = "shelftiny", "0.1.0"
TINY_SOURCE = "def double(values):\n    return values * 2\n"

PYTHON_MODEL_CODE = '''
import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel


class Doubler(PythonModel):
    """Needs shelftiny, which only the environment builder installs."""

    def predict(self, context, model_input, params=None):
        import shelftiny

        return shelftiny.double(np.asarray(model_input, dtype=float))


mlflow.models.set_model(Doubler())
'''


@dataclass(frozen=True)
class TrackingServer:
    uri: str
    s3: S3Server
    process: subprocess.Popen

    @property
    def env(self) -> dict[str, str]:
        """What a client (a test, before-run, a server) needs to reach the server and S3."""
        return {
            **self.s3.env,
            "MLFLOW_TRACKING_URI": self.uri,
            "MLFLOW_S3_ENDPOINT_URL": self.s3.endpoint,
        }


@contextlib.contextmanager
def client_environment(values: dict[str, str]) -> Iterator[None]:
    """``values`` in ``os.environ`` for the block only (the in-process MLflow client reads them)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


@contextlib.contextmanager
def running_tracking_server(
    s3: S3Server, workdir: Path, timeout: float = 180
) -> Iterator[TrackingServer]:
    with contextlib.suppress(Exception):
        s3.client().create_bucket(Bucket=ARTIFACT_BUCKET)
    port = free_port()
    command = [
        str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
        "--default-artifact-root", f"s3://{ARTIFACT_BUCKET}", "--no-serve-artifacts",
    ]  # fmt: skip
    env = {**s3.env, "MLFLOW_S3_ENDPOINT_URL": s3.endpoint}
    uri = f"http://127.0.0.1:{port}"
    with running_process(
        command,
        http_answers(f"{uri}/health", status=200),
        cwd=workdir,
        env=env,
        log_path=workdir / "mlflow-server.log",
        timeout=timeout,
    ) as process:
        yield TrackingServer(uri, s3, process)


@dataclass(frozen=True)
class LoggedModel:
    """One logged and registered model: its registry name and version, and its S3 folder."""

    name: str
    version: str
    s3_uri: str
    run_id: str

    @property
    def models_uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def log_test_models(tracking: TrackingServer, wheels_dir: Path) -> dict[str, LoggedModel]:
    """Log and register the models the MLflow tests serve; build the PythonModel's wheel."""
    from wheels import build_wheel

    build_wheel(wheels_dir, TINY_PACKAGE, TINY_VERSION, TINY_SOURCE)
    with client_environment(tracking.env):
        import cloudpickle
        import mlflow
        import numpy
        import pandas as pd
        import sklearn
        import xgboost
        from mlflow.models import infer_signature

        import models

        mlflow.set_tracking_uri(tracking.uri)
        mlflow.set_experiment("modelshelf-tests")
        client = mlflow.MlflowClient(tracking.uri)
        base = [f"numpy=={numpy.__version__}", f"cloudpickle=={cloudpickle.__version__}"]
        frame = pd.DataFrame(models.IRIS_X, columns=models.IRIS_COLUMNS)
        logged: dict[str, LoggedModel] = {}

        def record(key: str, info) -> None:
            version = info.registered_model_version
            location = mlflow.get_logged_model(info.model_id).artifact_location
            logged[key] = LoggedModel(f"modelshelf-{key}", str(version), location, info.run_id)

        with mlflow.start_run():
            classifier = models.iris_frame_pipeline()
            record("classifier", mlflow.sklearn.log_model(
                classifier, name="classifier", registered_model_name="modelshelf-classifier",
                signature=infer_signature(frame, classifier.predict(frame)),
                pip_requirements=[*base, f"scikit-learn=={sklearn.__version__}"],
            ))  # fmt: skip
            scaler = models.iris_scaler()
            record("scaler", mlflow.sklearn.log_model(
                scaler, name="scaler", registered_model_name="modelshelf-scaler",
                signature=infer_signature(models.IRIS_X, scaler.transform(models.IRIS_X)),
                pip_requirements=[*base, f"scikit-learn=={sklearn.__version__}"],
            ))  # fmt: skip
            booster = xgboost.XGBClassifier(n_estimators=5, max_depth=2, n_jobs=1)
            booster.fit(models.IRIS_X, models.IRIS.target)
            record("xgboost", mlflow.xgboost.log_model(
                booster, name="xgboost", registered_model_name="modelshelf-xgboost",
                signature=infer_signature(models.IRIS_X, booster.predict(models.IRIS_X)),
                pip_requirements=[*base, f"xgboost-cpu=={xgboost.__version__}"],
            ))  # fmt: skip
            with tempfile.TemporaryDirectory() as tmp:
                code = Path(tmp) / "doubler.py"
                code.write_text(PYTHON_MODEL_CODE)
                record("doubler", mlflow.pyfunc.log_model(
                    name="doubler", python_model=str(code),
                    registered_model_name="modelshelf-doubler",
                    pip_requirements=[*base, f"{TINY_PACKAGE}=={TINY_VERSION}"],
                ))  # fmt: skip
        client.set_registered_model_alias("modelshelf-classifier", "champion", "1")
    return logged
