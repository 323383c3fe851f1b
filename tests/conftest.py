"""Fixtures shared by the whole suite: small models on disk, started once per session."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import models

# The suite's own MLflow environment folder (tests that need one of their own set theirs): what
# one run's before-run leaves there -- packages, a failure mark -- must not reach another run,
# nor the machine's default folder.
os.environ.setdefault("MODELSHELF_ENV_DIR", tempfile.mkdtemp(prefix="modelshelf-test-env-"))


@pytest.fixture(scope="session")
def sklearn_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Folders holding one saved scikit-learn model each, by role."""
    root = tmp_path_factory.mktemp("sklearn-models")
    return {
        "iris": models.save(models.iris_classifier(), root / "iris"),
        "iris_frame": models.save(models.iris_frame_pipeline(), root / "iris_frame"),
        "regressor": models.save(models.diabetes_regressor(), root / "regressor"),
        "text": models.save(models.text_pipeline(), root / "text", "model.pkl"),
        "scaler": models.save(models.iris_scaler(), root / "scaler"),
        "svc": models.save(models.svc_without_proba(), root / "svc"),
    }


@pytest.fixture(scope="session")
def s3_server():
    """One real S3 endpoint (moto_server) for the whole session; tests use their own buckets."""
    from s3server import running_s3_server

    with running_s3_server() as server:
        yield server


@pytest.fixture(scope="session")
def gcs_server():
    """One real GCS endpoint (gcp-storage-emulator, in memory) for the whole session."""
    from gcsserver import running_gcs_server

    with running_gcs_server() as server:
        yield server


@pytest.fixture(scope="session")
def mlflow_tracking(s3_server, tmp_path_factory: pytest.TempPathFactory):
    """One real ``mlflow server`` (sqlite, artifacts in S3 on ``s3_server``) for the session."""
    from mlflow_tracking import running_tracking_server

    with running_tracking_server(s3_server, tmp_path_factory.mktemp("mlflow-tracking")) as server:
        yield server


@pytest.fixture(scope="session")
def mlflow_models(mlflow_tracking, tmp_path_factory: pytest.TempPathFactory):
    """The MLflow tests' models, logged and registered once; ``wheels`` is their wheels folder."""
    from mlflow_tracking import log_test_models

    wheels = tmp_path_factory.mktemp("wheels")
    return {"wheels": wheels, **log_test_models(mlflow_tracking, wheels)}
