"""Loading an MLflow model: its pyfunc model and the flavor's own model object, or, for a plain
sklearn-flavor pickle, the unpickled estimator alone without MLflow."""

from __future__ import annotations

import contextlib
import importlib
import pickle
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelshelf.environment import check_before_run
from modelshelf.errors import ModelLoadError
from modelshelf.frameworks.mlflow._startup import (
    import_mlflow_before_fork,
    plain_sklearn_pickle,
    read_mlmodel,
)


@dataclass(frozen=True)
class LoadedModel:
    """What loading found: pyfunc's model (``None`` without MLflow or without a
    ``python_function`` flavor), the flavor's own model object, the signature's schemas, the
    ``python_function`` flavor's configuration, whether it was a plain pickle, and the
    signature's params schema."""

    pyfunc: Any
    raw: Any
    schema: Any
    output_schema: Any
    conf: dict[str, Any]
    plain_pickle: bool
    params_schema: Any = None


def load_mlflow_model(model_dir: Path, uri: str) -> LoadedModel:
    """The model in ``model_dir`` (``uri`` names it in errors), through MLflow unless
    ``plain_sklearn_pickle`` finds it needs nothing of it."""
    check_before_run(uri)  # a failed before-run: not ready, rather than a 500 per prediction
    if not (model_dir / "MLmodel").is_file():
        raise ModelLoadError(uri, f"no MLmodel file in {model_dir}")
    mlmodel = read_mlmodel(model_dir, uri)
    pickled = plain_sklearn_pickle(mlmodel, model_dir)
    if pickled is not None:  # what pyfunc.load_model would do for this model, without MLflow
        with pickled.open("rb") as handle:
            raw = pickle.load(handle)
        conf = mlmodel["flavors"]["python_function"]
        return LoadedModel(None, raw, None, None, conf, plain_pickle=True)
    import_mlflow_before_fork()  # a no-op when the parent process did it; MLflow's first import
    from mlflow.models import Model

    _keep_mlflow_out_of_the_working_directory()
    info = Model.load(str(model_dir))
    pyfunc, raw = _load_pyfunc_and_raw(info, model_dir, uri)
    conf = info.flavors.get("python_function") or {}
    return LoadedModel(
        pyfunc,
        raw,
        info.get_input_schema(),
        info.get_output_schema(),
        conf,
        plain_pickle=False,
        params_schema=info.get_params_schema(),
    )


def direct_predict(conf: dict[str, Any], raw: Any) -> Any:
    """The sklearn flavor's own ``predict_fn`` (what its pyfunc wrapper calls after the schema
    check), given the ``python_function`` flavor's configuration; ``None`` for other flavors,
    which go through ``pyfunc.predict``."""
    if conf.get("loader_module") != "mlflow.sklearn" or raw is None:
        return None
    call = getattr(raw, conf.get("predict_fn") or "predict", None)
    return call if callable(call) else None


def fitted_columns(loaded: LoadedModel) -> list[str] | None:
    """The columns a model without input signature was fitted on (``feature_names_in_`` of the
    flavor's model: scikit-learn's, a pipeline's, XGBoost's sklearn API), read once at load. A
    model fitted on a DataFrame may select its columns by name (a ``ColumnTransformer``), so
    it is given one, as ``mlflow models serve`` gives it; ``None`` with a signature (which
    decides) or for a model fitted on an array (which keeps getting one)."""
    if loaded.schema is not None:
        return None
    names = getattr(loaded.raw, "feature_names_in_", None)
    return [str(name) for name in names] if names is not None and len(names) else None


def mlflow_exception() -> type[Exception]:
    """MLflow's exception class (imported with the model, so a module lookup here)."""
    return sys.modules["mlflow.exceptions"].MlflowException


def _keep_mlflow_out_of_the_working_directory() -> None:
    """Loading a model makes MLflow open its tracking store, by default ``./mlruns``: in a
    read-only image that fails, elsewhere it litters. Without ``MLFLOW_TRACKING_URI`` it goes
    under the temporary directory instead, and MLflow tracing is turned off: its traces would
    land in that folder, which nobody reads, and re-enabling it after ``load_model`` (which
    MLflow does) costs each process about 0.4 s CPU."""
    import os
    import tempfile

    import mlflow

    if not os.environ.get("MLFLOW_TRACKING_URI"):
        mlflow.set_tracking_uri((Path(tempfile.gettempdir()) / "modelshelf-mlruns").as_uri())
        mlflow.tracing.disable()


def _load_pyfunc_and_raw(info: Any, model_dir: Path, uri: str) -> tuple[Any, Any]:
    """The pyfunc model (``None`` without a ``python_function`` flavor, as for a scaler) and the
    flavor's own model object (``None`` when the flavor does not expose one)."""
    import mlflow.pyfunc

    if "python_function" in info.flavors:
        # Our own requirements check (unmet_requirements) replaces MLflow's slower one.
        with _without_xgb_extension_warning(info.flavors):
            pyfunc = mlflow.pyfunc.load_model(str(model_dir), suppress_warnings=True)
        try:
            return pyfunc, pyfunc.get_raw_model()
        except (NotImplementedError, AttributeError):
            return pyfunc, None
    for flavor in info.flavors:
        try:
            module = importlib.import_module(f"mlflow.{flavor}")
        except ImportError:
            continue
        if callable(getattr(module, "load_model", None)):
            with _without_xgb_extension_warning(info.flavors):
                return None, module.load_model(str(model_dir))
    raise ModelLoadError(
        uri, f"no flavor of {sorted(info.flavors)} can be loaded by this server's mlflow"
    )


#: What XGBoost says of a model file named ``model.xgb``, MLflow's name for its default
#: ``model_format="xgb"``: XGBoost reads the format from the file's content whatever its name
#: (the same model as from a buffer), so it is no news about the model.
_XGB_EXTENSION_WARNING = r"(?s).*Unknown file format: `xgb`\. Using \w+ \(`\w+`\) as a guess"


@contextlib.contextmanager
def _without_xgb_extension_warning(flavors: dict[str, Any]) -> Iterator[None]:
    """Loading, without XGBoost's warning about the ``.xgb`` extension when the MLmodel file
    records that MLflow saved the model so (every xgboost-flavor model by default: it was a
    misleading WARNING at each start); every other warning stays."""
    xgboost_flavor = flavors.get("xgboost") or {}
    if xgboost_flavor.get("model_format") != "xgb":
        yield
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_XGB_EXTENSION_WARNING, category=UserWarning)
        yield
