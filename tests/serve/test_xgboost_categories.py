"""XGBoostServer on a model trained with pandas categories (``enable_categorical``): category
values by name on every protocol that carries text rows, through real servers and clients.

Each answer is compared with XGBoost's own ``predict_proba`` here on a DataFrame whose column
is a ``Categorical`` of the categories the model was trained with: an unseen category is a
missing value there (no code), so it must be one in the server too, never another category's
code. A model without categories keeps reading numbers as before.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
import xgboost as xgb
from frontends import MODELSHELF, SELDON, Launch, running

import xgboost_models as xm
from microservice import SERVERS, seldon_parameters

COLORS = ["red", "green", "blue"]
#: Rows as a client sends them: known categories, one unseen ("purple"), one missing.
ROWS = [["red", 0.1], ["purple", 0.1], ["blue", 0.9], ["green", 0.5], [None, 0.3]]


def trained_classifier() -> tuple[xgb.XGBClassifier, pd.DataFrame]:
    """Positive for red or a large size; missing colours mostly negative, so a missing value
    and each category lead to different answers."""
    rng = np.random.default_rng(0)
    n = 600
    color = rng.choice([*COLORS, None], n, p=[0.3, 0.3, 0.2, 0.2])
    size = rng.random(n)
    y = ((color == "red") | (size > 0.8)).astype(int)
    frame = pd.DataFrame({"color": pd.Categorical(color, categories=COLORS), "size": size})
    model = xgb.XGBClassifier(
        enable_categorical=True, tree_method="hist", n_estimators=10, max_depth=3, nthread=1
    )
    return model.fit(frame, y), frame


def expected(model: xgb.XGBClassifier, rows: list[list[object]]) -> np.ndarray:
    """XGBoost's own answer on a correctly categorised frame (the trained categories)."""
    frame = pd.DataFrame(
        {
            "color": pd.Categorical([r[0] for r in rows], categories=COLORS),
            "size": [float(r[1]) for r in rows],  # type: ignore[arg-type]
        }
    )
    return model.predict_proba(frame)


def launch(folder) -> Launch:
    parameters = seldon_parameters(model_uri=folder, method="predict_proba")
    return Launch("XGBoostServer", SERVERS / "xgboostserver", parameters)


@pytest.fixture(scope="module", params=["model.json", "model.joblib"])
def served(request, tmp_path_factory):
    """The classifier saved as JSON or pickled, served by seldon-core and modelshelf serve."""
    model, _ = trained_classifier()
    folder = tmp_path_factory.mktemp("categories")
    if request.param == "model.json":
        model.save_model(str(folder / "model.json"))
    else:
        xm.save_pickle(model, folder)
    with running(launch(folder), [SELDON, MODELSHELF], env={"MODEL_NAME": "paints"}) as services:
        yield services, model


def test_seldon_names_and_ndarray_take_category_values(served):
    services, model = served
    for service in services:
        body = {"data": {"names": ["color", "size"], "ndarray": ROWS}}
        answer = service.client.post("/api/v1.0/predictions", json=body)
        assert answer.status_code == 200, answer.text
        np.testing.assert_allclose(answer.json()["data"]["ndarray"], expected(model, ROWS))
        # Columns named in another order are matched by name.
        body = {"data": {"names": ["size", "color"], "ndarray": [[r[1], r[0]] for r in ROWS]}}
        answer = service.client.post("/api/v1.0/predictions", json=body)
        assert answer.status_code == 200, answer.text
        np.testing.assert_allclose(answer.json()["data"]["ndarray"], expected(model, ROWS))


def test_jsondata_records_take_category_values(served):
    services, model = served
    records = [{"size": size, "color": color} for color, size in ROWS]
    for service in services:
        answer = service.client.post("/api/v1.0/predictions", json={"jsonData": records})
        assert answer.status_code == 200, answer.text
        found = answer.json()["data"]["tensor"]
        np.testing.assert_allclose(
            np.reshape(found["values"], found["shape"]), expected(model, ROWS), rtol=1e-6
        )


def test_numeric_codes_still_work_and_a_code_of_no_category_is_named(served):
    services, model = served
    codes = [[COLORS.index(c), s] for c, s in ROWS if c in COLORS]
    rows = [[COLORS[int(c)], s] for c, s in codes]
    for service in services:
        body = {"data": {"names": ["color", "size"], "ndarray": codes}}
        answer = service.client.post("/api/v1.0/predictions", json=body)
        assert answer.status_code == 200, answer.text
        np.testing.assert_allclose(answer.json()["data"]["ndarray"], expected(model, rows))
        body = {"data": {"names": ["color", "size"], "ndarray": [[7, 0.1]]}}
        answer = service.client.post("/api/v1.0/predictions", json=body)
        assert answer.status_code == 400, answer.text
        text = answer.text
        assert "'color'" in text and "7" in text and "'red'" in text and "0..2" in text


def test_v2_bytes_column_through_tritonclient(served):
    services, model = served
    rows = [r for r in ROWS if r[0] is not None]  # BYTES has no null
    client = triton.InferenceServerClient(f"127.0.0.1:{services[1].http_port}")
    try:
        inputs = client.get_model_metadata("paints")["inputs"]
        assert [(i["name"], i["datatype"]) for i in inputs] == [
            ("color", "BYTES"),
            ("size", "FP64"),
        ]
        for binary in (False, True):
            color = triton.InferInput("color", [len(rows)], "BYTES")
            color.set_data_from_numpy(np.array([r[0] for r in rows], dtype=object), binary)
            size = triton.InferInput("size", [len(rows)], "FP64")
            size.set_data_from_numpy(np.array([r[1] for r in rows], dtype=np.float64), binary)
            result = client.infer("paints", [color, size])
            np.testing.assert_allclose(
                result.as_numpy("predict_proba"), expected(model, rows), rtol=1e-6
            )
    finally:
        client.close()


def test_kserve_v1_instances_and_records(served):
    services, model = served
    service = services[1]
    for body in (
        {"instances": ROWS},
        {"instances": [{"color": c, "size": s} for c, s in ROWS]},
    ):
        answer = service.client.post("/v1/models/paints:predict", json=body)
        assert answer.status_code == 200, answer.text
        np.testing.assert_allclose(answer.json()["predictions"], expected(model, ROWS), rtol=1e-6)


def test_a_model_without_categories_reads_numbers_as_before(tmp_path):
    """The numeric path: rows of numbers answer what the booster answers, text is refused."""
    booster = xm.iris_softprob()
    folder = xm.save_booster(booster, tmp_path / "iris")
    rows = xm.IRIS_X[::30]
    with running(launch(folder), [MODELSHELF]) as (service,):
        answer = service.client.post(
            "/api/v1.0/predictions", json={"data": {"ndarray": rows.tolist()}}
        )
        assert answer.status_code == 200, answer.text
        np.testing.assert_allclose(
            answer.json()["data"]["ndarray"], booster.inplace_predict(rows), rtol=1e-6
        )
        bad = {"data": {"ndarray": [["red", *rows[0][1:].tolist()]]}}
        answer = service.client.post("/api/v1.0/predictions", json=bad)
        assert answer.status_code == 400 and "could not read 'red' as a number" in answer.text
