"""Metadata from the MLmodel file, without loading the model: name, version, platform, and the
signature's inputs and outputs as Seldon/V2 tensors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modelshelf import metadata as md
from modelshelf.environment.model_location import registered_model
from modelshelf.frameworks.mlflow._startup import read_mlmodel

#: MLflow column types as V2 datatypes (also the V2 answer's, ``_signature.answer_columns``).
COLUMN_DATATYPES = {
    "boolean": "BOOL",
    "integer": "INT32",
    "long": "INT64",
    "float": "FP32",
    "double": "FP64",
    "string": "BYTES",
    "binary": "BYTES",
    "datetime": "BYTES",
}


def describe_mlmodel(model_dir: Path, uri: str, method_name: str) -> dict[str, Any]:
    """Name, version, inputs and outputs (names, types, shapes) from the MLmodel file."""
    mlmodel = read_mlmodel(model_dir, uri)
    signature = mlmodel.get("signature") or {}
    flavors = [f for f in mlmodel.get("flavors") or {} if f != "python_function"]
    registered = registered_model(model_dir)
    found: dict[str, Any] = {
        "name": registered.name if registered else str(mlmodel.get("artifact_path") or "model"),
        "platform": "mlflow" + (f"-{flavors[0]}" if flavors else ""),
        "inputs": _tensor_specs(signature.get("inputs"), "input"),
        "outputs": _tensor_specs(signature.get("outputs"), "output"),
    }
    if registered:
        found["versions"] = [registered.version]
    custom = {
        "run id": mlmodel.get("run_id"),
        "model id": mlmodel.get("model_id"),
        "model uuid": mlmodel.get("model_uuid"),
        "logged with mlflow": mlmodel.get("mlflow_version"),
        "flavors": ", ".join(flavors) or None,
        "method": method_name,
    }
    custom.update(_params(signature.get("params")))
    found["custom"] = {k: str(v) for k, v in custom.items() if v}
    return found


def _params(text: str | list | None) -> dict[str, str]:
    """The signature's params as ``{"param NAME": "TYPE, default VALUE"}`` entries (sent as
    ``meta.params`` in a Seldon request, ``parameters`` in V2, ``params`` in MLflow's)."""
    if not text:
        return {}
    specs = json.loads(text) if isinstance(text, str) else text
    found = {}
    for spec in specs:
        kind = str(spec.get("type")) + (f" array {spec['shape']}" if spec.get("shape") else "")
        found[f"param {spec.get('name')}"] = f"{kind}, default {json.dumps(spec.get('default'))}"
    return found


def _tensor_specs(text: str | None, prefix: str) -> list[dict[str, Any]]:
    """MLflow's signature JSON as Seldon/V2 metadata tensors: name, datatype, shape."""
    if not text:
        return []
    specs = json.loads(text) if isinstance(text, str) else text
    found = []
    for i, spec in enumerate(specs):
        name = str(spec.get("name") or f"{prefix}-{i}")
        if spec.get("type") == "tensor":
            tensor = spec.get("tensor-spec") or {}
            try:
                datatype = md.tensor_type(tensor.get("dtype", "float64"))
            except TypeError:
                datatype = "BYTES"
            found.append({"name": name, "datatype": datatype, "shape": tensor.get("shape", [-1])})
        else:
            datatype = COLUMN_DATATYPES.get(str(spec.get("type")), "BYTES")
            found.append({"name": name, "datatype": datatype, "shape": [-1]})
    return found
