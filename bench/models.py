"""The models and request bodies every system is measured with, made fresh on each run.

Trained here (milliseconds) rather than shipped, so pickles always match the installed
scikit-learn, which the peers' venvs pin to the same version.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SINGLE_ROW = [[5.1, 3.5, 1.4, 0.2]]

#: Wire formats: Seldon v1, Open Inference (V2) asking for predict_proba, V2 with the model's
#: default output, KServe V1, MLflow's scoring server, and V2 asking for predict_proba with the
#: binary tensor extension both ways (as tritonclient sends with binary_data=True).
PAYLOAD_KINDS = ("seldon", "v2-proba", "v2", "kserve-v1", "mlflow", "v2-binary-proba")
FAMILIES = ("sklearn", "xgboost", "mlflow")
EXTRA_PACKAGE = ("modelshelf-bench-extra", "0.1")


@dataclass(frozen=True)
class Models:
    sklearn: Path  # folder with model.joblib (iris LogisticRegression, class names as labels)
    xgboost: Path  # folder with model.json (3-class multi:softprob booster)
    mlflow: Path  # an MLflow model folder (mlflow.sklearn flavor of the same estimator)
    mlflow_extra: Path  # the same, also requiring EXTRA_PACKAGE, which only ``wheels`` holds
    wheels: Path  # a local wheels folder (MODELSHELF_WHEELS_DIR) with EXTRA_PACKAGE's wheel
    payloads: Path  # <kind>-<rows>.json
    families: frozenset[str]  # which of the three folders were made

    def payload(self, kind: str, rows: int) -> Path:
        return self.payloads / f"{kind}-{rows}.json"


def batch_rows(n: int) -> list[list[float]]:
    """``n`` rows within iris's feature ranges, fixed seed, one decimal (as clients send them)."""
    low, high = [4.3, 2.0, 1.0, 0.1], [7.9, 4.4, 6.9, 2.5]
    return np.round(np.random.default_rng(0).uniform(low, high, (n, 4)), 1).tolist()


def body_bytes(kind: str, rows: list[list[float]]) -> bytes:
    """What a request of one wire format carrying ``rows`` sends."""
    if kind != "v2-binary-proba":
        return json.dumps(body(kind, rows)).encode()
    data = np.asarray(rows, dtype="<f8").tobytes()
    header = {
        "inputs": [
            {
                "name": "input-0",
                "shape": [len(rows), 4],
                "datatype": "FP64",
                "parameters": {"binary_data_size": len(data)},
            }
        ],
        "outputs": [{"name": "predict_proba", "parameters": {"binary_data": True}}],
    }
    return json.dumps(header).encode() + data


def body(kind: str, rows: list[list[float]]) -> dict:
    """The request body of one wire format carrying ``rows``."""
    if kind == "seldon":
        return {"data": {"ndarray": rows}}
    if kind in ("v2", "v2-proba"):
        flat = [value for row in rows for value in row]
        request: dict = {
            "inputs": [
                {"name": "input-0", "shape": [len(rows), 4], "datatype": "FP64", "data": flat}
            ]
        }
        if kind == "v2-proba":
            request["outputs"] = [{"name": "predict_proba"}]
        return request
    if kind == "kserve-v1":
        return {"instances": rows}
    if kind == "mlflow":
        return {"inputs": rows}
    raise ValueError(f"unknown payload kind {kind!r}; expected one of {PAYLOAD_KINDS}")


def make_models(
    root: Path, rows_per_batch: int, families: frozenset[str] = frozenset(FAMILIES)
) -> Models:
    """Train and save the models of ``families`` and write every payload under ``root``."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    sklearn_dir = root / "sklearn"
    if families & {"sklearn", "xgboost", "mlflow"}:
        import joblib
        from sklearn.datasets import load_iris
        from sklearn.linear_model import LogisticRegression

        iris = load_iris()
        classifier = LogisticRegression(max_iter=1000).fit(
            iris.data, iris.target_names[iris.target]
        )
        sklearn_dir.mkdir()
        joblib.dump(classifier, sklearn_dir / "model.joblib")

    xgboost_dir = root / "xgboost"
    if "xgboost" in families:
        import xgboost as xgb

        xgboost_dir.mkdir()
        booster = xgb.train(
            {"objective": "multi:softprob", "num_class": 3, "max_depth": 3, "eta": 0.3},
            xgb.DMatrix(iris.data, label=iris.target),
            num_boost_round=20,
        )
        booster.save_model(xgboost_dir / "model.json")

    mlflow_dir = root / "mlflow"
    mlflow_extra_dir = root / "mlflow-extra"
    wheels_dir = root / "wheels"
    if "mlflow" in families:
        import mlflow.sklearn
        import sklearn

        # Named requirements: inferring them would load the model again in a subprocess.
        pinned = f"scikit-learn=={sklearn.__version__}"
        mlflow.sklearn.save_model(classifier, mlflow_dir, pip_requirements=[pinned])
        name, version = EXTRA_PACKAGE
        mlflow.sklearn.save_model(
            classifier, mlflow_extra_dir, pip_requirements=[pinned, f"{name}=={version}"]
        )
        write_wheel(wheels_dir, name, version)

    payloads = root / "payloads"
    payloads.mkdir()
    for rows in (SINGLE_ROW, batch_rows(rows_per_batch)):
        for kind in PAYLOAD_KINDS:
            (payloads / f"{kind}-{len(rows)}.json").write_bytes(body_bytes(kind, rows))
    return Models(
        sklearn_dir,
        xgboost_dir,
        mlflow_dir,
        mlflow_extra_dir,
        wheels_dir,
        payloads,
        frozenset(families),
    )


def write_wheel(folder: Path, name: str, version: str) -> Path:
    """A minimal pure-Python wheel of one empty module (what a private package looks like)."""
    import base64
    import hashlib
    import zipfile

    module = name.replace("-", "_")
    info = f"{module}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": b'"""Installed by make bench\'s cold-start measurement."""\n',
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    files[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel
