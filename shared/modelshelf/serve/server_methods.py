"""What each server class offers the protocols: its methods by name, their output names, its
Seldon metadata, and whether its ``predict`` takes MLflow's ``params``.

The configured method is always the server's own ``predict`` (the call the Seldon protocol makes);
our servers' other methods are built from what they loaded: scikit-learn's and an MLflow flavor
model's methods, XGBoost's ``build_method``, LightGBM's ``predict`` options. A user's class
offers ``predict`` only.

This reaches into our servers' loaded state (``ModelServer.method`` / ``transform_method``,
``ModelServer._call_state``, ``XGBoostServer.booster`` for XGBoost's ``LoadedModel``), all inside
modelshelf.
"""

from __future__ import annotations

import inspect
import logging
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from modelshelf.fitted_columns import learnt_column_dtypes

#: Methods an output name may choose, in the order metadata lists them.
METHOD_NAMES = (
    "predict",
    "predict_proba",
    "decision_function",
    "predict_log_proba",
    "transform",
    "predict_margin",
    "predict_contribs",
    "predict_raw",
    "predict_contrib",
    "predict_leaf",
)
#: Methods with one column per class.
CLASS_METHODS = ("predict_proba", "predict_log_proba", "decision_function")

ServedCall = Callable[[Any, Any], Any]
logger = logging.getLogger(__name__)


def seldon_metadata(user_model: Any) -> dict[str, Any]:
    init = getattr(user_model, "init_metadata", None)
    if not callable(init):
        return {}
    from seldon_core.user_model import SeldonNotImplementedError

    try:
        found = init()
    except (NotImplementedError, SeldonNotImplementedError):
        return {}
    return found if isinstance(found, dict) else {}


def configured_method(user_model: Any) -> str:
    method = getattr(user_model, "method", None)
    name = getattr(method, "name", None) or getattr(user_model, "method_name", None)
    return str(name) if name in METHOD_NAMES else "predict"


def method_callers(user_model: Any, default: str) -> dict[str, ServedCall]:
    """Each method an output name may choose, as ``call(X, names)``; the configured one is the
    server's own ``predict`` (exactly the Seldon protocol's call)."""
    callers: dict[str, ServedCall] = {default: _predict_caller(user_model)}
    kind = type(user_model).__mro__
    builders = {
        "SKLearnServer": _sklearn_callers,
        "XGBoostServer": _xgboost_callers,
        "LightGBMServer": _lightgbm_callers,
        "MLFlowServer": _mlflow_callers,
    }
    for cls in kind:
        builder = builders.get(cls.__name__)
        if builder is not None and getattr(user_model, "model", None) is not None:
            for name, call in builder(user_model).items():
                callers.setdefault(name, call)
            break
    return {name: callers[name] for name in METHOD_NAMES if name in callers}


def _predict_caller(user_model: Any) -> ServedCall:
    predict = getattr(user_model, "predict", None)
    if not callable(predict):  # a predict_raw-only class: seldon-core serves it, on its protocol
        from modelshelf.request_errors import RequestRefusedError

        message = (
            f"{type(user_model).__name__} has no predict(X, names), only Seldon's predict_raw: "
            "send Seldon protocol requests (/api/v1.0/predictions)"
        )

        def refuse(X: Any, names: Any) -> Any:
            raise RequestRefusedError(message, 501, "MICROSERVICE_NOT_IMPLEMENTED")

        return refuse

    def call(X: Any, names: Any) -> Any:
        return predict(X, names)

    return call


class _LazyCall:
    """A method built on its first request (building may verify a fast path: not at start)."""

    def __init__(self, build: Callable[[], ServedCall]) -> None:
        self.build = build
        self.built: ServedCall | None = None

    def __call__(self, X: Any, names: Any) -> Any:
        if self.built is None:
            self.built = self.build()
        return self.built(X, names)


def _served(server: Any, method: Any, read: Callable[[Any, Any], Any] | None = None) -> ServedCall:
    read = read or server.model_input

    def call(X: Any, names: Any) -> Any:
        return server.model_output(server.serve(method, read(X, names), X))

    return call


def _sklearn_callers(server: Any) -> dict[str, ServedCall]:
    def builder(name: str) -> Callable[[], ServedCall]:
        return lambda: _served(server, _sklearn_method(server, name))

    return {name: _LazyCall(builder(name)) for name in _sklearn_method_names(server)}


def _sklearn_method_names(server: Any) -> list[str]:
    from modelshelf.frameworks import sklearn as framework

    return [name for name in framework.METHODS if callable(getattr(server.model, name, None))]


def _sklearn_method(server: Any, name: str) -> Any:
    """The served methods as the base class loaded them (accelerated where verified), any
    other by the estimator's own call."""
    from modelshelf.server import Method, output_names

    for method in (server.method, server.transform_method):
        if method is not None and method.name == name:
            return method
    return Method(name, getattr(server.model, name), output_names(server.model, name))


def _xgboost_callers(server: Any) -> dict[str, ServedCall]:
    from modelshelf.frameworks.xgboost._description import default_feature_names
    from modelshelf.frameworks.xgboost._methods import (
        METHODS,
        PROBABILITY_OBJECTIVES,
        LoadedModel,
        build_method,
    )

    description = server.description
    loaded = LoadedModel(
        booster=server.booster,
        objective=description["objective"],
        num_class=description["num_class"],
        missing=server.missing,
        classes=getattr(server.estimator, "classes_", None),
        class_names=server.class_labels,
        feature_names=server.feature_names or default_feature_names(server.n_features),
        linear=description["booster"] == "gblinear",
    )

    def builder(name: str) -> Callable[[], ServedCall]:  # serve() sets the OpenMP threads
        return lambda: _served(server, build_method(name, loaded))

    return {
        name: _LazyCall(builder(name))
        for name in METHODS
        if name != "predict_proba" or description["objective"] in PROBABILITY_OBJECTIVES
    }


def _lightgbm_callers(server: Any) -> dict[str, ServedCall]:
    """LightGBM's methods (``predict_raw``, ``predict_contrib``, ``predict_leaf``, and
    ``predict_proba`` for a classifier) as LightGBMServer builds its configured one."""

    def builder(name: str) -> Callable[[], ServedCall]:
        return lambda: _served(server, _lightgbm_method(server, name))

    return {name: _LazyCall(builder(name)) for name in _lightgbm_method_names(server)}


def _lightgbm_method_names(server: Any) -> list[str]:
    return [name for name in _lightgbm_methods() if name != "predict_proba" or server.classes]


def _lightgbm_method(server: Any, name: str) -> Any:
    from modelshelf.server import Method

    if server.method is not None and server.method.name == name:
        return server.method
    return Method(name, server._call(name), server._output_names(name))


def probed_methods(server: Any) -> dict[str, Any]:
    """Each method a V2 output may name, as the ``Method`` its call serves, for the servers
    whose outputs are described from a probe call at load (``serve.output_probe``):
    scikit-learn's and LightGBM's. Empty for any other."""
    for cls in type(server).__mro__:
        if cls.__name__ == "SKLearnServer":
            return {n: _sklearn_method(server, n) for n in _sklearn_method_names(server)}
        if cls.__name__ == "LightGBMServer":
            return {n: _lightgbm_method(server, n) for n in _lightgbm_method_names(server)}
    return {}


def _mlflow_callers(server: Any) -> dict[str, ServedCall]:
    from modelshelf.frameworks.mlflow._server import METHODS
    from modelshelf.server import Method, output_names

    raw = server.raw_model
    found = {}
    for name in METHODS:
        call = getattr(raw, name, None)
        if name != "predict" and callable(call):
            found[name] = _served(server, Method(name, call, output_names(raw, name)))
    return found


def reads_records(user_model: Any) -> bool:
    """Whether the server reads Seldon's ``jsonData`` records itself (a modelshelf server:
    matched to its feature names, refused by a model without them)."""
    return any(cls.__name__ == "ModelServer" for cls in type(user_model).__mro__)


def is_mlflow_server(user_model: Any) -> bool:
    """Whether the class is (or extends) our MLFlowServer, which answers MLflow's scoring
    protocol as ``mlflow models serve`` does."""
    return any(cls.__name__ == "MLFlowServer" for cls in type(user_model).__mro__)


def as_returned_caller(user_model: Any) -> Callable[..., Any] | None:
    """An MLflow server's method without its conversion of the result to an array, as
    ``call(X, names, params=None)``: with params, the method its ``read_request`` makes of
    them (checked against the signature), so a DataFrame answer stays one with params too."""
    if not is_mlflow_server(user_model):
        return None
    server = user_model

    def call(X: Any, names: Any, params: dict[str, Any] | None = None) -> Any:
        if params is None:
            return server.serve(server.method, server.model_input(X, names), X)
        method, model_input = server.read_request(X, names, None, params)
        return server.serve(method, model_input, X)

    return call


def answer_columns(user_model: Any) -> dict[str, str]:
    """The columns (name -> V2 datatype) an MLflow server's ``predict`` answers as a DataFrame,
    from its output signature, read at load; empty for every other server."""
    found = getattr(user_model, "answer_columns", None) if is_mlflow_server(user_model) else None
    return dict(found) if isinstance(found, dict) else {}


def takes_params(user_model: Any) -> bool:
    """Whether the server's ``predict`` takes MLflow's inference ``params``: it has the
    parameter and, for a modelshelf server (whose base ``predict`` has it for all), the class
    says it serves them (``ModelServer.serves_params``)."""
    predict = getattr(user_model, "predict", None)
    if not getattr(user_model, "serves_params", True) or not callable(predict):
        return False
    try:
        return "params" in inspect.signature(predict).parameters
    except (TypeError, ValueError):
        return False


def output_names_of(user_model: Any, data: Any) -> list[str] | None:
    """The names of the columns of the answer just given, where the server knows them."""
    state = getattr(user_model, "_call_state", None)
    if state is not None:  # a modelshelf server: what its last call in this thread named
        names = getattr(state, "output_names", None)
        return list(names) if names else None
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(data, pd.DataFrame):
        return [str(c) for c in data.columns]
    names = getattr(user_model, "class_names", None)
    if callable(names):
        try:
            names = names()
        except NotImplementedError:
            return None
        except Exception as exc:
            from seldon_core.user_model import SeldonNotImplementedError

            if isinstance(exc, SeldonNotImplementedError):  # seldon-core's "no names"
                return None
            from modelshelf.errors import ServerFaultError

            raise ServerFaultError(
                f"{type(user_model).__name__}.class_names() failed: {type(exc).__name__}: {exc} "
                "(it names the output's columns; raise NotImplementedError where there are none)"
            ) from exc
    shape = np.shape(data)
    if isinstance(names, list | tuple) and len(shape) == 2 and len(names) == shape[1] > 0:
        return [str(n) for n in names]
    return None


def check_class_names(user_model: Any) -> None:
    """Call a user class's ``class_names()`` once, at load. If it raises (other than "not
    implemented"), say so in one WARNING and wrap it: while it raises, answers carry no
    column names (seldon-core's ``t:0``, ``t:1``…) instead of each being a 500 (what
    seldon-core's wrapper answers). A ``class_names`` that works at load is left as it is:
    nothing is added to a good class's requests. Our servers' own is per-call state."""
    from seldon_core.user_model import SeldonNotImplementedError

    from modelshelf.server import ModelServer

    method = getattr(user_model, "class_names", None)
    if isinstance(user_model, ModelServer) or not inspect.ismethod(method):
        return
    try:
        method()
        return
    except (NotImplementedError, SeldonNotImplementedError):
        return
    except Exception as exc:
        logger.warning(
            "%s.class_names() raised %s: %s when called at load; while it raises, answers "
            "carry no column names (t:0, t:1…) instead of failing",
            type(user_model).__name__,
            type(exc).__name__,
            exc,
        )

    def class_names(self: Any) -> Any:
        try:
            return method()
        except (NotImplementedError, SeldonNotImplementedError):
            raise
        except Exception as exc:
            logger.debug("class_names() failed: %s: %s", type(exc).__name__, exc)
            raise SeldonNotImplementedError("class_names() failed") from exc

    user_model.class_names = class_names.__get__(user_model)


def known_output_names(user_model: Any, method: str) -> list[str] | None:
    """Column names of ``method``'s output known without a call (metadata)."""
    served = getattr(user_model, "method", None)
    if getattr(served, "name", None) == method and getattr(served, "output_names", None):
        return [str(n) for n in served.output_names]
    if any(cls.__name__ == "LightGBMServer" for cls in type(user_model).__mro__):
        named = user_model._output_names(method) if method in _lightgbm_methods() else None
        return [str(n) for n in named] if named else None
    model = getattr(user_model, "raw_model", None) or getattr(user_model, "model", None)
    if method in CLASS_METHODS:
        classes = getattr(model, "classes_", None)
        binary_scores = method == "decision_function" and np.size(classes) == 2
        if classes is not None and np.ndim(classes) == 1 and not binary_scores:
            return [str(c) for c in classes]
    return None


def _lightgbm_methods() -> Any:
    """LightGBM's ``predict`` options (imported when a LightGBM server asks)."""
    from modelshelf.frameworks.lightgbm import OPTIONS

    return OPTIONS


def input_datatype(user_model: Any) -> str:
    return "BYTES" if getattr(user_model, "takes_text", False) else "FP64"


def column_datatypes(user_model: Any, datatype_of: Callable[[Any], str]) -> dict[str, str] | None:
    """For a model that takes its input column by column -- a scikit-learn
    ``ColumnTransformer``, at the start of a pipeline or alone -- the V2 datatype of each
    column its encoders reveal (``fitted_columns``); strings are ``BYTES``. Columns it does
    not reveal are absent (the caller's default: numbers). ``None`` for any other model: it
    takes one array, named columns or not (unless the server names its text columns:
    ``text_input_columns``)."""
    found = learnt_column_dtypes(getattr(user_model, "model", None))
    if found is None:
        # A server that reads text columns itself (XGBoostServer's categories) names them.
        text = getattr(user_model, "text_input_columns", None)
        return dict.fromkeys(text, "BYTES") if text else None
    return {
        name: "BYTES" if dtype.kind in "OUS" else datatype_of(dtype)
        for name, dtype in found.items()
    }


def fitted_column_datatypes(
    user_model: Any, names: list[str] | None, datatype_of: Callable[[Any], str]
) -> dict[str, str] | None:
    """For a server whose model takes named columns (fitted on a DataFrame: its
    ``column_dtypes``, set at load) the V2 datatype of each of ``names`` (text ``BYTES``);
    ``None`` for any other, or when ``names`` are not its columns."""
    dtypes = getattr(user_model, "column_dtypes", None)
    if not isinstance(dtypes, dict) or not names or set(names) != set(dtypes):
        return None
    return {n: "BYTES" if d.kind in "OUS" else datatype_of(d) for n, d in dtypes.items()}
