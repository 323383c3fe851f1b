"""SKLearnServer as KServe runs our sklearn runtime: ``modelshelf run`` (the image's entry point)
with the args and env of manifests/kserve/runtime-modelshelf-sklearn.yaml. The runtime sets
``PREDICT_PROBA=false``, so an InferenceService it takes over from KServe's sklearnserver keeps
getting labels; ``PREDICT_PROBA=true`` in the InferenceService's env gives probabilities, as on
KServe's; a value KServe would silently read as false stops the start. Unset (Seldon, ``modelshelf
serve`` by hand) the default stays ``predict_proba``: tests/servers/test_sklearnserver.py."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import joblib
import numpy as np
import pytest

from microservice import (
    BIN,
    REPO,
    SERVERS,
    Microservice,
    free_ports,
    run_to_exit,
    running_command,
)
from models import IRIS_X, assert_same_predictions
from modelshelf.graph import crd

RUNTIME = REPO / "manifests" / "kserve" / "runtime-modelshelf-sklearn.yaml"
X = IRIS_X[[0, 60, 120]]  # one row of each class
NAME = "iris"


def image_env(model_uri: str = "/mnt/models", method: str = "") -> dict[str, str]:
    """The sklearn image's own ENV (``images/server.Dockerfile``), a ``method`` parameter added."""
    parameters = [{"name": "model_uri", "value": model_uri, "type": "STRING"}]
    if method:
        parameters.append({"name": "method", "value": method, "type": "STRING"})
    return {"MODEL_NAME": "SKLearnServer", "PREDICTIVE_UNIT_PARAMETERS": json.dumps(parameters)}


def runtime_command(model_dir: Path, ports: tuple[int, int, int], **isvc_env: str | None):
    """The runtime's container as KServe starts it: its args with ``{{.Name}}`` filled, the
    storage initializer's folder for /mnt/models and free ports; the image's ENV, the runtime's
    env, then the InferenceService's (KServe merges the predictor's env over the runtime's; a
    None here removes the variable, as a container without the runtime has none)."""
    (doc,) = crd.load_file(RUNTIME)
    (container,) = doc["spec"]["containers"]
    http_port, grpc_port, metrics_port = ports
    filled = {
        "{{.Name}}": NAME,
        "/mnt/models": str(model_dir),
        "=8080": f"={http_port}",
        "=8081": f"={grpc_port}",
    }
    args = []
    for arg in container["args"]:
        for placeholder, value in filled.items():
            arg = arg.replace(placeholder, value)
        args.append(arg)
    env = {**image_env(), **{v["name"]: str(v["value"]) for v in container["env"]}}
    env["PREDICTIVE_UNIT_METRICS_SERVICE_PORT"] = str(metrics_port)
    for name, value in isvc_env.items():
        if value is None:
            env.pop(name)
        else:
            env[name] = value
    return [str(BIN / "modelshelf"), "run", *args], env


@contextlib.contextmanager
def under_the_runtime(model_dir: Path, **isvc_env: str | None) -> Iterator[Microservice]:
    ports = free_ports(3)
    command, env = runtime_command(model_dir, ports, **isvc_env)
    with running_command(
        command, SERVERS / "sklearnserver", env, *ports, health_path="/v2/health/ready"
    ) as service:
        yield service


def test_the_runtime_sets_kserves_default():
    (doc,) = crd.load_file(RUNTIME)
    env = {v["name"]: v["value"] for v in doc["spec"]["containers"][0]["env"]}
    assert env["PREDICT_PROBA"] == "false"


def test_the_runtime_answers_labels_over_v1_v2_and_in_the_metadata(sklearn_models):
    """What KServe's sklearnserver answers a V1 ``:predict`` and a V2 infer: ``predict``."""
    import tritonclient.http as httpclient

    model = joblib.load(sklearn_models["iris"] / "model.joblib")
    with under_the_runtime(sklearn_models["iris"]) as service:
        answer = service.post(f"/v1/models/{NAME}:predict", {"instances": X.tolist()})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"predictions": model.predict(X).tolist()}
        client = httpclient.InferenceServerClient(f"127.0.0.1:{service.http_port}")
        try:
            tensor = httpclient.InferInput("input-0", list(X.shape), "FP64")
            tensor.set_data_from_numpy(X, binary_data=False)
            result = client.infer(NAME, [tensor])
            (output,) = result.get_response()["outputs"]
            assert (output["name"], output["datatype"]) == ("predict", "BYTES")
            labels = [value.decode() for value in result.as_numpy("predict")]
            assert labels == model.predict(X).tolist()
            # the probabilities stay one named output away, as V2 outputs choose the method
            proba = httpclient.InferRequestedOutput("predict_proba", binary_data=False)
            result = client.infer(NAME, [tensor], outputs=[proba])
            assert_same_predictions(result.as_numpy("predict_proba"), model.predict_proba(X))
            outputs = client.get_model_metadata(NAME)["outputs"]
        finally:
            client.close()
        assert outputs[0] == {"name": "predict", "datatype": "BYTES", "shape": [-1]}
        seldon = service.get("/api/v1.0/metadata").json()
        assert seldon["custom"]["method"] == "predict"
        assert seldon["outputs"] == [{"messagetype": "ndarray", "schema": {"shape": [-1]}}]


@pytest.mark.parametrize(
    ("model", "isvc_env", "method", "served"),
    [
        # the InferenceService's env flips it, any case, as KServe's .lower() == "true"
        ("iris", {"PREDICT_PROBA": "True"}, "", "predict_proba"),
        # KServe reads an empty value as false too
        ("iris", {"PREDICT_PROBA": ""}, "", "predict"),
        # the method parameter wins over either
        ("iris", {}, "predict_proba", "predict_proba"),
        ("iris", {"PREDICT_PROBA": "true"}, "decision_function", "decision_function"),
        # "true" on a model without predict_proba: predict, as KServe's hasattr check
        ("svc", {"PREDICT_PROBA": "true"}, "", "predict"),
        # a model with neither method keeps serving transform
        ("scaler", {}, "", "transform"),
    ],
    ids=["true", "empty", "method-wins", "method-wins-true", "svc-true", "scaler"],
)
def test_predict_proba_and_method_choose_what_v1_answers(
    sklearn_models, model, isvc_env, method, served
):
    fitted = joblib.load(sklearn_models[model] / "model.joblib")
    env = dict(isvc_env)
    if method:
        env["PREDICTIVE_UNIT_PARAMETERS"] = image_env(method=method)["PREDICTIVE_UNIT_PARAMETERS"]
    with under_the_runtime(sklearn_models[model], **env) as service:
        answer = service.post(f"/v1/models/{NAME}:predict", {"instances": X.tolist()})
        assert answer.status_code == 200, answer.text
        assert_same_predictions(answer.json()["predictions"], getattr(fitted, served)(X))
        assert service.get("/api/v1.0/metadata").json()["custom"]["method"] == served


@pytest.mark.parametrize("value", ["1", "yes", " true", "probabilities"])
def test_a_value_kserve_would_read_as_false_stops_the_start_in_one_line(tmp_path, value):
    """KServe's sklearnserver reads anything but "true" as false: ``1`` and ``yes`` would be
    labels there while meaning probabilities. Refused before the model is looked for (the
    folder here does not exist)."""
    command, env = runtime_command(tmp_path / "not-there", free_ports(3), PREDICT_PROBA=value)
    result = run_to_exit(command, SERVERS / "sklearnserver", env=env)
    assert result.returncode != 0
    lines = [line for line in result.stdout.splitlines() if "PREDICT_PROBA" in line]
    assert len(lines) == 1, result.stdout[-3000:]
    assert f"environment variable PREDICT_PROBA={value!r} is not valid" in lines[0]
    assert "true (probabilities) or false (labels)" in lines[0]
    assert "Traceback" not in result.stdout
    errors = [line for line in result.stdout.splitlines() if "ERROR" in line]
    assert not [line for line in errors if "not-there" in line]  # never got to the folder


def test_unset_keeps_seldons_predict_proba_under_kserves_arguments(sklearn_models):
    """A custom container (no runtime env) or a Seldon deployment: today's default."""
    model = joblib.load(sklearn_models["iris"] / "model.joblib")
    with under_the_runtime(sklearn_models["iris"], PREDICT_PROBA=None) as service:
        answer = service.post(f"/v1/models/{NAME}:predict", {"instances": X.tolist()})
        assert_same_predictions(answer.json()["predictions"], model.predict_proba(X))
    assert np.asarray(answer.json()["predictions"]).shape == (3, 3)
