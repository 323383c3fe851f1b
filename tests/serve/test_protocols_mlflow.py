"""MLflow's scoring protocol on ``modelshelf serve`` beside a real ``mlflow models serve``.

The same MLflow model behind both (``--env-manager local``); every request goes to both and the
status, and for a 200 the predictions, must match. mlflow's own ``ScoringServerClient`` talks to
ours as to its server. ``mlflow models serve`` runs from the bench's mlflow venv (made here if
missing): our dev venv's newer fastapi breaks mlflow 3.2's scoring server.
"""

from __future__ import annotations

import contextlib
import json
import os

import httpx
import numpy as np
import pandas as pd
import pytest
from frontends import COMPONENTS, MODELSHELF, SELDON, Launch, running
from peer_servers import peer_bin

from microservice import SERVERS, free_port, http_answers, running_process, seldon_parameters
from models import IRIS_COLUMNS, IRIS_X, iris_frame_pipeline

ROWS = IRIS_X[::30]
FRAME = pd.DataFrame(ROWS, columns=IRIS_COLUMNS)
JSON = "application/json"


def body(payload: object) -> bytes:
    return json.dumps(payload).encode()


CASES = {
    "dataframe_split": (JSON, body({"dataframe_split": FRAME.to_dict(orient="split")})),
    "dataframe_records": (JSON, body({"dataframe_records": FRAME.to_dict(orient="records")})),
    "instances as records": (JSON, body({"instances": FRAME.to_dict(orient="records")})),
    "inputs as columns": (JSON, body({"inputs": FRAME.to_dict(orient="list")})),
    "split with params": (
        JSON,
        body({"dataframe_split": FRAME.to_dict(orient="split"), "params": {"unused": 1}}),
    ),
    "charset": (f"{JSON}; charset=utf-8", body({"dataframe_split": FRAME.to_dict("split")})),
    "csv": ("text/csv", FRAME.to_csv(index=False).encode()),
    "two format keys": (
        JSON,
        body({"inputs": FRAME.to_dict(orient="list"), "instances": ROWS.tolist()}),
    ),
    "no format key": (JSON, body({"rows": ROWS.tolist()})),
    "a list": (JSON, body(ROWS.tolist())),
    "not json": (JSON, b"{nope"),
    "text/plain": ("text/plain", b"1,2,3,4"),
    "latin-1": (f"{JSON}; charset=latin-1", body({"inputs": ROWS.tolist()})),
    "unknown content parameter": (f"{JSON}; format=pandas", body({"inputs": ROWS.tolist()})),
}


@pytest.fixture(scope="module")
def mlflow_model(tmp_path_factory):
    import mlflow.sklearn
    from mlflow.models import infer_signature

    folder = tmp_path_factory.mktemp("mlflow-scoring") / "iris"
    model = iris_frame_pipeline()
    mlflow.sklearn.save_model(
        model,
        folder,
        signature=infer_signature(FRAME, model.predict(FRAME)),
        pip_requirements=["scikit-learn", "numpy"],
    )
    return folder


@contextlib.contextmanager
def beside_mlflow(model_folder):
    """(``mlflow models serve`` URL, our server) on the same model folder."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    peer = peer_bin("mlflow")
    command = [
        str(peer / "mlflow"),
        "models",
        "serve",
        "-m",
        str(model_folder),
        "--env-manager",
        "local",
        "--host",
        "127.0.0.1",
        "-p",
        str(port),
        "-w",
        "1",
    ]
    # mlflow runs "uvicorn" from PATH: the peer venv's.
    env = {"PATH": f"{peer}{os.pathsep}{os.environ['PATH']}", "VIRTUAL_ENV": str(peer.parent)}
    ours = Launch(
        "MLFlowServer", SERVERS / "mlflowserver", seldon_parameters(model_uri=model_folder)
    )
    with (
        running_process(command, http_answers(f"{url}/ping", 200), env=env, timeout=180),
        running(ours, [MODELSHELF], timeout=180) as (service,),
    ):
        yield url, service


@pytest.fixture(scope="module")
def both(mlflow_model):
    with beside_mlflow(mlflow_model) as found:
        yield found


@pytest.mark.parametrize("case", list(CASES))
def test_same_status_and_predictions_as_mlflow_models_serve(both, case):
    url, service = both
    content_type, content = CASES[case]
    headers = {"content-type": content_type}
    theirs = httpx.post(f"{url}/invocations", content=content, headers=headers, timeout=60)
    ours = service.client.post("/invocations", content=content, headers=headers)
    assert ours.status_code == theirs.status_code, (ours.text, theirs.text)
    if theirs.status_code == 200:
        expected = theirs.json()["predictions"]
        found = ours.json()["predictions"]
        assert np.asarray(found).dtype == np.asarray(expected).dtype
        assert found == expected
    elif theirs.headers["content-type"].startswith(JSON):
        assert ours.json()["error_code"] == theirs.json()["error_code"] == "BAD_REQUEST"
        assert ours.json()["message"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_literals_reach_the_model_as_mlflow_reads_them(both, literal):
    """mlflow's scoring server reads a body with Python's json, which takes NaN and ±Infinity
    (what ``json.dumps`` writes for a frame's missing values): ours refused such a body as
    not JSON; now both hand the values to the model, whose refusal is the answer."""
    url, service = both
    split = FRAME.to_dict(orient="split")
    split["data"][0][1] = "LITERAL"
    content = body({"dataframe_split": split}).replace(b'"LITERAL"', literal.encode())
    headers = {"content-type": JSON}
    theirs = httpx.post(f"{url}/invocations", content=content, headers=headers, timeout=60)
    ours = service.client.post("/invocations", content=content, headers=headers)
    assert ours.status_code == theirs.status_code == 400, (ours.text, theirs.text)
    words = "Input X contains NaN" if literal == "NaN" else "Input X contains infinity"
    assert words in theirs.json()["stack_trace"], theirs.text  # its message names nothing
    assert words in ours.json()["message"], ours.text


def test_mlflows_own_client_and_probes(both):
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient

    url, service = both
    client = ScoringServerClient("127.0.0.1", service.http_port)
    client.ping()
    predictions = client.invoke(FRAME).get_predictions()
    theirs = ScoringServerClient("127.0.0.1", int(url.rsplit(":", 1)[1])).invoke(FRAME)
    assert predictions.equals(theirs.get_predictions())
    assert client.get_version() == httpx.get(f"{url}/version").text
    for path in ("/ping", "/health"):
        assert service.client.get(path).status_code == httpx.get(f"{url}{path}").status_code


def test_params_reach_a_predict_that_takes_them():
    with running(Launch("ParamsModel", COMPONENTS), [MODELSHELF]) as (service,):
        answer = service.client.post(
            "/invocations", json={"inputs": [[1.0, 2.0]], "params": {"factor": 3}}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"predictions": [[3.0, 6.0]]}
        v2 = {
            "inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 2], "data": [1, 2]}],
            "parameters": {"factor": 2},
        }
        answer = service.client.post("/v2/models/ParamsModel/infer", json=v2)
        assert answer.json()["outputs"][0]["data"] == [2.0, 4.0]


def test_v2_named_inputs_reach_the_signatures_columns(both):
    """The same model over V2: one input per signature column (the pd codec), in metadata and
    in a request, answered as `mlflow models serve` answers the same rows."""
    url, service = both
    (name,) = service.client.get("/v1/models").json()["models"]
    metadata = service.client.get(f"/v2/models/{name}").json()
    assert [(i["name"], i["datatype"]) for i in metadata["inputs"]] == [
        (name, "FP64") for name in IRIS_COLUMNS
    ]
    inputs = [
        {"name": name, "datatype": "FP64", "shape": [len(FRAME)], "data": FRAME[name].tolist()}
        for name in reversed(IRIS_COLUMNS)
    ]
    answer = service.client.post(f"/v2/models/{name}/infer", json={"inputs": inputs})
    assert answer.status_code == 200, answer.text
    (output,) = answer.json()["outputs"]
    theirs = httpx.post(
        f"{url}/invocations", json={"dataframe_split": FRAME.to_dict(orient="split")}
    ).json()["predictions"]
    assert output["data"] == theirs


def test_kserve_v1_objects_reach_the_signatures_columns_by_name(both):
    """KServe V1 objects, keys in another order than the signature's, are matched by name (as
    Seldon's jsonData): the answer is the one `mlflow models serve` gives the same rows."""
    url, service = both
    (name,) = service.client.get("/v1/models").json()["models"]
    records = FRAME[list(reversed(IRIS_COLUMNS))].to_dict(orient="records")
    answer = service.client.post(f"/v1/models/{name}:predict", json={"instances": records})
    assert answer.status_code == 200, answer.text
    theirs = httpx.post(
        f"{url}/invocations", json={"dataframe_split": FRAME.to_dict(orient="split")}
    ).json()["predictions"]
    assert answer.json()["predictions"] == theirs


def test_v2_an_input_the_signature_does_not_name_is_refused(both):
    """One V2 input whose name is none of the signature's is a 400 naming it and the
    signature's names (it was read by position, a guess); the server goes on serving."""
    _, service = both
    (name,) = service.client.get("/v1/models").json()["models"]
    unknown = {"name": "input-0", "datatype": "FP64", "shape": list(ROWS.shape)}
    answer = service.client.post(
        f"/v2/models/{name}/infer", json={"inputs": [{**unknown, "data": ROWS.ravel().tolist()}]}
    )
    assert answer.status_code == 400, answer.text
    expected = ", ".join(repr(column) for column in IRIS_COLUMNS)
    assert answer.json()["error"] == (
        f"input 'input-0' is not an input of this model: its signature names {expected} "
        "(one input each, as in the model's metadata)"
    )
    inputs = [
        {"name": column, "datatype": "FP64", "shape": [len(FRAME)], "data": FRAME[column].tolist()}
        for column in IRIS_COLUMNS
    ]
    answer = service.client.post(f"/v2/models/{name}/infer", json={"inputs": inputs})
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (
            {"inputs": [[5.1, 3.5], [1.4]]},
            "inputs[1] has 1 values, inputs[0] has 2; expected rows of equal length",
        ),
        (
            {"instances": [[5.1, 3.5], [1.4]]},
            "instances[1] has 1 values, instances[0] has 2; expected rows of equal length",
        ),
        ({"inputs": [5.1, 3.5, 1.4, 0.2]}, "expected rows: the input is a flat list of 4 values"),
        (
            {"dataframe_split": {"columns": ["a"], "data": [[1.0]]}},
            "the column names do not match the model's signature",
        ),
        (  # pandas failed on these deep inside: a 500 ("'int' object has no attribute 'keys'")
            {"inputs": [{"sepal_length": 5.1}, 5]},
            "inputs must be all objects (records) or all rows, not a mix",
        ),
        (
            {"dataframe_records": [{"sepal_length": 5.1}, [1.0]]},
            "dataframe_records must be all objects (records) or all rows, not a mix",
        ),
        (
            {"instances": [{"sepal_length": 5.1}, "x"]},
            "instances must be all objects (records) or all rows, not a mix",
        ),
    ],
    ids=[
        "ragged inputs",
        "ragged instances",
        "flat inputs",
        "unknown column",
        "mixed inputs",
        "mixed records",
        "mixed instances",
    ],
)
def test_invocations_errors_use_mlflows_words(both, payload, words):
    """/invocations is MLflow's protocol: its 400s name its fields (inputs, instances,
    columns), never Seldon's (ndarray, jsonData); `mlflow models serve` refuses them too."""
    url, service = both
    theirs = httpx.post(f"{url}/invocations", json=payload, timeout=60)
    ours = service.client.post("/invocations", json=payload)
    assert ours.status_code == theirs.status_code == 400, (ours.text, theirs.text)
    message = ours.json()["message"]
    assert words in message, message
    assert not any(word in message for word in ("ndarray", "jsonData", "data.")), message


# ------------------------------------------------------------- the signature's column types

HOMES_COLUMNS = ["city", "zip", "rooms", "area", "has_garage"]


@pytest.fixture(scope="module")
def typed_columns(tmp_path_factory):
    """A pipeline over string, long, double and boolean columns (signature inferred from its
    frame), behind ``mlflow models serve`` and ours."""
    import mlflow.sklearn
    from mlflow.models import infer_signature

    from mlflow_corpus import HOMES, homes_pipeline

    model = homes_pipeline()
    folder = tmp_path_factory.mktemp("mlflow-typed") / "homes"
    mlflow.sklearn.save_model(
        model,
        folder,
        signature=infer_signature(HOMES, model.predict(HOMES)),
        pip_requirements=["scikit-learn", "numpy", "pandas"],
    )
    with beside_mlflow(folder) as found:
        yield found


def split(*rows: list) -> dict:
    return {"dataframe_split": {"columns": HOMES_COLUMNS, "data": [list(r) for r in rows]}}


def test_the_signatures_types_are_enforced_as_mlflow_models_serve_enforces_them(typed_columns):
    """``mlflow models serve`` casts a JSON request to the signature's types before its schema
    check: a number for a string column becomes its text (200), text that is no number for a
    double column is a 400. Ours answers the same on /invocations, and the same rule holds on
    the Seldon protocol and V2 (the trial's "a number for a string column answers 200" is
    what MLflow's own server does)."""
    url, service = typed_columns
    as_text = ["paris", "06000", 3, 55.5, True]
    as_number = ["paris", 6000, 3, 55.5, True]
    expected = httpx.post(f"{url}/invocations", json=split(as_text), timeout=60).json()
    theirs = httpx.post(f"{url}/invocations", json=split(as_number), timeout=60)
    ours = service.client.post("/invocations", json=split(as_number))
    assert theirs.status_code == ours.status_code == 200, (theirs.text, ours.text)
    assert ours.json() == theirs.json()
    assert service.client.post("/invocations", json=split(as_text)).json() == expected
    seldon = {"data": {"names": HOMES_COLUMNS, "ndarray": [as_number]}}
    answer = service.client.post("/api/v1.0/predictions", json=seldon)
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"]["ndarray"] == expected["predictions"]
    datatypes = {"city": "BYTES", "zip": "INT64", "rooms": "INT64", "area": "FP64"}
    inputs = [
        {"name": name, "datatype": datatypes.get(name, "BOOL"), "shape": [1], "data": [value]}
        for name, value in zip(HOMES_COLUMNS, as_number, strict=True)
    ]
    (name,) = service.client.get("/v1/models").json()["models"]
    answer = service.client.post(f"/v2/models/{name}/infer", json={"inputs": inputs})
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"][0]["data"] == expected["predictions"]
    not_a_double = ["paris", "06000", 3, "big", True]
    theirs = httpx.post(f"{url}/invocations", json=split(not_a_double), timeout=60)
    ours = service.client.post("/invocations", json=split(not_a_double))
    assert theirs.status_code == ours.status_code == 400, (theirs.text, ours.text)
    assert ours.json()["message"] == "column 'area': cannot read 'big' as double"
    seldon = {"data": {"names": HOMES_COLUMNS, "ndarray": [not_a_double]}}
    answer = service.client.post("/api/v1.0/predictions", json=seldon)
    assert answer.status_code == 400
    assert answer.json()["status"]["info"] == "column 'area': cannot read 'big' as double"


@pytest.mark.parametrize(
    ("csv_row", "row"),
    [
        ("true,06000,3,55.5,true", ["true", "06000", 3, 55.5, True]),
        (",06000,3,55.5,false", [None, "06000", 3, 55.5, False]),
    ],
    ids=["true", "empty"],
)
def test_csv_reads_the_signatures_string_columns_as_text(typed_columns, csv_row, row):
    """A CSV city "true" and zip "06000" are text by the signature (pandas alone made them a
    boolean and the number 6000), an empty city cell a missing value, has_garage "true" a
    boolean: answered as the same JSON row, and as ``mlflow models serve`` answers the CSV
    (the signature's cast made the answers equal before the CSV kept its text columns as text:
    this pins the parity, the boolean column's reading included)."""
    url, service = typed_columns
    csv = ",".join(HOMES_COLUMNS) + f"\n{csv_row}\n"
    headers = {"content-type": "text/csv"}
    theirs = httpx.post(f"{url}/invocations", content=csv, headers=headers, timeout=60)
    ours = service.client.post("/invocations", content=csv, headers=headers)
    as_json = service.client.post("/invocations", json=split(row))
    assert theirs.status_code == ours.status_code == as_json.status_code == 200, ours.text
    assert ours.json() == theirs.json() == as_json.json()


# ------------------------------------------- no signature: the columns the model was fitted on

#: Rows of text and number columns; zip codes are text ("06000" is no number 6000).
SHOPS = pd.DataFrame(
    {
        "city": ["paris", "lyon", "paris", "nice", "lyon", "nice", "paris", "lyon"],
        "zip": ["75001", "69001", "06000", "06000", "69002", "06100", "75002", "69001"],
        "rooms": np.array([3, 2, 4, 1, 5, 2, 3, 4], dtype=np.int64),
        "area": [55.5, 40.0, 80.25, 20.0, 120.0, 35.5, 60.0, 90.0],
    }
)
SHOPS_COLUMNS = list(SHOPS.columns)


def shops_pipeline():
    """A pipeline whose ColumnTransformer selects its columns by name, fitted on SHOPS."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    return make_pipeline(
        ColumnTransformer(
            [
                ("text", OneHotEncoder(handle_unknown="ignore"), ["city", "zip"]),
                ("numbers", StandardScaler(), ["rooms", "area"]),
            ]
        ),
        LogisticRegression(max_iter=1000),
    ).fit(SHOPS, [1, 0, 1, 0, 1, 0, 0, 1])


@pytest.fixture(scope="module")
def sigless_folder(tmp_path_factory):
    """``shops_pipeline`` saved without a signature (``predict_proba``: answers that show every
    column)."""
    import mlflow.sklearn

    folder = tmp_path_factory.mktemp("mlflow-sigless") / "shops"
    mlflow.sklearn.save_model(
        shops_pipeline(),
        folder,
        pip_requirements=["scikit-learn", "numpy", "pandas"],
        pyfunc_predict_fn="predict_proba",
    )
    return folder


@pytest.fixture(scope="module")
def sigless(sigless_folder):
    """That model served by ``modelshelf serve`` and by ``seldon-core-microservice``, and
    MLflow's in-process pyfunc answers to the frame."""
    import mlflow.pyfunc

    expected = mlflow.pyfunc.load_model(str(sigless_folder)).predict(SHOPS).tolist()
    parameters = seldon_parameters(model_uri=sigless_folder)
    launch = Launch("MLFlowServer", SERVERS / "mlflowserver", parameters)
    with running(launch, [MODELSHELF, SELDON], timeout=180) as services:
        yield services, expected


def seldon_rows(frame: pd.DataFrame, names: list[str] | None = None) -> dict:
    rows = json.loads(frame.to_json(orient="values"))
    return {"data": {"ndarray": rows} if names is None else {"names": names, "ndarray": rows}}


def seldon_answer(body: dict) -> list:
    """A Seldon response's rows, sent as ``ndarray`` or (to ``jsonData``) as ``tensor``."""
    data = body["data"]
    if "ndarray" in data:
        return data["ndarray"]
    return np.reshape(data["tensor"]["values"], data["tensor"]["shape"]).tolist()


def test_a_model_without_signature_gets_its_fitted_columns_over_seldon(sigless):
    """Seldon ``names`` + ``ndarray`` (in another order than the fit's), rows without names,
    and ``jsonData`` records reach the pipeline as a DataFrame in its fitted columns, on both
    front ends, with MLflow's pyfunc answers to the frame (the names were a 400: "Specifying
    the columns using strings is only supported for dataframes")."""
    services, expected = sigless
    reordered = list(reversed(SHOPS_COLUMNS))
    bodies = {
        "names": seldon_rows(SHOPS[reordered], reordered),
        "no names": seldon_rows(SHOPS),
        "jsonData": {"jsonData": json.loads(SHOPS.to_json(orient="records"))},
    }
    for service in services:
        for case, payload in bodies.items():
            answer = service.client.post("/api/v1.0/predictions", json=payload)
            assert answer.status_code == 200, (case, answer.text)
            assert seldon_answer(answer.json()) == expected, case


def test_a_model_without_signature_gets_its_fitted_columns_over_v2_and_kserve_v1(sigless):
    """V2: one input per column (in another order than the fit's), or one BYTES tensor of
    rows; KServe V1 instances as records or rows: MLflow's pyfunc answers to the frame."""
    (service, _), expected = sigless
    (name,) = service.client.get("/v1/models").json()["models"]
    datatypes = {"city": "BYTES", "zip": "BYTES", "rooms": "INT64", "area": "FP64"}
    by_column = [
        {"name": c, "datatype": datatypes[c], "shape": [len(SHOPS)], "data": SHOPS[c].tolist()}
        for c in reversed(SHOPS_COLUMNS)
    ]
    rows = json.loads(SHOPS.to_json(orient="values"))
    as_text = [str(value) for row in rows for value in row]
    one_tensor = [
        {"name": "rows", "datatype": "BYTES", "shape": list(SHOPS.shape), "data": as_text}
    ]
    for case, inputs in {"by column": by_column, "one tensor": one_tensor}.items():
        answer = service.client.post(f"/v2/models/{name}/infer", json={"inputs": inputs})
        assert answer.status_code == 200, (case, answer.text)
        (output,) = answer.json()["outputs"]
        assert output["shape"] == [len(SHOPS), 2], case
        assert np.reshape(output["data"], output["shape"]).tolist() == expected, case
    records = json.loads(SHOPS[list(reversed(SHOPS_COLUMNS))].to_json(orient="records"))
    for case, instances in {"records": records, "rows": rows}.items():
        answer = service.client.post(f"/v1/models/{name}:predict", json={"instances": instances})
        assert answer.status_code == 200, (case, answer.text)
        assert answer.json()["predictions"] == expected, case


def test_a_model_without_signature_gets_its_fitted_columns_over_invocations(sigless):
    """``/invocations``: MLflow's own client (``dataframe_split``), records and a CSV body,
    whose zip codes stay text as the encoder learnt them: MLflow's pyfunc answers."""
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient

    (service, _), expected = sigless
    client = ScoringServerClient("127.0.0.1", service.http_port)
    assert client.invoke(SHOPS).get_predictions().to_numpy().tolist() == expected
    records = {"dataframe_records": json.loads(SHOPS.to_json(orient="records"))}
    answer = service.client.post("/invocations", json=records)
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == expected
    csv = SHOPS.to_csv(index=False).encode()
    answer = service.client.post("/invocations", content=csv, headers={"content-type": "text/csv"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == expected


def test_a_model_without_signature_refuses_names_it_was_not_fitted_on(sigless):
    """Names that are not the fitted columns are a 400 naming the missing and the unexpected
    ones, on every protocol (it was the model's own "Specifying the columns using strings"
    refusal, or a guess by position); the server goes on serving."""
    services, expected = sigless
    renamed = ["city", "postcode", "rooms", "area"]
    message = (
        f"the column names do not match the columns the model was fitted on {SHOPS_COLUMNS}: "
        "missing ['zip'], unexpected ['postcode']"
    )
    for service in services:
        answer = service.client.post("/api/v1.0/predictions", json=seldon_rows(SHOPS, renamed))
        assert answer.status_code == 400, answer.text
        assert answer.json()["status"]["info"] == message
    service = services[0]
    (name,) = service.client.get("/v1/models").json()["models"]
    inputs = [
        {
            "name": new,
            "datatype": "BYTES" if new in ("city", "postcode") else "FP64",
            "shape": [len(SHOPS)],
            "data": SHOPS[old].tolist(),
        }
        for new, old in zip(renamed, SHOPS_COLUMNS, strict=True)
    ]
    answer = service.client.post(f"/v2/models/{name}/infer", json={"inputs": inputs})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == message
    split = {
        "dataframe_split": {"columns": renamed, "data": json.loads(SHOPS.to_json(orient="values"))}
    }
    answer = service.client.post("/invocations", json=split)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error_code"] == "BAD_REQUEST"
    assert answer.json()["message"] == message
    answer = service.client.post("/api/v1.0/predictions", json=seldon_rows(SHOPS, SHOPS_COLUMNS))
    assert seldon_answer(answer.json()) == expected


def test_a_model_without_signature_answers_invocations_as_mlflow_models_serve(sigless_folder):
    """``mlflow models serve`` gives the model a DataFrame: the same answers on our
    ``/invocations`` (ours were 400s: the model was handed an array)."""
    frame = {
        "dataframe_split": json.loads(SHOPS.to_json(orient="split", index=False)),
        "dataframe_records": json.loads(SHOPS.to_json(orient="records")),
    }
    with beside_mlflow(sigless_folder) as (url, service):
        for case, payload in frame.items():
            theirs = httpx.post(f"{url}/invocations", json={case: payload}, timeout=60)
            ours = service.client.post("/invocations", json={case: payload})
            assert theirs.status_code == ours.status_code == 200, (case, ours.text, theirs.text)
            assert ours.json() == theirs.json(), case


@pytest.fixture(scope="module")
def params_frame_model(tmp_path_factory):
    """A PythonModel with a params schema that answers a DataFrame (``mlflow_corpus``'s
    ``Thresholded``)."""
    import mlflow.pyfunc
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types import ParamSchema, ParamSpec

    from mlflow_corpus import PYTHON_MODELS, written_module

    root = tmp_path_factory.mktemp("mlflow-params-frame")
    corpus_models = written_module(root, "corpus_models", PYTHON_MODELS)
    scores = pd.DataFrame({"score": [0.1, 0.55, 0.7, 0.95]})
    params = ParamSchema(
        [ParamSpec("threshold", "double", 0.5), ParamSpec("label", "string", "yes")]
    )
    folder = root / "thresholded"
    mlflow.pyfunc.save_model(
        folder,
        python_model=corpus_models.Thresholded(),
        code_paths=[str(root / "corpus_models.py")],
        signature=ModelSignature(inputs=infer_signature(scores).inputs, params=params),
        pip_requirements=["numpy", "pandas"],
    )
    return folder


def test_a_dataframe_answer_with_params_is_records_as_mlflow_models_serve_gives_it(
    params_frame_model,
):
    """With ``params``, ours answered the model's DataFrame as rows of values
    (``[[1, "high"], …]``: the Seldon path's array), without them as records; `mlflow models
    serve` gives records either way."""
    records = [{"score": 0.1}, {"score": 0.9}]
    payloads = [
        {"dataframe_records": records},
        {"dataframe_records": records, "params": {"threshold": 0.05, "label": "high"}},
        {"dataframe_split": {"columns": ["score"], "data": [[0.1], [0.9]]}, "params": {}},
        {"inputs": {"score": [0.1, 0.9]}, "params": {"label": "big"}},
    ]
    with beside_mlflow(params_frame_model) as (url, service):
        for payload in payloads:
            theirs = httpx.post(f"{url}/invocations", json=payload, timeout=60)
            ours = service.client.post("/invocations", json=payload)
            assert theirs.status_code == ours.status_code == 200, (payload, ours.text, theirs.text)
            assert ours.json() == theirs.json(), payload
        assert theirs.json() == {
            "predictions": [{"above": 0, "label": "no"}, {"above": 1, "label": "big"}]
        }


def test_an_xgboost_flavor_model_loads_without_the_xgb_extension_warning(tmp_path):
    """MLflow saves xgboost-flavor models as ``model.xgb`` (its default ``model_format``), whose
    extension XGBoost warned about at every start although it reads the format from the
    content; the load's other warnings (here an unmet requirement) are still logged."""
    import mlflow.xgboost
    import xgboost

    model = xgboost.XGBClassifier(n_estimators=3, max_depth=2, n_jobs=1)
    model.fit(IRIS_X, np.arange(len(IRIS_X)) % 3)
    folder = tmp_path / "xgb"
    mlflow.xgboost.save_model(model, folder, pip_requirements=["xgboost", "no-such-wheel-xyz"])
    launch = Launch("MLFlowServer", SERVERS / "mlflowserver", seldon_parameters(model_uri=folder))
    with running(launch, [MODELSHELF], timeout=180) as (service,):
        answer = service.post("/api/v1.0/predictions", {"data": {"ndarray": IRIS_X[:2].tolist()}})
        assert answer.status_code == 200, answer.text
        assert answer.json()["data"]["ndarray"] == model.predict(IRIS_X[:2]).tolist()
        log = service.log()
        assert "no-such-wheel-xyz" in log, log[-3000:]
        assert "Unknown file format" not in log, log[-3000:]
