"""V2 model metadata says what the model takes and answers, on ``modelshelf serve``.

Models whose outputs their attributes do not describe (KMeans' INT32 clusters, IsolationForest's
INT64 -1 / 1, an SVC's one label per row) and models fitted on a DataFrame (one input per
column; a LightGBM categorical column is text). The metadata is read with tritonclient over HTTP
and gRPC; then a request built from the metadata alone asks for every output it lists, and each
answer's datatype and shape must be the metadata's (``-1``: the request's rows).
"""

from __future__ import annotations

import logging

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from frontends import MODELSHELF, Launch, running
from sklearn.cluster import KMeans
from sklearn.ensemble import IsolationForest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import PowerTransformer

from microservice import SERVERS, seldon_parameters
from models import IRIS_COLUMNS, IRIS_X, IRIS_Y, iris_frame_pipeline, save, svc_without_proba

IRIS_TABLE = pd.DataFrame(IRIS_X[::15], columns=IRIS_COLUMNS)  # 10 rows, every class
RNG = np.random.default_rng(7)
#: A table with a categorical text column, for LightGBM's pandas categories.
COLORED = pd.DataFrame(
    {
        "width": RNG.standard_normal(80),
        "color": pd.Categorical(RNG.choice(["red", "green", "blue"], 80)),
        "height": RNG.standard_normal(80),
    }
)
COLORED_LABELS = (COLORED["width"] + (COLORED["color"] == "red") > 0.5).astype(int)


def colored_classifier() -> lgb.LGBMClassifier:
    return lgb.LGBMClassifier(n_estimators=4, min_child_samples=5, verbose=-1).fit(
        COLORED, COLORED_LABELS
    )


def iris_columns() -> list[dict[str, object]]:
    return [{"name": c, "datatype": "FP64", "shape": [-1, 1]} for c in IRIS_COLUMNS]


#: name -> (server, model, the table requests are built from, the inputs and some outputs the
#: metadata must list: what the model takes and answers).
CASES = {
    "kmeans": (
        "SKLearnServer",
        lambda: KMeans(3, n_init=3, random_state=0).fit(IRIS_X),
        IRIS_TABLE,
        [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}],
        {"predict": ("INT32", [-1]), "transform": ("FP64", [-1, 3])},
    ),
    "isolation": (
        "SKLearnServer",
        lambda: IsolationForest(n_estimators=10, random_state=0).fit(IRIS_X),
        IRIS_TABLE,
        [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}],
        {"predict": ("INT64", [-1]), "decision_function": ("FP64", [-1])},
    ),
    "svc": (
        "SKLearnServer",
        svc_without_proba,
        IRIS_TABLE,
        [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}],
        {"predict": ("BYTES", [-1]), "decision_function": ("FP64", [-1, 3])},
    ),
    "frame": (
        "SKLearnServer",
        iris_frame_pipeline,
        IRIS_TABLE,
        iris_columns(),
        {"predict_proba": ("FP64", [-1, 3]), "predict": ("BYTES", [-1])},
    ),
    "colored": (
        "LightGBMServer",
        colored_classifier,
        COLORED.head(12),
        [
            {"name": "width", "datatype": "FP64", "shape": [-1, 1]},
            {"name": "color", "datatype": "BYTES", "shape": [-1, 1]},
            {"name": "height", "datatype": "FP64", "shape": [-1, 1]},
        ],
        {"predict": ("INT64", [-1]), "predict_proba": ("FP64", [-1, 2])},
    ),
}


@pytest.fixture(scope="module", params=list(CASES))
def served(request, tmp_path_factory):
    """``modelshelf serve`` (REST and gRPC) on one case's model."""
    server, build, table, inputs, outputs = CASES[request.param]
    folder = save(build(), tmp_path_factory.mktemp(request.param) / request.param)
    launch = Launch(
        server,
        SERVERS / server.lower(),
        seldon_parameters(model_uri=str(folder)),
        grpc=True,
        extra_args=("--model-name", request.param),
    )
    with running(launch, [MODELSHELF]) as (service,):
        yield request.param, service, table, inputs, outputs


def _column(table: pd.DataFrame, spec: dict) -> np.ndarray:
    """The table's data for one metadata input: its column, or every column as rows."""
    if spec["name"] not in table.columns:
        return table.to_numpy(dtype=np.float64)
    values = table[spec["name"]].to_numpy().reshape(-1, 1)
    return values.astype(object if spec["datatype"] == "BYTES" else np.float64)


def _expected_shape(shape: list[int], rows: int) -> list[int]:
    return [rows if d == -1 else d for d in shape]


def test_metadata_over_http_and_grpc_is_what_the_answers_are(served):
    name, service, table, inputs, outputs = served
    http = triton_http.InferenceServerClient(f"127.0.0.1:{service.http_port}")
    grpc = triton_grpc.InferenceServerClient(f"127.0.0.1:{service.grpc_port}")
    try:
        metadata = http.get_model_metadata(name)
        by_grpc = grpc.get_model_metadata(name)
        assert metadata["inputs"] == inputs
        declared = {o["name"]: (o["datatype"], o["shape"]) for o in metadata["outputs"]}
        for output, expected in outputs.items():
            assert declared[output] == expected, output
        assert [(i.name, i.datatype, list(i.shape)) for i in by_grpc.inputs] == [
            (i["name"], i["datatype"], i["shape"]) for i in inputs
        ]
        assert {o.name: (o.datatype, list(o.shape)) for o in by_grpc.outputs} == declared

        # A request built from the metadata alone, asking for every output it lists.
        rows = len(table)
        asked = [o for o in declared if o != "class_names"]
        http_inputs, grpc_inputs = [], []
        for spec in metadata["inputs"]:
            data = _column(table, spec)
            for module, found in ((triton_http, http_inputs), (triton_grpc, grpc_inputs)):
                tensor = module.InferInput(spec["name"], list(data.shape), spec["datatype"])
                tensor.set_data_from_numpy(data)
                found.append(tensor)
        by_http = http.infer(
            name, http_inputs, outputs=[triton_http.InferRequestedOutput(o) for o in asked]
        )
        by_rpc = grpc.infer(
            name, grpc_inputs, outputs=[triton_grpc.InferRequestedOutput(o) for o in asked]
        )
        for output in asked:
            datatype, shape = declared[output]
            got = by_http.get_output(output)
            assert (got["datatype"], got["shape"]) == (datatype, _expected_shape(shape, rows))
            got = by_rpc.get_output(output)
            assert (got.datatype, list(got.shape)) == (datatype, _expected_shape(shape, rows))
    finally:
        http.close()
        grpc.close()


def test_a_probe_that_fails_keeps_the_description_and_the_model_loads(tmp_path, caplog):
    """A Box-Cox pipeline refuses the probe row's negative numbers: the model loads and serves,
    its outputs are described as its attributes say, and the DEBUG log says why."""
    from modelshelf.frameworks.sklearn import SKLearnServer
    from modelshelf.serve.inference import InferenceCore

    model = make_pipeline(PowerTransformer(method="box-cox"), LogisticRegression())
    folder = save(model.fit(IRIS_X, IRIS_Y), tmp_path / "positive")
    with caplog.at_level(logging.DEBUG, logger="modelshelf.serve.output_probe"):
        server = SKLearnServer(str(folder))
        server.load()
    assert server.ready and server.probed_outputs == {}
    assert "probe of predict_proba failed: ValueError" in caplog.text
    core = InferenceCore(server)
    outputs = {o["name"]: (o["datatype"], o["shape"]) for o in core.model_metadata()["outputs"]}
    assert outputs["predict_proba"] == ("FP64", [-1, 3])
    assert outputs["predict"] == ("BYTES", [-1])
    assert core.call(IRIS_X[:2]).data.shape == (2, 3)
