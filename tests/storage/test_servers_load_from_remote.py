"""A server whose ``model_uri`` is remote downloads it itself and serves it (REST and gRPC)."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading

import joblib
import numpy as np
from google.protobuf import json_format
from seldon_core.seldon_client import SeldonClient

from microservice import running_microservice, seldon_parameters
from models import assert_same_predictions, rows


def test_sklearn_server_loads_a_model_from_s3(s3_server, sklearn_models, tmp_path):
    uri = s3_server.upload_folder(sklearn_models["iris"], "remote-models", "sklearn/iris")
    model = joblib.load(sklearn_models["iris"] / "model.joblib")
    cache = tmp_path / "cache"
    env = {**s3_server.env, "MODELSHELF_MODEL_CACHE": str(cache), "AWS_EC2_METADATA_DISABLED": "1"}
    X = rows(2)
    with running_microservice("SKLearnServer", seldon_parameters(model_uri=uri), env=env) as svc:
        body = svc.post("/api/v1.0/predictions", {"data": {"ndarray": X.tolist()}}).json()
        assert_same_predictions(body["data"]["ndarray"], model.predict_proba(X))
        assert body["data"]["names"] == ["setosa", "versicolor", "virginica"]
        assert svc.get("/metadata").json()["name"] == "iris"  # not the cache folder's name
        client = SeldonClient(microservice_endpoint=f"127.0.0.1:{svc.grpc_port}")
        result = client.microservice(data=X, method="predict", transport="grpc")
        assert result.success, result.msg
        values = json_format.MessageToDict(result.response)["data"]["tensor"]["values"]
        assert_same_predictions(np.array(values).reshape(2, 3), model.predict_proba(X))
        log = svc.log()
    # One shared download in the cache (parent and gRPC child both asked for it).
    folders = [p for p in cache.iterdir() if p.is_dir()]
    assert len(folders) == 1 and (folders[0] / "model.joblib").is_file()
    assert log.count("downloaded s3://remote-models/sklearn/iris") == 1, log
    assert s3_server.env["AWS_SECRET_ACCESS_KEY"] not in log


def test_a_single_file_url_names_the_model_by_its_folder(sklearn_models, tmp_path):
    """``https://host/iris/model.joblib`` is served as ``iris``, as the local folder holding
    that file would be (it was the cache folder's ``model.joblib-<hash>``)."""
    site = tmp_path / "site"
    (site / "iris").mkdir(parents=True)
    shutil.copy(sklearn_models["iris"] / "model.joblib", site / "iris" / "model.joblib")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{server.server_address[1]}/iris/model.joblib"
    env = {"MODELSHELF_MODEL_CACHE": str(tmp_path / "cache")}
    parameters = seldon_parameters(model_uri=uri)
    try:
        with running_microservice("SKLearnServer", parameters, env=env) as svc:
            assert svc.get("/metadata").json()["name"] == "iris"
            body = svc.post("/api/v1.0/predictions", {"data": {"ndarray": rows(1).tolist()}})
            assert body.status_code == 200, body.text
    finally:
        server.shutdown()
        server.server_close()
