"""Every MLflow URI form MLflow 3 gives users, resolved and fetched from a real ``mlflow server``
that serves its own artifacts (``mlflow-artifacts:/``), then served by MLFlowServer: the model
fetched is the one the URI names (its MLmodel's model id), and it predicts."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from microservice import BIN, free_port, http_answers, running_process
from mlflow_tracking import client_environment
from models import IRIS_X, iris_classifier

pytestmark = pytest.mark.timeout(300)

NAME = "modelshelf-uris"


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    """``mlflow server`` with its artifact proxy (artifacts in a local folder), one model
    logged twice under one registered name: version 1 (alias ``champion``, stage Production)
    and version 2 (the latest)."""
    work = tmp_path_factory.mktemp("mlflow-uris")
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    command = [
        str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
        "--workers", "1", "--backend-store-uri", f"sqlite:///{work / 'mlflow.db'}",
        "--serve-artifacts", "--artifacts-destination", str(work / "artifacts"),
    ]  # fmt: skip
    with running_process(
        command,
        http_answers(f"{uri}/health", status=200),
        cwd=work,
        log_path=work / "mlflow-server.log",
        timeout=180,
    ):
        env = {
            "MLFLOW_TRACKING_URI": uri,
            "MODELSHELF_MODEL_CACHE": str(work / "cache"),
        }
        with client_environment(env):
            import mlflow

            mlflow.set_tracking_uri(uri)
            mlflow.set_experiment("uris")
            client = mlflow.MlflowClient(uri)
            infos = []
            for _ in range(2):
                with mlflow.start_run():
                    infos.append(
                        mlflow.sklearn.log_model(
                            iris_classifier(),
                            name="model",
                            registered_model_name=NAME,
                            pip_requirements=["scikit-learn"],
                        )
                    )
            client.set_registered_model_alias(NAME, "champion", "1")
            with warnings.catch_warnings():  # stages are deprecated, still in use
                warnings.simplefilter("ignore")
                client.transition_model_version_stage(NAME, "1", "Production")
            yield {"env": env, "infos": infos, "client": client}


def uri_forms(tracking) -> dict[str, tuple[str, int]]:
    """Each URI form -> (the URI, which of the two logged models it names)."""
    first, second = tracking["infos"]
    location = tracking["client"].get_logged_model(first.model_id).artifact_location
    return {
        "model id": (first.model_uri, 0),
        "name/version": (f"models:/{NAME}/1", 0),
        "alias": (f"models:/{NAME}@champion", 0),
        "latest": (f"models:/{NAME}/latest", 1),
        "Latest (any case)": (f"models:/{NAME}/Latest", 1),
        "stage": (f"models:/{NAME}/Production", 0),
        "runs": (f"runs:/{second.run_id}/model", 1),
        "artifact location": (location, 0),
    }


FORMS = [
    "model id",
    "name/version",
    "alias",
    "latest",
    "Latest (any case)",
    "stage",
    "runs",
    "artifact location",
]


@pytest.mark.parametrize("form", FORMS)
def test_every_uri_form_fetches_the_model_it_names(tracking, form):
    import yaml

    from modelshelf.environment.model_location import model_folder
    from modelshelf.frameworks.mlflow import MLFlowServer

    uri, which = uri_forms(tracking)[form]
    if form == "model id":
        assert uri.startswith("models:/m-"), uri
    if form == "artifact location":
        assert uri.startswith("mlflow-artifacts:/"), uri
    with client_environment(tracking["env"]):
        folder = model_folder(uri)
        mlmodel = yaml.safe_load((Path(folder) / "MLmodel").read_text())
        assert mlmodel["model_id"] == tracking["infos"][which].model_id
        server = MLFlowServer(uri)
        server.load()
        answer = server.predict(IRIS_X[:2])
    assert np.asarray(answer).shape == (2,)


def test_an_unknown_model_id_says_so(tracking):
    from modelshelf.environment.model_location import model_folder
    from modelshelf.errors import StorageError

    with client_environment(tracking["env"]), pytest.raises(StorageError) as info:
        model_folder("models:/m-00000000000000000000000000000000")
    assert "models:/m-00000000000000000000000000000000" in str(info.value)
