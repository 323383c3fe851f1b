"""The same V2 requests to MLServer (the bench's venv, made if missing) and to ``modelshelf
serve`` on the same scikit-learn and XGBoost models: same outputs, datatypes and values."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from frontends import MODELSHELF, Launch, running
from peer_servers import peer_bin

import xgboost_models
from microservice import SERVERS, free_ports, http_answers, running_process, seldon_parameters
from models import IRIS_X

ROWS = IRIS_X[::10]


def v2_request(rows: np.ndarray, output: str | None, datatype: str = "FP64") -> dict:
    request: dict = {
        "inputs": [
            {
                "name": "input-0",
                "datatype": datatype,
                "shape": list(rows.shape),
                "data": rows.ravel().tolist(),
            }
        ]
    }
    if output:
        request["outputs"] = [{"name": output}]
    return request


def mlserver_command(folder: Path, implementation: str, uri: Path) -> tuple[list[str], int]:
    http, grpc, metrics = free_ports(3)
    settings = {
        "http_port": http,
        "grpc_port": grpc,
        "metrics_port": metrics,
        "parallel_workers": 0,
        "host": "127.0.0.1",
    }
    model = {"name": "iris", "implementation": implementation, "parameters": {"uri": str(uri)}}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "settings.json").write_text(json.dumps(settings))
    (folder / "model-settings.json").write_text(json.dumps(model))
    return [str(peer_bin("mlserver") / "mlserver"), "start", str(folder)], http


FAMILIES = {
    "sklearn": ("SKLearnServer", "sklearnserver", "mlserver_sklearn.SKLearnModel"),
    "xgboost": ("XGBoostServer", "xgboostserver", "mlserver_xgboost.XGBoostModel"),
}


@pytest.fixture(scope="module", params=list(FAMILIES))
def pair(request, sklearn_models, tmp_path_factory):
    family = request.param
    cls, folder, implementation = FAMILIES[family]
    root = tmp_path_factory.mktemp(f"mlserver-{family}")
    if family == "sklearn":
        model_dir, model_file = sklearn_models["iris"], "model.joblib"
    else:
        model_dir = xgboost_models.save_booster(xgboost_models.iris_softprob(), root / "model")
        model_file = "model.json"
    command, port = mlserver_command(root / "mlserver", implementation, model_dir / model_file)
    ours = Launch(
        cls,
        SERVERS / folder,
        seldon_parameters(model_uri=model_dir),
        extra_args=("--model-name", "iris"),
    )
    url = f"http://127.0.0.1:{port}"
    env = {"PATH": f"{command[0].rsplit('/', 1)[0]}:/usr/bin:/bin"}
    with (
        running_process(
            command, http_answers(f"{url}/v2/models/iris/ready", 200), env=env, timeout=180
        ),  # fmt: skip
        running(ours, [MODELSHELF], timeout=180) as (service,),
    ):
        yield family, url, service


OUTPUTS = {"sklearn": ["predict", "predict_proba"], "xgboost": ["predict"]}


@pytest.mark.parametrize("datatype", ["FP64", "FP32"])
def test_same_outputs_as_mlserver(pair, datatype):
    family, url, service = pair
    for output in OUTPUTS[family]:
        rows = ROWS.astype(np.float32) if datatype == "FP32" else ROWS
        request = v2_request(rows, output, datatype)
        theirs = httpx.post(f"{url}/v2/models/iris/infer", json=request, timeout=30)
        ours = service.client.post("/v2/models/iris/infer", json=request)
        assert ours.status_code == theirs.status_code == 200, (ours.text, theirs.text)
        (expected,) = theirs.json()["outputs"]
        (found,) = ours.json()["outputs"]
        assert found["name"] == expected["name"] == output
        assert found["datatype"] == expected["datatype"], (found, expected)
        # MLServer writes a 1-D answer as [N, 1]; the values and their order are the same.
        assert np.prod(found["shape"]) == np.prod(expected["shape"])
        assert found["shape"][0] == expected["shape"][0]
        if expected["datatype"] == "BYTES":
            assert found["data"] == expected["data"]
        else:
            # FP32 answers may differ in the last float32 bit: XGBoost's small-request tree
            # walk rounds exp correctly where XGBoost uses expf (issue 18's accelerators).
            rtol = 1e-12 if expected["datatype"] == "FP64" else 2 * np.finfo(np.float32).eps
            np.testing.assert_allclose(found["data"], expected["data"], rtol=rtol)


def test_same_status_for_an_unknown_model(pair):
    _, url, service = pair
    request = v2_request(ROWS, None)
    theirs = httpx.post(f"{url}/v2/models/nope/infer", json=request, timeout=30)
    ours = service.client.post("/v2/models/nope/infer", json=request)
    assert ours.status_code == theirs.status_code == 404
