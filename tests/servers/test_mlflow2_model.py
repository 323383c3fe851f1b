"""A model saved by MLflow 2 (2.17, in its own small virtualenv made by uv and kept between
runs) served by MLFlowServer on MLflow 3: its answers equal what MLflow 2's own ``pyfunc.predict``
gave when it saved the model, for ``names`` + ``ndarray`` rows mixing text and numbers, for
``jsonData`` records, and with ``meta.params``. Skipped when the virtualenv cannot be made
(no network and no cached wheels)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from microservice import BIN, running_microservice, seldon_parameters
from mlflow_corpus import answer_of

pytestmark = pytest.mark.timeout(600)

OLD_MLFLOW = "2.17.2"
#: Where the old virtualenv is kept between runs (made again when missing or broken).
VENV_CACHE = (
    Path(os.environ.get("MODELSHELF_TEST_CACHE", Path.home() / ".cache" / "modelshelf-tests"))
    / f"mlflow-{OLD_MLFLOW}-venv"
)

SAVE_WITH_MLFLOW_2 = """
import json, sys
import mlflow, numpy as np, pandas as pd
from mlflow.models import ModelSignature, infer_signature
from mlflow.pyfunc import PythonModel
from mlflow.types import ParamSchema, ParamSpec
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

root = sys.argv[1]
homes = pd.DataFrame({
    "city": ["paris", "lyon", "paris", "nice", "lyon", "nice"],
    "zip": ["75001", "69001", "06000", "06000", "69002", "06100"],
    "rooms": np.array([3, 2, 4, 1, 5, 2], dtype=np.int64),
    "area": [55.5, 40.0, 80.25, 20.0, 120.0, 35.5],
    "has_garage": [True, False, True, False, True, False],
})
pipeline = make_pipeline(
    ColumnTransformer([("text", OneHotEncoder(handle_unknown="ignore"), ["city", "zip"]),
                       ("numbers", StandardScaler(), ["rooms", "area", "has_garage"])]),
    LogisticRegression(max_iter=1000),
).fit(homes, [1, 0, 1, 0, 1, 0])
mlflow.sklearn.save_model(pipeline, f"{root}/pipeline",
                          signature=infer_signature(homes, pipeline.predict(homes)),
                          pip_requirements=["scikit-learn"])


class Scaled(PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input[["x"]].to_numpy() * (params or {}).get("factor", 1.0)


xs = pd.DataFrame({"x": [1.0, 2.5]})
factor = ParamSchema([ParamSpec("factor", "double", 1.0)])
mlflow.pyfunc.save_model(f"{root}/params", python_model=Scaled(), pip_requirements=["pandas"],
                         signature=ModelSignature(infer_signature(xs).inputs, params=factor))
scaled = mlflow.pyfunc.load_model(f"{root}/params")
expected = {
    "pipeline": mlflow.pyfunc.load_model(f"{root}/pipeline").predict(homes).tolist(),
    "params": scaled.predict(xs, params={"factor": 3.0}).tolist(),
    "rows": homes.astype(object).values.tolist(),
    "records": json.loads(homes.to_json(orient="records")),
    "mlflow": mlflow.__version__,
}
with open(f"{root}/expected.json", "w") as handle:
    json.dump(expected, handle)
"""


def old_python() -> Path | None:
    """The cached MLflow 2 virtualenv's interpreter, made with uv when missing."""
    python = VENV_CACHE / "bin" / "python"
    check = [str(python), "-c", "import mlflow, sklearn"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    shutil.rmtree(VENV_CACHE, ignore_errors=True)
    import numpy
    import pandas
    import sklearn

    uv = shutil.which("uv", path=str(BIN)) or shutil.which("uv")
    if uv is None:
        return None
    pins = [
        f"mlflow-skinny=={OLD_MLFLOW}",
        f"scikit-learn=={sklearn.__version__}",  # the pickle must load here
        f"numpy=={numpy.__version__}",
        f"pandas=={pandas.__version__}",
    ]
    steps = [
        [uv, "venv", "-q", "--python", str(BIN / "python"), str(VENV_CACHE)],
        [uv, "pip", "install", "-q", "--python", str(python), *pins],
    ]
    for step in steps:
        if subprocess.run(step, capture_output=True, timeout=300).returncode != 0:
            shutil.rmtree(VENV_CACHE, ignore_errors=True)
            return None
    return python


@pytest.fixture(scope="module")
def saved_by_mlflow_2(tmp_path_factory):
    python = old_python()
    if python is None:
        pytest.skip(f"cannot make a virtualenv with mlflow-skinny {OLD_MLFLOW}")
    root = tmp_path_factory.mktemp("mlflow2-models")
    script = root / "save.py"
    script.write_text(SAVE_WITH_MLFLOW_2)
    env = {**os.environ, "MLFLOW_TRACKING_URI": (root / "mlruns").as_uri()}
    done = subprocess.run(
        [str(python), str(script), str(root)], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    expected = json.loads((root / "expected.json").read_text())
    assert expected["mlflow"] == OLD_MLFLOW
    return root, expected


@pytest.fixture(scope="module")
def services(saved_by_mlflow_2):
    root, _ = saved_by_mlflow_2
    with (
        running_microservice(
            "MLFlowServer", seldon_parameters(model_uri=str(root / "pipeline")), ready_timeout=120
        ) as pipeline,
        running_microservice(
            "MLFlowServer", seldon_parameters(model_uri=str(root / "params")), ready_timeout=120
        ) as params,
    ):
        yield {"pipeline": pipeline, "params": params}


def test_the_mlflow_2_pipeline_answers_as_mlflow_2_did(services, saved_by_mlflow_2):
    _, expected = saved_by_mlflow_2
    names = list(expected["records"][0])
    for body in (
        {"data": {"names": names, "ndarray": expected["rows"]}},
        {"jsonData": expected["records"]},
    ):
        response = services["pipeline"].post("/api/v1.0/predictions", body)
        assert answer_of(response) == expected["pipeline"], response.text


def test_the_mlflow_2_params_model_takes_meta_params(services, saved_by_mlflow_2):
    _, expected = saved_by_mlflow_2
    body = {"meta": {"params": {"factor": 3.0}}, "jsonData": [{"x": 1.0}, {"x": 2.5}]}
    response = services["params"].post("/api/v1.0/predictions", body)
    assert answer_of(response) == expected["params"], response.text
