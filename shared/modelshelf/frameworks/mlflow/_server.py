"""``MLFlowServer``: the component. Parameters, load and metadata hand-over; the work is in the
package's private modules."""

from __future__ import annotations

import warnings
from functools import partial
from pathlib import Path
from typing import Any

from modelshelf import metadata as md
from modelshelf.environment.model_location import model_folder
from modelshelf.errors import ConfigurationError
from modelshelf.fitted_columns import ignores_extra_columns, learnt_text_columns
from modelshelf.frameworks.mlflow._description import describe_mlmodel
from modelshelf.frameworks.mlflow._loading import fitted_columns, load_mlflow_model
from modelshelf.frameworks.mlflow._methods import served_methods, takes_params
from modelshelf.frameworks.mlflow._rows import (
    FITTED,
    SIGNATURE,
    RequestReader,
    as_array,
    scoring_payload,
)
from modelshelf.frameworks.mlflow._signature import (
    answer_columns,
    column_types,
    input_names,
    optional_columns,
    params_check,
    schema_names,
    tensor_types,
)
from modelshelf.frameworks.mlflow._startup import (
    ModelEnvironmentWarning,
    import_framework_of_local_model,
    unmet_requirements,
)
from modelshelf.inputs import pandas_module
from modelshelf.server import Method, ModelServer

XTYPES = ("auto", "ndarray", "DataFrame")
METHODS = ("predict", "predict_proba", "decision_function", "transform", "predict_log_proba")


class MLFlowServer(ModelServer):
    """Serves an MLflow model (``MLmodel`` folder, ``s3://``/``gs://``, ``models:/``, ``runs:/``).

    Parameters: ``model_uri``; ``xtype`` (``auto``, ``ndarray`` or ``DataFrame``); ``method``
    (alias ``predict_method``): ``predict`` through pyfunc, or a method of the flavor's model;

    Requests are read by the signature (``RequestReader``): each column or tensor cast to its
    type; without a signature, a model fitted on a DataFrame gets one in its fitted columns.
    Params (the signature's params schema) come from a Seldon request's ``meta.params``, or
    from another protocol through ``predict(..., params=...)`` (undeclared ones dropped there,
    as ``mlflow models serve`` does). ``jsonData`` may also be written as for ``mlflow models
    serve`` (``dataframe_split``, ``dataframe_records``, ``inputs``, ``instances``, with
    ``params``).
    """

    framework_packages = ("mlflow", "mlflow-skinny", "numpy", "pandas", "scikit-learn", "xgboost")
    #: transform_input / transform_output (the base's) call the flavor's ``transform``, so a
    #: scaler logged with ``mlflow.sklearn`` serves as (OUTPUT_)TRANSFORMER.
    serves_transform = True
    #: ``predict`` takes MLflow's inference params (``read_request``).
    serves_params = True

    def __init__(
        self,
        model_uri: str,
        xtype: str = "auto",
        method: str = "",
        predict_method: str = "",
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
        #: The columns a DataFrame input is built in: the signature's, or without one those
        #: the model was fitted on (``fitted_columns``); ``None``: the request's own names.
        self.columns: list[str] | None = None
        #: Without a signature, the fitted columns the model learnt as text (a CSV body and
        #: seldon-core's rows of text keep them text); ``None`` otherwise.
        self.text_columns: frozenset[str] | None = None
        #: The input names a V2 request must use (the signature's), or ``None``: any.
        self.signature_input_names: frozenset[str] | None = None
        self.bytes_inputs: frozenset[str] = frozenset()
        #: The output signature's columns (name -> V2 datatype) when ``predict`` is pyfunc's: its
        #: DataFrame answer goes over V2 one tensor a column (``answer_columns``); else empty.
        self.answer_columns: dict[str, str] = {}
        self.as_frame = xtype == "DataFrame"
        self.reader = RequestReader(self.as_frame)
        self.check_params = params_check(None)
        self._takes_params = False
        import_framework_of_local_model(self.model_uri)

    @property
    def model_dir(self) -> Path:
        """Local, storage URIs and MLflow registry/run URIs, fetched once into the shared cache."""
        if self._model_dir is None:
            self._model_dir = model_folder(self.model_uri)
        return self._model_dir

    # ---------------------------------------------------------------- loading

    def load_model(self, model_dir: Path) -> None:
        loaded = load_mlflow_model(model_dir, self.model_uri)
        self.columns = schema_names(loaded.schema)
        self.signature_input_names = input_names(loaded.schema)
        fitted = fitted_columns(loaded) if self.xtype != "ndarray" else None
        if fitted is not None:  # no signature, fitted on a DataFrame: it gets one
            self.columns = self.feature_names = fitted  # feature_names: V2 inputs by column
            self.text_columns = learnt_text_columns(loaded.raw)
        self.as_frame = self.xtype == "DataFrame" or (self.xtype == "auto" and bool(self.columns))
        self.model = loaded.pyfunc if loaded.pyfunc is not None else loaded.raw
        self.raw_model = loaded.raw
        if loaded.pyfunc is not None or self.as_frame:
            # MLflow's pyfunc imports pandas on its first predict: done here, the import is
            # not the first request's, and its objects are frozen with the model's (imported
            # by a request, they stayed in the collector's full passes: /invocations 7 % slower).
            pandas_module()
        columns = self.columns if self.as_frame else None
        self.reader = RequestReader(
            self.as_frame,
            columns,
            column_types(loaded.schema) if self.as_frame else None,
            tensor_types(loaded.schema),
            optional_columns(loaded.schema),
            FITTED if fitted is not None else SIGNATURE,
            self.text_columns or (),
            # MLflow drops columns its signature lacks; without one, the model decides.
            ignores_extra_columns(loaded.raw) if fitted is not None else True,
        )
        #: The signature's binary columns: V2 hands their BYTES over as bytes, not text.
        self.bytes_inputs = frozenset(
            name for name, kind in (self.reader.column_types or {}).items() if kind == "binary"
        )
        self.check_params = params_check(loaded.params_schema)
        self._takes_params = takes_params(loaded, self.method_name)
        if self._takes_params:  # pyfunc's predict: a flavor's own method answers arrays
            self.answer_columns = answer_columns(loaded.output_schema)
        self.method, transform = served_methods(loaded, self.method_name, self.model_uri)
        if transform is not None:
            self.transform_method = transform
        for text in unmet_requirements(model_dir):
            warnings.warn(text, ModelEnvironmentWarning, stacklevel=1)

    # ---------------------------------------------------------------- metadata

    def init_metadata(self) -> dict[str, Any]:
        """``metadata.yaml`` if the folder has one, else the MLmodel file: no model load needed."""
        from_file = md.read_metadata_file(self.model_dir)
        found = from_file if from_file is not None else self.describe_mlmodel()
        custom = {f"{name} version": version for name, version in self.versions().items()}
        return md.with_custom(found, custom)

    def describe_mlmodel(self) -> dict[str, Any]:
        """Name, version, inputs and outputs (names, types, shapes) from the MLmodel file."""
        return describe_mlmodel(self.model_dir, self.model_uri, self.method_name)

    # ---------------------------------------------------------------- requests

    def read_request(self, X: Any, names: Any, meta: Any, params: Any) -> tuple[Method, Any]:
        """The served method on the request read by the signature (``predict`` is the base's);
        ``params`` (or a Seldon request's ``meta.params``, or a scoring payload's) checked
        against the signature's params schema and passed to pyfunc's ``predict``. Params from
        the other protocols (``params=``: V2 ``parameters``, ``/invocations``) that the schema
        does not declare are dropped, as ``mlflow models serve`` does; a Seldon request's are a
        400 naming them."""
        from_protocol = params is not None
        if params is None and type(meta) is dict:
            params = meta.get("params")
        if type(X) is dict and (scoring := scoring_payload(X, self.columns)) is not None:
            X, in_body_names, in_body = scoring
            names = in_body_names if in_body_names is not None else names
            params = in_body if params is None else params
        model_input = self.model_input(X, names)
        method: Method = self.method  # type: ignore[assignment]
        if params is not None:
            checked = self.check_params(params, ignore_undeclared=from_protocol)
            if self._takes_params:
                method = Method(
                    method.name, partial(method.call, params=checked), method.output_names
                )
        return method, model_input

    def model_kind(self) -> str:
        """The flavor's model class (``StandardScaler``…), not pyfunc's wrapper."""
        return type(self.raw_model).__name__ if self.raw_model is not None else "this model"

    def model_output(self, result: Any) -> Any:
        """Arrays for seldon-core; a DataFrame's columns become this response's names."""
        array, names = as_array(result)
        if names is not None:
            self._call_state.output_names = names
        return array

    def model_input(self, X: Any, names: Any) -> Any:
        """The request's payload as the signature wants it: DataFrame or array."""
        return self.reader.read(X, names)
