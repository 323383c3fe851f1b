"""MLflow models: any flavor through ``mlflow.pyfunc``, plus the flavor's own model object for the
methods pyfunc does not offer (``predict_proba``, ``decision_function``, ``transform``).

The MLmodel signature decides the input form (``xtype=auto``: a DataFrame in the signature's
column order when it names columns, else an array) and names the outputs; metadata comes from the
MLmodel file without loading the model. The model's own packages are installed beforehand by the
environment builder (``before-run``); ``servers/mlflowserver/MLFlowServer.py`` activates that
folder before this module is imported.

Start-up: ``MLFlowServer()`` runs in seldon-core's parent process, before it forks the REST
workers and the gRPC child, and imports there what loading will need (MLflow, a local model's
scikit-learn), once for all of them. An sklearn-flavor pickle without signature needs nothing of
MLflow and is served without importing it.

Per request: an sklearn-flavor model's methods are called directly (pyfunc's ``predict_fn``), as
verified numpy closed forms where scikit-learn has one, behind MLflow's own signature check when
the model has a signature; other flavors go through ``pyfunc.predict``.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import pickle
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from modelshelf import metadata as md
from modelshelf.environment.model_location import model_folder, registered_model
from modelshelf.errors import BadRequestError, ConfigurationError, ModelLoadError, ServerFaultError
from modelshelf.inputs import as_frame
from modelshelf.server import Method, ModelServer

logger = logging.getLogger(__name__)

XTYPES = ("auto", "ndarray", "DataFrame")
SIGNATURE = "the model's signature"  # how input errors name the columns' source
METHODS = ("predict", "predict_proba", "decision_function", "transform", "predict_log_proba")
_CLASS_OUTPUTS = ("predict_proba", "predict_log_proba", "decision_function")
_MLFLOW_TO_TENSOR_TYPE = {
    "boolean": "BOOL",
    "integer": "INT32",
    "long": "INT64",
    "float": "FP32",
    "double": "FP64",
    "string": "BYTES",
    "binary": "BYTES",
    "datetime": "BYTES",
}
_MAX_MESSAGE = 2000
#: Flavors whose framework is imported in seldon's parent process (``__init__``), so the REST
#: workers and the gRPC child share one import; their import starts no threads and no GPU.
_FORK_SAFE_FRAMEWORKS = {
    "sklearn": "modelshelf.frameworks.sklearn_closed_form",  # scikit-learn and its fast path
    "xgboost": "xgboost",
}
#: MLflow column types whose pandas dtype, when the request already has it, MLflow's schema
#: enforcement leaves unchanged (so it can be skipped for such a frame).
_EXACT_DTYPES = {"double": "float64", "float": "float32", "long": "int64", "integer": "int32"}


class ModelEnvironmentWarning(UserWarning):
    """The model asks for a package (or Python) this server process does not have."""


def import_mlflow_before_fork() -> None:
    """Import ``mlflow.pyfunc``, e.g. in seldon-core's parent process before it forks the REST
    workers and the gRPC child: the ~2 s CPU import is then shared copy-on-write instead of
    repeated in each. MLflow's telemetry (a thread fetching a config over the network at import)
    is off unless ``MLFLOW_DISABLE_TELEMETRY`` is set: a model server makes no calls home, and
    no thread runs across the fork."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow.pyfunc  # noqa: F401


class MLFlowServer(ModelServer):
    """Serves an MLflow model (``MLmodel`` folder, ``s3://``/``gs://``, ``models:/``, ``runs:/``).

    Parameters: ``model_uri``; ``xtype`` (``auto``, ``ndarray`` or ``DataFrame``); ``method``
    (alias ``predict_method``): ``predict`` through pyfunc, or a method of the flavor's model.
    """

    framework_packages = ("mlflow", "mlflow-skinny", "numpy", "pandas", "scikit-learn", "xgboost")
    #: transform_input / transform_output (the base's) call the flavor's ``transform``, so a
    #: scaler logged with ``mlflow.sklearn`` serves as (OUTPUT_)TRANSFORMER.
    serves_transform = True

    def __init__(
        self, model_uri: str, xtype: str = "auto", method: str = "", predict_method: str = ""
    ) -> None:
        super().__init__(model_uri)
        if xtype not in XTYPES:
            raise ConfigurationError("xtype", xtype, "one of " + ", ".join(XTYPES))
        if method and predict_method and method != predict_method:
            raise ConfigurationError(
                "predict_method", predict_method, f"the same as method ({method!r}), or unset"
            )
        chosen = method or predict_method or "predict"
        if chosen not in METHODS:
            raise ConfigurationError("method", chosen, "one of " + ", ".join(METHODS))
        self.xtype = xtype
        self.method_name = chosen
        self.method: Method | None = None
        self.raw_model: Any = None  # the flavor's own model object (pyfunc's is self.model)
        self.columns: list[str] | None = None
        self.as_frame = xtype == "DataFrame"
        self._import_framework_of_local_model()

    def _import_framework_of_local_model(self) -> None:
        """Import what loading will need, here in seldon-core's parent process (before it forks)
        so that the REST workers and the gRPC child share one import: the framework of a local
        model's fork-safe flavor, and MLflow unless the model is served without it
        (``_plain_sklearn_pickle``). Only reads the MLmodel file of a local folder; a remote
        model is not fetched here (MLflow is imported for it)."""
        path = Path(self.model_uri.removeprefix("file://"))
        try:
            mlmodel = yaml.safe_load((path / "MLmodel").read_text()) or {}
            flavors = mlmodel.get("flavors") or {}
        except (OSError, yaml.YAMLError, AttributeError):
            mlmodel, flavors = None, {}
        for flavor in flavors:
            package = _FORK_SAFE_FRAMEWORKS.get(flavor)
            if package and package not in sys.modules:
                # A missing framework: load() gives the import error.
                with contextlib.suppress(ImportError):
                    importlib.import_module(package)
        if mlmodel is None or _plain_sklearn_pickle(mlmodel, path) is None:
            import_mlflow_before_fork()

    @property
    def model_dir(self) -> Path:
        """Local, storage URIs and MLflow registry/run URIs, fetched once into the shared cache."""
        if self._model_dir is None:
            self._model_dir = model_folder(self.model_uri)
        return self._model_dir

    # ---------------------------------------------------------------- loading

    def load_model(self, model_dir: Path) -> None:
        if not (model_dir / "MLmodel").is_file():
            raise ModelLoadError(self.model_uri, f"no MLmodel file in {model_dir}")
        try:
            mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            path = model_dir / "MLmodel"
            raise ModelLoadError(self.model_uri, f"cannot read {path}: {exc}") from exc
        pickled = _plain_sklearn_pickle(mlmodel, model_dir)
        if pickled is not None:  # what pyfunc.load_model would do for this model, without MLflow
            with pickled.open("rb") as handle:
                raw = pickle.load(handle)
            pyfunc, schema, output_schema = None, None, None
            conf = mlmodel["flavors"]["python_function"]
        else:
            from mlflow.models import Model

            import_mlflow_before_fork()  # a no-op when the parent process did it
            _keep_mlflow_out_of_the_working_directory()
            info = Model.load(str(model_dir))
            pyfunc, raw = _load_pyfunc_and_raw(info, model_dir, self.model_uri)
            schema, output_schema = info.get_input_schema(), info.get_output_schema()
            conf = info.flavors.get("python_function") or {}
        flavor = conf.get("loader_module")
        if schema is not None and not schema.is_tensor_spec() and schema.has_input_names():
            self.columns = [str(n) for n in schema.input_names()]
        self.as_frame = self.xtype == "DataFrame" or (self.xtype == "auto" and bool(self.columns))
        self.model = pyfunc if pyfunc is not None else raw
        self.raw_model = raw
        name = self.method_name
        columns = self.columns if self.as_frame else None

        def served(method: str, own: Any) -> Any:
            if flavor != "mlflow.sklearn":
                return own
            return _closed_form_or(own, raw, method, columns)

        direct = _direct_predict(conf, raw)
        if name == "predict" and pickled is not None and direct is None:
            wanted = conf.get("predict_fn") or "predict"
            raise ModelLoadError(self.model_uri, f"{type(raw).__name__} has no {wanted} method")
        if name == "predict" and (pyfunc is not None or direct is not None):
            output_names = _schema_names(output_schema)
            if direct is None:
                self.method = Method("predict", self._pyfunc_predict, output_names)
            else:
                direct = served(conf.get("predict_fn") or "predict", direct)
                checked = _signature_checked(direct, schema, flavor)
                self.method = Method("predict", checked, output_names)
        else:
            if name == "predict" and not callable(getattr(raw, "predict", None)):
                name = "transform"  # a flavor without pyfunc, e.g. a scaler: serve what it does
            call = getattr(raw, name, None)
            if not callable(call):
                kind = type(raw).__name__ if raw is not None else "this flavor's pyfunc model"
                raise ConfigurationError("method", name, f"predict, or a method {kind} has")
            output_names = _class_names(raw, name) if name != "transform" else _transform_names(raw)
            call = served(name, call)
            self.method = Method(name, _signature_checked(call, schema, flavor), output_names)
        transform = getattr(raw, "transform", None)
        if callable(transform):
            transform = served("transform", transform)
            self.transform_method = Method(
                "transform", _signature_checked(transform, schema, flavor), _transform_names(raw)
            )
        for text in _unmet_requirements(model_dir):
            warnings.warn(text, ModelEnvironmentWarning, stacklevel=1)

    def _pyfunc_predict(self, model_input: Any) -> Any:
        try:
            return self.model.predict(model_input)
        except _mlflow_exception() as exc:
            message = exc.message[:_MAX_MESSAGE]
            if exc.error_code in ("INVALID_PARAMETER_VALUE", "BAD_REQUEST"):
                raise BadRequestError(message) from exc
            raise ServerFaultError(f"predict failed: {message}") from exc

    # ---------------------------------------------------------------- metadata

    def init_metadata(self) -> dict[str, Any]:
        """``metadata.yaml`` if the folder has one, else the MLmodel file: no model load needed."""
        from_file = md.read_metadata_file(self.model_dir)
        found = from_file if from_file is not None else self.describe_mlmodel()
        custom = {f"{name} version": version for name, version in self.versions().items()}
        return md.with_custom(found, custom)

    def describe_mlmodel(self) -> dict[str, Any]:
        """Name, version, inputs and outputs (names, types, shapes) from the MLmodel file."""
        path = self.model_dir / "MLmodel"
        try:
            mlmodel = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ModelLoadError(self.model_uri, f"cannot read {path}: {exc}") from exc
        signature = mlmodel.get("signature") or {}
        flavors = [f for f in mlmodel.get("flavors") or {} if f != "python_function"]
        registered = registered_model(self.model_dir)
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
            "method": self.method_name,
        }
        found["custom"] = {k: str(v) for k, v in custom.items() if v}
        return found

    # ---------------------------------------------------------------- requests

    def predict(self, X: Any, features_names: Any = None, meta: Any = None) -> Any:
        model_input = self.model_input(X, features_names)
        return self.model_output(self.serve(self.method, model_input))  # type: ignore[arg-type]

    def model_kind(self) -> str:
        """The flavor's model class (``StandardScaler``…), not pyfunc's wrapper."""
        return type(self.raw_model).__name__ if self.raw_model is not None else "this model"

    def model_output(self, result: Any) -> Any:
        """Arrays for seldon-core; a DataFrame's columns become this response's names."""
        if isinstance(result, np.ndarray):
            return result
        if isinstance(result, list | tuple):
            return np.asarray(result)
        pd = sys.modules.get("pandas")  # a pandas result means pandas is imported
        if pd is not None and isinstance(result, pd.DataFrame):
            self._call_state.output_names = [str(c) for c in result.columns]
            return result.to_numpy()
        if pd is not None and isinstance(result, pd.Series):
            return result.to_numpy()
        return result

    def model_input(self, X: Any, names: Any) -> Any:
        """The request's payload as the signature wants it: DataFrame or array."""
        if isinstance(X, bytes):
            X = X.decode("utf-8", errors="replace")
        if isinstance(X, str):
            return [X] if not self.as_frame else as_frame([[X]], names, self.columns, SIGNATURE)
        if self.as_frame:
            return as_frame(X, names, self.columns, SIGNATURE)
        if isinstance(X, dict):
            raise BadRequestError(
                "this model takes an array (its signature names no columns), got jsonData; send "
                "data.ndarray or data.tensor, or set xtype=DataFrame"
            )
        try:
            arr = np.asarray(X)
        except ValueError as exc:
            raise BadRequestError(f"the input must be a rectangular array: {exc}") from exc
        if arr.size == 0:
            raise BadRequestError(f"the input is empty (shape {list(arr.shape)})")
        return arr


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


def _signature_checked(call: Any, schema: Any, flavor: str | None = None) -> Any:
    """``call`` behind MLflow's own signature check, as pyfunc's ``predict`` has it: inputs are
    rejected (and converted) exactly as ``predict`` does. A DataFrame that already has the
    signature's columns, in order, with the dtypes MLflow would convert them to, passes
    unchanged without the check (it is most of the time of a one-row request)."""
    if schema is None:
        return call
    from mlflow.exceptions import MlflowException
    from mlflow.models.utils import _enforce_schema  # MLflow's checker, which pyfunc uses

    already_conforms = _conforming_frame_test(schema)

    def checked(model_input: Any) -> Any:
        if not already_conforms(model_input):
            try:
                model_input = _enforce_schema(model_input, schema, flavor)
            except MlflowException as exc:
                raise BadRequestError(
                    "the input does not match the model's signature: " + exc.message[:_MAX_MESSAGE]
                ) from exc
        return call(model_input)

    return checked


def _conforming_frame_test(schema: Any) -> Any:
    """A test of whether an input is a DataFrame that MLflow's schema enforcement would return
    as it is: exactly the schema's columns, all required, in order, each of the numeric dtype
    the schema names. Any other schema gets a test that is always false."""
    names: list[str] = []
    dtypes: list[np.dtype] = []
    if schema.is_tensor_spec() or not schema.has_input_names():
        return lambda model_input: False
    for spec in schema.inputs:
        dtype = _EXACT_DTYPES.get(str(getattr(spec.type, "name", "")))
        if dtype is None or not getattr(spec, "required", True) or spec.name is None:
            return lambda model_input: False
        names.append(str(spec.name))
        dtypes.append(np.dtype(dtype))
    import pandas as pd

    def conforms(model_input: Any) -> bool:
        return (
            type(model_input) is pd.DataFrame
            and list(model_input.columns) == names
            and list(model_input.dtypes) == dtypes
        )

    return conforms


def _closed_form_or(own: Any, model: Any, method: str, columns: list[str] | None) -> Any:
    """An sklearn-flavor model's ``method`` as a numpy closed form, when ``verified_closed_form``
    finds one equal to scikit-learn's on its probe rows (a one-row request then skips
    scikit-learn's ~200 µs of input validation; the server validated the input already); else
    scikit-learn's own ``own``. ``columns``: the DataFrame columns requests arrive with."""
    from modelshelf.frameworks.sklearn_closed_form import verified_closed_form

    kind = type(model).__name__
    fitted = getattr(model, "feature_names_in_", None)
    if columns is not None and fitted is not None and [str(n) for n in fitted] != columns:
        logger.info("%s.%s: scikit-learn's own call (fitted on other columns)", kind, method)
        return own
    found = verified_closed_form(model, method, getattr(model, "n_features_in_", None), columns)
    if found.call is None:
        log = logger.warning if found.refused else logger.info
        log("%s.%s: scikit-learn's own call (fast path: %s)", kind, method, found.note)
        return own
    logger.info("%s.%s: %s", kind, method, found.note)
    return found.call


def _direct_predict(conf: dict[str, Any], raw: Any) -> Any:
    """The sklearn flavor's own ``predict_fn`` (what its pyfunc wrapper calls after the schema
    check), given the ``python_function`` flavor's configuration; ``None`` for other flavors,
    which go through ``pyfunc.predict``."""
    if conf.get("loader_module") != "mlflow.sklearn" or raw is None:
        return None
    call = getattr(raw, conf.get("predict_fn") or "predict", None)
    return call if callable(call) else None


def _plain_sklearn_pickle(mlmodel: dict[str, Any], model_dir: Path) -> Path | None:
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


def _mlflow_exception() -> type[Exception]:
    """MLflow's exception class (imported with the model, so a module lookup here)."""
    return sys.modules["mlflow.exceptions"].MlflowException


def _unmet_requirements(model_dir: Path) -> list[str]:
    """The model's requirements this process lacks (logged at load, as MLflow does)."""
    from modelshelf.environment import unmet_requirements
    from modelshelf.environment.errors import EnvironmentSpecError

    try:
        return unmet_requirements(model_dir)
    except EnvironmentSpecError as exc:
        return [f"could not check the model's requirements: {exc}"]


def _load_pyfunc_and_raw(info: Any, model_dir: Path, uri: str) -> tuple[Any, Any]:
    """The pyfunc model (``None`` without a ``python_function`` flavor, as for a scaler) and the
    flavor's own model object (``None`` when the flavor does not expose one)."""
    import mlflow.pyfunc

    if "python_function" in info.flavors:
        # Our own requirements check (_unmet_requirements) replaces MLflow's slower one.
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
            return None, module.load_model(str(model_dir))
    raise ModelLoadError(
        uri, f"no flavor of {sorted(info.flavors)} can be loaded by this server's mlflow"
    )


def _schema_names(schema: Any) -> list[str] | None:
    if schema is None or schema.is_tensor_spec() or not schema.has_input_names():
        return None
    return [str(n) for n in schema.input_names()]


def _class_names(model: Any, method: str) -> list[str] | None:
    if method not in _CLASS_OUTPUTS:
        return None
    classes = getattr(model, "classes_", None)
    if classes is None or np.ndim(classes) != 1:
        return None
    if method == "decision_function" and len(classes) == 2:
        return None
    return [str(c) for c in classes]


def _transform_names(model: Any) -> list[str] | None:
    try:
        return [str(n) for n in model.get_feature_names_out()]
    except Exception:  # many transformers cannot name their outputs
        return None


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
            datatype = _MLFLOW_TO_TENSOR_TYPE.get(str(spec.get("type")), "BYTES")
            found.append({"name": name, "datatype": datatype, "shape": [-1]})
    return found
