"""What start-up does in seldon-core's parent process, before it forks: import MLflow (unless the
model needs nothing of it) and a local model's fork-safe framework; and the model's own
requirements this process lacks."""

from __future__ import annotations

import contextlib
import importlib
import sys
from pathlib import Path
from typing import Any

import yaml

from modelshelf.deferred_imports import long_lived_imports
from modelshelf.environment.model_location import turn_off_mlflow_telemetry
from modelshelf.errors import ModelLoadError

#: Flavors whose framework is imported in seldon's parent process (``__init__``), so the REST
#: workers and the gRPC child share one import; their import starts no threads and no GPU.
_FORK_SAFE_FRAMEWORKS = {
    "sklearn": "sklearn.base",
    "xgboost": "xgboost",
}


class ModelEnvironmentWarning(UserWarning):
    """The model asks for a package (or Python) this server process does not have."""


def import_mlflow_before_fork() -> None:
    """Import ``mlflow.pyfunc``, e.g. in seldon-core's parent process before it forks the REST
    workers and the gRPC child: the ~2 s CPU import is then shared copy-on-write instead of
    repeated in each; MLflow's telemetry stays off (``turn_off_mlflow_telemetry``)."""
    turn_off_mlflow_telemetry()
    if "mlflow.pyfunc" in sys.modules:
        return
    with long_lived_imports(garbage_collected_after=False):
        import mlflow.pyfunc  # noqa: F401


def import_framework_of_local_model(model_uri: str) -> None:
    """Import what loading will need, here in seldon-core's parent process (before it forks)
    so that the REST workers and the gRPC child share one import: the framework of a local
    model's fork-safe flavor, and MLflow unless the model is served without it
    (``plain_sklearn_pickle``). Only reads the MLmodel file of a local folder; a remote
    model is not fetched here (MLflow is imported for it)."""
    path = Path(model_uri.removeprefix("file://"))
    try:
        mlmodel: dict[str, Any] | None = read_mlmodel(path, model_uri)
    except ModelLoadError:  # not a local model folder (or a broken one: load() says why)
        mlmodel = None
    flavors = (mlmodel or {}).get("flavors") or {}
    for flavor in flavors:
        package = _FORK_SAFE_FRAMEWORKS.get(flavor)
        if package and package not in sys.modules:
            # A missing framework: load() gives the import error.
            with contextlib.suppress(ImportError):
                importlib.import_module(package)
    if mlmodel is None or plain_sklearn_pickle(mlmodel, path) is None:
        import_mlflow_before_fork()


def read_mlmodel(model_dir: Path, uri: str) -> dict[str, Any]:
    """The fields of ``model_dir``'s MLmodel file (``uri`` names it in errors), read without
    MLflow: start-up, loading and metadata each need them before MLflow is imported, if ever."""
    path = model_dir / "MLmodel"
    try:
        mlmodel = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ModelLoadError(uri, f"cannot read {path}: {exc}") from exc
    if not isinstance(mlmodel, dict):
        raise ModelLoadError(uri, f"{path} is not a YAML mapping of MLmodel fields")
    return mlmodel


def plain_sklearn_pickle(mlmodel: dict[str, Any], model_dir: Path) -> Path | None:
    """The pickle file of an sklearn-flavor model that needs nothing of MLflow to serve, else
    ``None``. Such a model has no signature (nothing for MLflow to enforce), a ``pickle`` or
    ``cloudpickle`` file (both read by ``pickle.load``), no ``code`` folder to put on the path
    and no external artifacts: pyfunc would unpickle it and call its ``predict_fn``, which is
    what the server does, without MLflow's ~2 s CPU import."""
    flavors = mlmodel.get("flavors") or {}
    pyfunc = flavors.get("python_function") or {}
    sklearn = flavors.get("sklearn") or {}
    if (
        pyfunc.get("loader_module") != "mlflow.sklearn"
        or (mlmodel.get("signature") or {}).get("inputs")
        or mlmodel.get("metadata")
        or pyfunc.get("code")
        or sklearn.get("code")
        or "data" in pyfunc
        or sklearn.get("serialization_format", "pickle") not in ("pickle", "cloudpickle")
        or not sklearn.get("pickled_model")
    ):
        return None
    path = model_dir / str(sklearn["pickled_model"])
    return path if path.is_file() else None


def unmet_requirements(model_dir: Path) -> list[str]:
    """The model's requirements this process lacks (logged at load, as MLflow does)."""
    from modelshelf.environment import unmet_requirements as unmet
    from modelshelf.environment.errors import EnvironmentSpecError

    try:
        return unmet(model_dir)
    except EnvironmentSpecError as exc:
        return [f"could not check the model's requirements: {exc}"]
