"""Real MLflow models of the kinds users serve, saved with MLflow at test time (``save_model``,
explicit requirements: no inference subprocess), and the requests each is asked in every Seldon
shape. The corpus tests serve each with MLFlowServer and compare with ``pyfunc.predict``."""

from __future__ import annotations

import importlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression

from models import IRIS, IRIS_COLUMNS, IRIS_X, iris_frame_pipeline

HOMES = pd.DataFrame(
    {
        "city": ["paris", "lyon", "paris", "nice", "lyon", "nice", "paris", "lyon"],
        "zip": ["75001", "69001", "06000", "06000", "69002", "06100", "75002", "69001"],
        "rooms": np.array([3, 2, 4, 1, 5, 2, 3, 4], dtype=np.int64),
        "area": [55.5, 40.0, 80.25, 20.0, 120.0, 35.5, 60.0, 90.0],
        "has_garage": [True, False, True, False, True, False, False, True],
    }
)
HOMES_Y = [1, 0, 1, 0, 1, 0, 0, 1]

#: The PythonModel's code_paths module and its artifact: a scale factor read at load.
SCALING_MODULE = (
    "def scaled(values, factor):\n    return [[v * factor for v in row] for row in values]\n"
)

PYTHON_MODELS = '''
import json

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel


class ScaledByArtifact(PythonModel):
    """Uses a code_paths module and an artifact (a JSON file holding the factor)."""

    def load_context(self, context):
        with open(context.artifacts["factor"]) as handle:
            self.factor = json.load(handle)["factor"]

    def predict(self, context, model_input, params=None):
        from corpus_scaling import scaled

        return np.asarray(scaled(np.asarray(model_input, dtype=float).tolist(), self.factor))


class Thresholded(PythonModel):
    """Takes params: a threshold and a label for the positive answer."""

    def predict(self, context, model_input, params=None):
        params = params or {}
        threshold = params.get("threshold", 0.5)
        above = model_input["score"].to_numpy() > threshold
        label = np.where(above, params.get("label", "yes"), "no")
        return pd.DataFrame({"above": above.astype(np.int64), "label": label})


class ListOutput(PythonModel):
    """Answers a list (one number a row)."""

    def predict(self, context, model_input, params=None):
        return [float(x) * 2 for x in np.asarray(model_input, dtype=float)[:, 0]]


class DictOutput(PythonModel):
    """Answers a mapping of named outputs (columns)."""

    def predict(self, context, model_input, params=None):
        values = np.asarray(model_input, dtype=float)
        return {"total": values.sum(axis=1).tolist(), "first": values[:, 0].tolist()}
'''


def written_module(folder: Path, name: str, code: str) -> ModuleType:
    """``code`` written to ``folder/NAME.py`` and imported from there: a PythonModel's class
    comes from a module the model's ``code_paths`` ship, not from the test's own."""
    (folder / f"{name}.py").write_text(code)
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(folder))


@dataclass
class CorpusModel:
    """One saved model: its folder and the inputs pyfunc is called with (``frame`` for column
    signatures, ``array`` for tensors), and which request shapes it is asked in."""

    path: Path
    frame: pd.DataFrame | None = None
    array: np.ndarray | None = None
    params: dict[str, Any] = field(default_factory=dict)
    shapes: tuple[str, ...] = ("ndarray", "tensor", "jsonData")


def homes_pipeline() -> Any:
    """A ColumnTransformer over string / long / double / boolean columns, fitted on HOMES."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    return make_pipeline(
        ColumnTransformer(
            [
                ("text", OneHotEncoder(handle_unknown="ignore"), ["city", "zip"]),
                ("numbers", StandardScaler(), ["rooms", "area"]),
                ("flag", "passthrough", ["has_garage"]),
            ]
        ),
        LogisticRegression(max_iter=1000),
    ).fit(HOMES, HOMES_Y)


def build_corpus(root: Path) -> dict[str, CorpusModel]:
    """Save every model of the corpus under ``root``; what each is asked with."""
    import mlflow
    import xgboost
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types import ParamSchema, ParamSpec

    root.mkdir(parents=True, exist_ok=True)
    sk_reqs = ["scikit-learn", "numpy", "pandas"]
    corpus: dict[str, CorpusModel] = {}
    iris_frame = pd.DataFrame(IRIS_X[::15], columns=IRIS_COLUMNS)

    def save_sklearn(name: str, model: Any, signature: Any = None, **kwargs: Any) -> Path:
        path = root / name
        mlflow.sklearn.save_model(
            model, path, signature=signature, pip_requirements=sk_reqs, **kwargs
        )
        return path

    # scikit-learn without and with a signature
    plain = LogisticRegression(max_iter=1000).fit(IRIS_X, IRIS.target)
    corpus["sklearn_plain"] = CorpusModel(save_sklearn("sklearn_plain", plain), array=IRIS_X[::15])
    framed = iris_frame_pipeline()
    corpus["sklearn_signature"] = CorpusModel(
        save_sklearn(
            "sklearn_signature", framed, infer_signature(iris_frame, framed.predict(iris_frame))
        ),
        frame=iris_frame,
    )
    mixed = homes_pipeline()
    corpus["mixed_pipeline"] = CorpusModel(
        save_sklearn("mixed_pipeline", mixed, infer_signature(HOMES, mixed.predict(HOMES))),
        frame=HOMES,
        shapes=("ndarray", "jsonData"),  # a tensor holds numbers only
    )
    # float32 tensor signature (a model fitted on float32)
    x32 = IRIS_X.astype(np.float32)
    small = LogisticRegression(max_iter=1000).fit(x32, IRIS.target)
    corpus["tensor_float32"] = CorpusModel(
        save_sklearn("tensor_float32", small, infer_signature(x32, small.predict(x32))),
        array=x32[::15],
    )
    # xgboost flavor: a Booster (tensor signature) and a 30-column XGBClassifier (columns)
    cancer = load_breast_cancer()
    cancer_frame = pd.DataFrame(cancer.data, columns=list(cancer.feature_names))
    booster = xgboost.train(
        {"objective": "multi:softprob", "num_class": 3, "max_depth": 2, "nthread": 1},
        xgboost.DMatrix(IRIS_X, label=IRIS.target),
        num_boost_round=5,
    )
    path = root / "xgb_booster"
    mlflow.xgboost.save_model(
        booster,
        path,
        signature=infer_signature(IRIS_X, booster.predict(xgboost.DMatrix(IRIS_X))),
        pip_requirements=["xgboost"],
    )
    corpus["xgb_booster"] = CorpusModel(path, array=IRIS_X[::15])
    classifier = xgboost.XGBClassifier(n_estimators=5, max_depth=2, n_jobs=1)
    classifier.fit(cancer_frame, cancer.target)
    path = root / "xgb_classifier"
    mlflow.xgboost.save_model(
        classifier,
        path,
        signature=infer_signature(cancer_frame, classifier.predict(cancer_frame)),
        pip_requirements=["xgboost"],
    )
    corpus["xgb_classifier"] = CorpusModel(path, frame=cancer_frame.iloc[::50])
    # PythonModels: artifacts + code_paths, params, list and dict outputs
    work = root / "_sources"
    work.mkdir(exist_ok=True)
    (work / "corpus_scaling.py").write_text(SCALING_MODULE)
    (work / "factor.json").write_text(json.dumps({"factor": 3.0}))
    corpus_models = written_module(work, "corpus_models", PYTHON_MODELS)
    array4 = IRIS_X[::15]
    mlflow.pyfunc.save_model(
        root / "python_artifacts",
        python_model=corpus_models.ScaledByArtifact(),
        artifacts={"factor": str(work / "factor.json")},
        code_paths=[str(work / "corpus_scaling.py"), str(work / "corpus_models.py")],
        signature=infer_signature(array4, array4 * 3),
        pip_requirements=["numpy"],
    )
    corpus["python_artifacts"] = CorpusModel(root / "python_artifacts", array=array4)
    scores = pd.DataFrame({"score": [0.1, 0.55, 0.7, 0.95]})
    params = ParamSchema(
        [ParamSpec("threshold", "double", 0.5), ParamSpec("label", "string", "yes")]
    )
    mlflow.pyfunc.save_model(
        root / "python_params",
        python_model=corpus_models.Thresholded(),
        code_paths=[str(work / "corpus_models.py")],
        signature=ModelSignature(
            inputs=infer_signature(scores).inputs, outputs=None, params=params
        ),
        pip_requirements=["numpy", "pandas"],
    )
    corpus["python_params"] = CorpusModel(
        root / "python_params", frame=scores, params={"threshold": 0.8, "label": "high"}
    )
    for name, model in (("list", corpus_models.ListOutput()), ("dict", corpus_models.DictOutput())):
        mlflow.pyfunc.save_model(
            root / f"python_{name}_output",
            python_model=model,
            code_paths=[str(work / "corpus_models.py")],
            signature=infer_signature(array4),
            pip_requirements=["numpy"],
        )
        corpus[f"python_{name}_output"] = CorpusModel(root / f"python_{name}_output", array=array4)
    return corpus


def requests_for(model: CorpusModel, shape: str) -> dict[str, Any]:
    """The Seldon body asking ``model`` its rows in ``shape``, as a client would write it."""
    if model.frame is not None:
        frame = model.frame
        names = [str(c) for c in frame.columns]
        rows = [[_json_value(v) for v in row] for row in frame.itertuples(index=False)]
        if shape == "ndarray":
            data: dict[str, Any] = {"names": names, "ndarray": rows}
        elif shape == "tensor":
            flat = [float(v) for row in rows for v in row]
            data = {"names": names, "tensor": {"shape": list(frame.shape), "values": flat}}
        else:
            data = {"jsonData": json.loads(frame.to_json(orient="records"))}
            return data
    else:
        array = np.asarray(model.array)
        if shape == "ndarray":
            data = {"ndarray": array.tolist()}
        elif shape == "tensor":
            data = {"tensor": {"shape": list(array.shape), "values": array.ravel().tolist()}}
        else:
            return {"jsonData": array.tolist()}
    return {"data": data}


def _json_value(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def model_input(model: CorpusModel) -> Any:
    """What pyfunc is called with for the same rows."""
    return model.frame if model.frame is not None else model.array


def answer_of(response: Any) -> object:
    """A Seldon answer's data, whichever form seldon-core chose (ndarray, tensor, jsonData)."""
    assert response.status_code == 200, response.text
    body = response.json()
    if "jsonData" in body:
        return body["jsonData"]
    data = body["data"]
    if "tensor" in data:
        return np.asarray(data["tensor"]["values"]).reshape(data["tensor"]["shape"]).tolist()
    return data["ndarray"]
