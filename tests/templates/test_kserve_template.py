"""templates/kserve-model as a user would use it: train, run the package's tests, serve with its
entry point (KServe's variables), and ask it over KServe V1, V2 REST and V2 gRPC with real
clients; then its transformer in front of it."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import joblib
import numpy as np
import pytest

from microservice import BIN, REPO, free_ports, http_answers, running_process
from modelshelf.kserve_model import model_server_arguments

TEMPLATE = REPO / "templates" / "kserve-model"
PYTHON = str(BIN / "python")
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """``python -m mymodel.trainer --output DIR``, as the README says."""
    folder = tmp_path_factory.mktemp("mymodel")
    result = subprocess.run(
        [PYTHON, "-m", "mymodel.trainer", "--output", str(folder)],
        cwd=TEMPLATE,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert '"accuracy": 0.9' in result.stdout
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.joblib"]
    return folder


def expected(model_dir: Path) -> np.ndarray:
    return joblib.load(model_dir / "model.joblib").predict_proba(np.array(ROWS))


@contextlib.contextmanager
def serving(module: str, env: dict[str, str], args: list[str] = ()) -> Iterator[dict]:
    http_port, grpc_port, metrics_port = free_ports(3)
    variables = {
        "HTTP_PORT": str(http_port),
        "GRPC_PORT": str(grpc_port),
        "PREDICTIVE_UNIT_METRICS_SERVICE_PORT": str(metrics_port),
        **env,
    }
    ready = http_answers(f"http://127.0.0.1:{http_port}/v2/health/ready", 200)
    with running_process(
        [PYTHON, "-m", module, *args], ready, cwd=TEMPLATE, env=variables, timeout=120
    ) as process:
        yield {"http": http_port, "grpc": grpc_port, "process": process}


@pytest.fixture(scope="module")
def predictor(model_dir) -> Iterator[dict]:
    """The entry point with KServe's variables; the model from STORAGE_URI (a local URI here;
    KServe's storage initializer would have put it in /mnt/models)."""
    env = {"MODEL_NAME": "mymodel", "STORAGE_URI": model_dir.as_uri()}
    with serving("mymodel.inferencer", env) as ports:
        yield ports


def test_the_packages_own_tests_pass():
    result = subprocess.run(
        [PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", "mymodel"],
        cwd=TEMPLATE,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout


def test_kserve_v1_instances_get_the_models_predictions(predictor, model_dir):
    import httpx

    url = f"http://127.0.0.1:{predictor['http']}/v1/models/mymodel"
    assert httpx.get(url).json() == {"name": "mymodel", "ready": True}
    answer = httpx.post(f"{url}:predict", json={"instances": ROWS})
    assert answer.status_code == 200, answer.text
    np.testing.assert_array_equal(answer.json()["predictions"], expected(model_dir))
    records = [dict(zip(FEATURES, row, strict=True)) for row in ROWS]
    answer = httpx.post(f"{url}:predict", json={"instances": records})
    assert answer.status_code == 200, answer.text
    np.testing.assert_array_equal(answer.json()["predictions"], expected(model_dir))
    bad = httpx.post(f"{url}:predict", json={"instances": [[1.0, 2.0]]})
    assert bad.status_code == 400
    assert "expected 4 values" in bad.json()["error"]
    assert httpx.post(f"{url}:predict", json={"instances": ROWS}).status_code == 200  # still up


def test_v2_rest_and_grpc_through_tritonclient(predictor, model_dir):
    """tritonclient's gRPC stubs clash with ours in one process; the server is a subprocess."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    rows = np.array(ROWS, dtype=np.float64)
    client = httpclient.InferenceServerClient(f"127.0.0.1:{predictor['http']}")
    assert client.is_model_ready("mymodel")
    for binary in (False, True):
        tensor = httpclient.InferInput("input-0", list(rows.shape), "FP64")
        tensor.set_data_from_numpy(rows, binary_data=binary)
        result = client.infer("mymodel", [tensor])
        (output,) = result.get_response()["outputs"]
        np.testing.assert_array_equal(result.as_numpy(output["name"]), expected(model_dir))
    channel = grpcclient.InferenceServerClient(f"127.0.0.1:{predictor['grpc']}")
    tensor = grpcclient.InferInput("input-0", list(rows.shape), "FP64")
    tensor.set_data_from_numpy(rows)
    result = channel.infer("mymodel", [tensor])
    name = result.get_response().outputs[0].name
    np.testing.assert_array_equal(result.as_numpy(name), expected(model_dir))
    channel.close()


def test_transformer_names_the_class_of_records(predictor, model_dir):
    import httpx

    records = [dict(zip(FEATURES, row, strict=True)) for row in ROWS]
    args = ["--model_name", "mymodel", "--predictor_host", f"127.0.0.1:{predictor['http']}"]
    with serving("mymodel.transformer", {}, args) as transformer:
        url = f"http://127.0.0.1:{transformer['http']}/v1/models/mymodel:predict"
        answer = httpx.post(url, json={"instances": records})
        assert answer.status_code == 200, answer.text
        classes = ["setosa", "versicolor", "virginica"]
        labels = [classes[i] for i in expected(model_dir).argmax(axis=1)]
        assert answer.json() == {"predictions": labels}
        missing = httpx.post(url, json={"instances": [{"sepal_length": 1.0}]})
        assert missing.status_code == 400 and "missing sepal_width" in missing.json()["error"]


def test_entry_point_arguments_follow_kserve(monkeypatch, tmp_path):
    for name in ("MODEL_DIR", "STORAGE_URI", "HTTP_PORT", "GRPC_PORT", "MODEL_NAME"):
        monkeypatch.delenv(name, raising=False)
    args = model_server_arguments([])
    assert (args.http_port, args.grpc_port, args.model_name) == (8080, 8081, "model")
    monkeypatch.setenv("STORAGE_URI", "s3://models/mymodel")
    monkeypatch.setenv("HTTP_PORT", "9001")
    args = model_server_arguments(["--model_name=iris", "--unknown=1"])
    assert (args.model_name, args.http_port) == ("iris", 9001)
    # /mnt/models is empty or absent here: the URI itself, downloaded by modelshelf's storage
    assert args.model_dir == "s3://models/mymodel"
    monkeypatch.setenv("MODEL_DIR", str(tmp_path))
    assert model_server_arguments([]).model_dir == str(tmp_path)
    assert model_server_arguments(["--model_dir", "/x"]).model_dir == "/x"
    assert sys.modules["modelshelf.kserve_model"].MODEL_MOUNT == "/mnt/models"


def test_the_templates_inferenceservice_validates_and_runs_its_image_as_a_custom_container():
    from modelshelf.graph import crd, kserve
    from modelshelf.graph.manifest import document_problems

    (doc,) = crd.load_file(TEMPLATE / "inferenceservice.yaml")
    assert document_problems(doc) == []
    assert kserve.model_request(doc) is None  # a custom container: no runtime is selected
    (container,) = doc["spec"]["predictor"]["containers"]
    assert {"name": "STORAGE_URI", "value": "s3://models/mymodel"} in container["env"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    dockerfile = (TEMPLATE / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["python", "-m", "mymodel.inferencer"]' in dockerfile
    assert "USER 8888" in dockerfile
