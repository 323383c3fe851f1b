"""A request carrying a column the model does not use, on every protocol, answered as the model
(or ``mlflow models serve``) answers it: a pipeline whose ``ColumnTransformer`` selects its
columns by name ignores extra ones (scikit-learn allows them: KServe's sklearnserver, which
hands the frame to the model, answers 200), and an MLflow signature drops them (MLflow's
``_enforce_schema``, with a warning); a model whose first step checks feature names refuses a
name it was not fitted on, and so do we, naming it. A missing column is a 400 naming it (and
the extra ones beside it, a misspelling's other half)."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pandas as pd
import pytest
from frontends import MODELSHELF, SELDON, running, sklearn_launch
from test_protocols_mlflow import (
    SHOPS,
    beside_mlflow,
    seldon_answer,
    seldon_rows,
    shops_pipeline,
)

import models

pytestmark = pytest.mark.timeout(600)

#: HOUSES with a column the pipeline was not fitted on, placed among the others.
HOUSES_EXTRA = models.HOUSES.assign(note=["a", "b", "c", "d", "e", "f", "g", "h"])[
    ["city", "note", "floor", "area"]
]


def v2_inputs(frame: pd.DataFrame) -> list[dict]:
    datatypes = {"O": "BYTES", "i": "INT64", "f": "FP64"}
    return [
        {
            "name": name,
            "datatype": datatypes[frame[name].dtype.kind],
            "shape": [len(frame)],
            "data": frame[name].tolist(),
        }
        for name in frame.columns
    ]


@pytest.fixture(scope="module")
def houses(tmp_path_factory):
    """The ColumnTransformer pipeline behind ``modelshelf serve`` and seldon-core's server."""
    model = models.houses_pipeline()
    folder = models.save(model, tmp_path_factory.mktemp("houses") / "houses")
    with running(sklearn_launch(folder), [MODELSHELF, SELDON]) as services:
        yield services, model


def test_a_column_transformer_pipeline_ignores_an_extra_column_on_every_protocol(houses):
    services, model = houses
    expected = model.predict_proba(HOUSES_EXTRA).tolist()  # the model itself takes the frame
    assert expected == model.predict_proba(models.HOUSES).tolist()
    records = json.loads(HOUSES_EXTRA.to_json(orient="records"))
    for service in services:
        for payload in (
            seldon_rows(HOUSES_EXTRA, list(HOUSES_EXTRA.columns)),
            {"jsonData": records},
        ):
            answer = service.client.post("/api/v1.0/predictions", json=payload)
            assert answer.status_code == 200, answer.text
            np.testing.assert_allclose(seldon_answer(answer.json()), expected)
    service = services[0]
    (name,) = service.client.get("/v1/models").json()["models"]
    answer = service.client.post(
        f"/v2/models/{name}/infer", json={"inputs": v2_inputs(HOUSES_EXTRA)}
    )
    assert answer.status_code == 200, answer.text
    (output,) = answer.json()["outputs"]
    np.testing.assert_allclose(np.reshape(output["data"], output["shape"]), expected)
    answer = service.client.post(f"/v1/models/{name}:predict", json={"instances": records})
    assert answer.status_code == 200, answer.text
    np.testing.assert_allclose(answer.json()["predictions"], expected)


def test_a_missing_column_is_still_refused_by_name(houses):
    services, _ = houses
    renamed = HOUSES_EXTRA.drop(columns=["area"])
    message = (
        "the column names do not match the model's features ['city', 'floor', 'area']: "
        "missing ['area'], unexpected ['note']"
    )
    for service in services:
        answer = service.client.post(
            "/api/v1.0/predictions", json=seldon_rows(renamed, list(renamed.columns))
        )
        assert answer.status_code == 400, answer.text
        assert answer.json()["status"]["info"] == message
    answer = services[0].client.post("/v2/models/houses/infer", json={"inputs": v2_inputs(renamed)})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == message


def test_a_model_that_checks_feature_names_refuses_an_extra_one(tmp_path):
    """A StandardScaler pipeline fitted on a DataFrame refuses a name it did not see (its own
    ValueError, in process); served, it is a 400 naming it."""
    model = models.iris_frame_pipeline()
    frame = pd.DataFrame(models.IRIS_X[:2], columns=models.IRIS_COLUMNS).assign(extra=1.0)
    with pytest.raises(ValueError, match="unseen at fit time"):
        model.predict_proba(frame)
    folder = models.save(model, tmp_path / "iris")
    with running(sklearn_launch(folder, "iris"), [MODELSHELF]) as (service,):
        answer = service.client.post(
            "/api/v1.0/predictions", json=seldon_rows(frame, list(frame.columns))
        )
    assert answer.status_code == 400, answer.text
    assert answer.json()["status"]["info"] == (
        f"the column names do not match the model's features {models.IRIS_COLUMNS}: "
        "missing [], unexpected ['extra']"
    )


# ------------------------------------------------------------------------------------ MLflow


def save_mlflow(folder, model, frame, signature: bool) -> None:
    import mlflow.sklearn
    from mlflow.models import infer_signature

    mlflow.sklearn.save_model(
        model,
        folder,
        signature=infer_signature(frame, model.predict(frame)) if signature else None,
        pip_requirements=["scikit-learn", "numpy", "pandas"],
    )


SHOPS_EXTRA = SHOPS.assign(note=["x"] * len(SHOPS))[["note", "city", "zip", "rooms", "area"]]


@pytest.mark.parametrize("signature", [True, False], ids=["signature", "no signature"])
def test_mlflow_answers_an_extra_column_as_mlflow_models_serve(tmp_path, signature):
    """With a signature MLflow drops the column; without one, the ColumnTransformer ignores
    it: ``mlflow models serve`` answers 200 and so do we, on /invocations, Seldon and V2,
    with pyfunc's answer to the frame without the column."""
    import mlflow.pyfunc

    model = shops_pipeline()
    folder = tmp_path / "shops"
    save_mlflow(folder, model, SHOPS, signature)
    expected = mlflow.pyfunc.load_model(str(folder)).predict(SHOPS).tolist()
    split = json.loads(SHOPS_EXTRA.to_json(orient="split", index=False))
    records = json.loads(SHOPS_EXTRA.to_json(orient="records"))
    with beside_mlflow(folder) as (url, service):
        for payload in ({"dataframe_split": split}, {"dataframe_records": records}):
            theirs = httpx.post(f"{url}/invocations", json=payload, timeout=60)
            ours = service.client.post("/invocations", json=payload)
            assert theirs.status_code == ours.status_code == 200, (ours.text, theirs.text)
            assert ours.json() == theirs.json() == {"predictions": expected}
        answer = service.client.post(
            "/api/v1.0/predictions", json=seldon_rows(SHOPS_EXTRA, list(SHOPS_EXTRA.columns))
        )
        assert answer.status_code == 200, answer.text
        assert seldon_answer(answer.json()) == expected
        (name,) = service.client.get("/v1/models").json()["models"]
        answer = service.client.post(
            f"/v2/models/{name}/infer", json={"inputs": v2_inputs(SHOPS_EXTRA)}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["outputs"][0]["data"] == expected
        missing = {
            "dataframe_records": [{k: v for k, v in r.items() if k != "zip"} for r in records]
        }
        theirs = httpx.post(f"{url}/invocations", json=missing, timeout=60)
        ours = service.client.post("/invocations", json=missing)
        assert theirs.status_code == ours.status_code == 400, (ours.text, theirs.text)
        assert "missing ['zip'], unexpected ['note']" in ours.json()["message"]


def test_mlflow_without_signature_refuses_what_its_model_refuses(tmp_path):
    """Without a signature ``mlflow models serve`` hands the frame to the model, which refuses
    the unseen name (a 400 there): ours refuses it too, naming it."""
    model = models.iris_frame_pipeline()
    frame = pd.DataFrame(models.IRIS_X[:2], columns=models.IRIS_COLUMNS)
    folder = tmp_path / "iris"
    save_mlflow(folder, model, frame, signature=False)
    split = json.loads(frame.assign(extra=1.0).to_json(orient="split", index=False))
    with beside_mlflow(folder) as (url, service):
        theirs = httpx.post(f"{url}/invocations", json={"dataframe_split": split}, timeout=60)
        ours = service.client.post("/invocations", json={"dataframe_split": split})
    assert theirs.status_code == ours.status_code == 400, (ours.text, theirs.text)
    assert "unexpected ['extra']" in ours.json()["message"]
