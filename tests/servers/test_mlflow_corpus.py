"""The MLflow corpus served by real server processes: every kind of model users log (see
``mlflow_corpus``), asked in every Seldon request shape, answers exactly what ``pyfunc.predict``
answers on the same rows; params from ``meta.params``; bad values are 400s naming the column.

The corpus is served by one ``modelshelf serve`` process (``components/MLflowCorpus``: one
MLFlowServer per model in one process, so MLflow is imported once), and the mixed-dtype pipeline
also by ``seldon-core-microservice MLFlowServer`` itself, as a deployment runs it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from microservice import BIN, free_ports, running_command, running_microservice, seldon_parameters
from mlflow_corpus import answer_of, build_corpus, model_input, requests_for

pytestmark = pytest.mark.timeout(600)

COMPONENTS = Path(__file__).resolve().parent / "components"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("mlflow-corpus"))


@pytest.fixture(scope="module")
def expected(corpus):
    """``pyfunc.predict`` of each model on its rows (with its params), in process."""
    import mlflow

    found = {}
    for name, model in corpus.items():
        pyfunc = mlflow.pyfunc.load_model(str(model.path))
        found[name] = pyfunc.predict(model_input(model), params=model.params or None)
    return found


@pytest.fixture(scope="module")
def servers(corpus):
    """The corpus under ``modelshelf serve``, the mixed pipeline under seldon-core-microservice."""
    root = next(iter(corpus.values())).path.parent
    http, grpc, metrics = free_ports(3)
    command = [
        str(BIN / "modelshelf"), "serve", "MLflowCorpus",
        "--parameters", seldon_parameters(root=str(root)),
        "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics),
        "--grpc-workers", "0",
    ]  # fmt: skip
    single = seldon_parameters(model_uri=str(corpus["mixed_pipeline"].path))
    with (
        running_command(command, COMPONENTS, None, http, 0, metrics, ready_timeout=120) as many,
        running_microservice("MLFlowServer", single, ready_timeout=120) as one,
    ):
        yield {"corpus": many, "mixed_pipeline": one}


def ask(service, body: dict, model: str | None = None, params: dict | None = None):
    body = json.loads(json.dumps(body))
    meta = body.setdefault("meta", {})
    if model is not None:
        meta["tags"] = {"model": model}
    if params:
        meta["params"] = params
    return service.post("/api/v1.0/predictions", body)


def as_json(result: object) -> object:
    """``pyfunc.predict``'s result as the JSON a faithful server sends for it."""
    if isinstance(result, dict):
        return json.loads(json.dumps(result))
    if hasattr(result, "to_numpy"):
        result = result.to_numpy()
    return np.asarray(result).tolist()


CASES = [
    (name, shape)
    for name in [
        "sklearn_plain",
        "sklearn_signature",
        "mixed_pipeline",
        "tensor_float32",
        "xgb_booster",
        "xgb_classifier",
        "python_artifacts",
        "python_params",
        "python_list_output",
        "python_dict_output",
    ]
    for shape in ("ndarray", "tensor", "jsonData")
]


@pytest.mark.parametrize(("name", "shape"), CASES, ids=[f"{n}-{s}" for n, s in CASES])
def test_every_model_answers_what_pyfunc_answers(servers, corpus, expected, name, shape):
    model = corpus[name]
    if shape not in model.shapes:
        pytest.skip(f"{name} has text columns, which a Seldon {shape} cannot carry")
    response = ask(servers["corpus"], requests_for(model, shape), name, model.params)
    assert answer_of(response) == as_json(expected[name]), response.text


@pytest.mark.parametrize("shape", ["ndarray", "jsonData"])
def test_mixed_dtypes_under_seldon_core_microservice(servers, corpus, expected, shape):
    response = ask(servers["mixed_pipeline"], requests_for(corpus["mixed_pipeline"], shape))
    assert answer_of(response) == as_json(expected["mixed_pipeline"])


def test_the_issue_rows_are_read_by_the_signature(servers, corpus):
    """Zip codes that look like numbers stay text, JSON booleans in a row of text are booleans,
    a long column sent as 3 in a row of floats is a long."""
    import mlflow
    import pandas as pd

    pyfunc = mlflow.pyfunc.load_model(str(corpus["mixed_pipeline"].path))
    row = ["paris", "06000", 3, 55.5, True]
    names = ["city", "zip", "rooms", "area", "has_garage"]
    frame = pd.DataFrame([row], columns=names)
    for body in (
        {"data": {"names": names, "ndarray": [row]}},
        {"data": {"names": names, "ndarray": [["paris", "75001", 3, 55.5, True]]}},
        {"data": {"names": names[::-1], "ndarray": [row[::-1]]}},
    ):
        for service in (servers["mixed_pipeline"], servers["corpus"]):
            response = ask(service, body, "mixed_pipeline")
            got = answer_of(response)
            assert len(got) == 1 and got[0] in (0, 1), response.text
    assert answer_of(ask(servers["corpus"], {"data": {"names": names, "ndarray": [row]}},
                         "mixed_pipeline")) == pyfunc.predict(frame).tolist()  # fmt: skip


def test_params_change_the_answer_and_default_without(servers, corpus, expected):
    model = corpus["python_params"]
    service = servers["corpus"]
    body = requests_for(model, "jsonData")
    with_params = answer_of(ask(service, body, "python_params", {"threshold": 0.8}))
    defaults = answer_of(ask(service, body, "python_params"))
    assert [row[0] for row in with_params] == [0, 0, 0, 1]
    assert [row[0] for row in defaults] == [0, 1, 1, 1]
    assert [row[1] for row in defaults] == ["no", "yes", "yes", "yes"]


BAD_PARAMS = [
    ({"threshold": "high"}, "threshold"),
    ({"threshold": 0.8, "colour": "red"}, "unknown params ['colour']"),
    ({"label": 5}, "label"),
]


@pytest.mark.parametrize(("params", "message"), BAD_PARAMS, ids=["type", "unknown", "string"])
def test_bad_params_are_400s_naming_the_param(servers, corpus, params, message):
    body = requests_for(corpus["python_params"], "jsonData")
    response = ask(servers["corpus"], body, "python_params", params)
    assert response.status_code == 400, response.text
    assert message in response.json()["status"]["info"]


def test_params_to_a_model_without_a_params_schema_are_a_400(servers, corpus):
    body = requests_for(corpus["sklearn_signature"], "ndarray")
    response = ask(servers["corpus"], body, "sklearn_signature", {"threshold": 0.8})
    assert response.status_code == 400
    assert "takes no params" in response.json()["status"]["info"]


NAMES = ["city", "zip", "rooms", "area", "has_garage"]
BAD_ROWS = [
    # seldon-core hands a row mixing text and numbers over as text: 3.5 is read as "3.5"
    ("long", ["paris", "06000", 3.5, 55.5, True], "column 'rooms': cannot read"),
    ("double", ["paris", "06000", 3, "big", True], "column 'area': cannot read 'big' as double"),
    ("boolean", ["paris", "06000", 3, 55.5, "maybe"], "column 'has_garage': cannot read 'maybe'"),
]


@pytest.mark.parametrize(("case", "row", "message"), BAD_ROWS, ids=[b[0] for b in BAD_ROWS])
def test_a_value_of_the_wrong_type_is_a_400_naming_the_column(servers, case, row, message):
    for service in (servers["mixed_pipeline"], servers["corpus"]):
        for body in (
            {"data": {"names": NAMES, "ndarray": [row]}},
            {"jsonData": [dict(zip(NAMES, row, strict=True))]},
        ):
            response = ask(service, body, "mixed_pipeline")
            assert response.status_code == 400, response.text
            info = response.json()["status"]["info"]
            assert message in info and str(row[NAMES.index(CASE_COLUMN[case])]) in info, info


CASE_COLUMN = {"long": "rooms", "double": "area", "boolean": "has_garage"}


def test_a_wide_models_error_keeps_its_reason(servers, corpus):
    """30 columns, 12 records, one value "huge": the reason comes first, whole."""
    model = corpus["xgb_classifier"]
    records = json.loads(model.frame.to_json(orient="records"))
    assert len(records) == 12
    records[5]["worst area"] = "huge"
    response = ask(servers["corpus"], {"jsonData": records}, "xgb_classifier")
    assert response.status_code == 400
    info = response.json()["status"]["info"]
    assert info.startswith("column 'worst area': cannot read 'huge' as double"), info


def test_float32_tensor_metadata_says_fp32_and_json_numbers_are_accepted(servers, corpus):
    body = {"data": {"ndarray": [[5.1, 3.5, 1.4, 0.2]]}}
    assert ask(servers["corpus"], body, "tensor_float32").status_code == 200
    bad = {"data": {"ndarray": [["5.1", "x", "1.4", "0.2"]]}}
    response = ask(servers["corpus"], bad, "tensor_float32")
    assert response.status_code == 400
    assert "cannot read 'x' as float (32-bit)" in response.json()["status"]["info"]
