"""The callables that serve a loaded MLflow model: its ``method`` (``predict`` through pyfunc or
the sklearn flavor's ``predict_fn``, else a method of the flavor's own model) and its
``transform``, each behind the signature check."""

from __future__ import annotations

from typing import Any

from modelshelf.errors import BadRequestError, ConfigurationError, ModelLoadError, ServerFaultError
from modelshelf.frameworks.mlflow._loading import LoadedModel, direct_predict, mlflow_exception
from modelshelf.frameworks.mlflow._signature import reason_first, schema_names, signature_checked
from modelshelf.server import Method, output_names


def served_methods(loaded: LoadedModel, name: str, uri: str) -> tuple[Method, Method | None]:
    """The ``name`` method and the ``transform`` method (``None`` when the model has none)."""
    raw, schema, conf = loaded.raw, loaded.schema, loaded.conf
    flavor = conf.get("loader_module")

    direct = direct_predict(conf, raw)
    if name == "predict" and loaded.plain_pickle and direct is None:
        wanted = conf.get("predict_fn") or "predict"
        raise ModelLoadError(uri, f"{type(raw).__name__} has no {wanted} method")
    if name == "predict" and (loaded.pyfunc is not None or direct is not None):
        outputs = schema_names(loaded.output_schema)
        if direct is None:
            method = Method("predict", _pyfunc_predict(loaded.pyfunc), outputs)
        else:
            method = Method("predict", signature_checked(direct, schema, flavor), outputs)
    else:
        if name == "predict" and not callable(getattr(raw, "predict", None)):
            name = "transform"  # a flavor without pyfunc, e.g. a scaler: serve what it does
        call = getattr(raw, name, None)
        if not callable(call):
            kind = type(raw).__name__ if raw is not None else "this flavor's pyfunc model"
            raise ConfigurationError("method", name, f"predict, or a method {kind} has")
        method = Method(name, signature_checked(call, schema, flavor), output_names(raw, name))
    transform = getattr(raw, "transform", None)
    if not callable(transform):
        return method, None
    transform = signature_checked(transform, schema, flavor)
    return method, Method("transform", transform, output_names(raw, "transform"))


def takes_params(loaded: LoadedModel, name: str) -> bool:
    """Whether the served ``name`` method is pyfunc's ``predict``, the one that takes params
    (the sklearn flavor's pyfunc ignores them; flavor methods have none)."""
    return (
        name == "predict"
        and loaded.pyfunc is not None
        and direct_predict(loaded.conf, loaded.raw) is None
    )


def _pyfunc_predict(pyfunc: Any) -> Any:
    """pyfunc's ``predict`` (with the request's params, checked already), its MLflow errors as
    400 (the input) or 500 (the model)."""

    def predict(model_input: Any, params: dict[str, Any] | None = None) -> Any:
        try:
            if params is None:
                return pyfunc.predict(model_input)
            return pyfunc.predict(model_input, params=params)
        except mlflow_exception() as exc:
            message = reason_first(exc.message)
            if exc.error_code in ("INVALID_PARAMETER_VALUE", "BAD_REQUEST"):
                raise BadRequestError(message) from exc
            raise ServerFaultError(f"predict failed: {message}") from exc

    return predict
