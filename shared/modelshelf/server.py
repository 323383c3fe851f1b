"""The life cycle every modelshelf server shares, written once.

``seldon-core-microservice`` builds the object in its parent process, calls ``init_metadata()``
there (and again in the gRPC child), then forks gunicorn workers that call ``load()``. So:

* ``__init__`` only records typed parameters: nothing is downloaded or unpickled there.
* ``load()`` downloads and loads once per process and is a no-op afterwards; a worker forked from a
  parent that already loaded (to derive metadata) shares that copy of the model.
* ``init_metadata()`` prefers ``metadata.yaml`` from the *downloaded* folder; without one it loads
  the model and asks the framework to describe it.
* A load failure raises ``ModelLoadError`` -- never an ``AttributeError``, which seldon-core would
  mistake for "no load method" and ignore -- so the process stops with the cause in its log.
* Request errors become ``BadRequestError`` (400) or ``ServerFaultError`` (500); nothing is
  swallowed into a ``None`` prediction.

A framework module subclasses ``ModelServer`` and only loads and describes: ``load_model`` sets
``self.model``, ``self.model_path``, ``self.feature_names`` / ``self.n_features`` and
``self.method`` (a ``Method``: the callable and its output names); ``describe_custom`` adds to
the metadata. The request contract is written here once: ``predict`` (feature names under every
name Seldon's code uses; ``read_request`` reads what else a request carries, MLflow's
``params``), request ``names`` and ``jsonData`` to the model's columns
(``model_input``), output names, the model's name, and the OpenMP thread policy after the fork
(``uses_openmp``). A server whose models can ``transform`` sets ``serves_transform`` and
``self.transform_method``: ``transform_input`` / ``transform_output`` are written here too.

The fast path is applied here too, once, after ``load_model``: with ``fast_path`` on (the
parameter every server takes, else ``MODELSHELF_FAST_PATH``, default true) each served method
is offered to ``modelshelf.accelerators.accelerate``, which returns a call verified
bit-identical to the framework's, or nothing. Framework modules never import accelerators.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from seldon_core.user_model import SeldonComponent, SeldonNotImplementedError

from modelshelf import deferred_imports, storage
from modelshelf import metadata as md
from modelshelf.errors import (
    BadRequestError,
    ConfigurationError,
    ModelLoadError,
    ModelNotReadyError,
    ModelshelfError,
    ServerFaultError,
)
from modelshelf.input_refusals import refused_input_message
from modelshelf.inputs import RowReader
from modelshelf.openmp import ProcessThreads, rows_of, single_threaded
from modelshelf.redaction import redact_uri
from modelshelf.serve.listeners import all_listening

logger = logging.getLogger(__name__)

# Exceptions a framework raises when the *input* is wrong (shape, dtype, NaN, unknown category).
INPUT_ERRORS: tuple[type[Exception], ...] = (ValueError, TypeError, KeyError, IndexError)

#: Seconds between two hand-overs of the servers' own custom metrics to seldon-core.
METRICS_INTERVAL = 1.0
#: Base methods seldon-core (or the base itself) calls. A subclass may override them only with
#: a method, and no instance may hide them: ``self.class_names = [...]`` would silently replace
#: the per-response ``class_names()``.
GUARDED_METHODS = frozenset(
    {
        "class_names",
        "predict",
        "transform_input",
        "transform_output",
        "health_status",
        "init_metadata",
        "load",
        "load_model",
        "describe_model",
        "model_input",
        "read_request",
        "model_output",
        "serve",
        "versions",
        "server_metrics",
    }
)
#: Per-class outputs, named by the model's ``classes_``.
CLASS_OUTPUT_METHODS = ("predict_proba", "predict_log_proba", "decision_function")
_TRUE_WORDS = ("true", "1", "yes", "on", "y", "t")
_FALSE_WORDS = ("false", "0", "no", "off", "n", "f")


@dataclass(frozen=True)
class Method:
    """One callable a server serves (``predict_proba``, ``transform``…) and its output's names."""

    name: str
    call: Callable[[Any], Any]
    output_names: Sequence[str] | None = None


class _HiddenStub:
    """Makes ``hasattr(server, name)`` False for a ``SeldonComponent`` stub that only raises.

    seldon-core calls each stub it finds (``predict_raw``, ``tags``...) on every request and
    catches its ``SeldonNotImplementedError``; inside a server each of those exceptions costs
    3-8 µs, as much as the model's own arithmetic on one row. A subclass that defines the
    method overrides this as usual.
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self._message = f"{owner.__name__} does not implement {name}"

    def __get__(self, obj: object, owner: type | None = None) -> Any:
        raise AttributeError(self._message)


def _request_error_blueprint() -> Any:
    """What seldon-core registers as ``model_error_handler``: on a server object, a Flask
    blueprint guarding its requests (``modelshelf.request_guard``): bodies over the size limit
    413, malformed Seldon bodies and payloads its own parsing rejects (ragged arrays) 400 rather
    than seldon-core's 500, unknown paths 404, wrong methods 405."""
    from modelshelf.request_guard import RequestGuard

    return RequestGuard()


class ModelServer(SeldonComponent):
    """Base of every modelshelf server: download, load once, metadata, health, errors."""

    #: Distributions whose versions the start-up log and the metadata report.
    framework_packages: ClassVar[tuple[str, ...]] = ("numpy",)

    #: Registered by seldon-core's Flask app: checks bodies, maps payload errors to 400.
    model_error_handler = _request_error_blueprint()

    #: Whether ``/transform-input`` and ``/transform-output`` call the model's ``transform``
    #: (``self.transform_method``). A server that leaves it False keeps seldon-core's default
    #: for them: the request's data comes back unchanged.
    serves_transform: ClassVar[bool] = False

    #: Whether the framework computes with OpenMP (XGBoost, LightGBM, HistGradientBoosting…).
    #: Then the model loads on one OpenMP thread (a worker forked from the parent would hang
    #: otherwise) and every call gets ``self.threads.for_rows(rows)`` threads
    #: (``modelshelf.openmp``).
    uses_openmp: ClassVar[bool] = False

    #: Whether ``predict``'s ``params`` (MLflow's inference params) mean something to this
    #: server (its ``read_request`` reads them). The protocols that carry params (V2
    #: ``parameters``, ``/invocations``) pass them only then; every other server answers a 400
    #: to params given to ``predict``.
    serves_params: ClassVar[bool] = False

    #: Whether each method's V2 output is described from one probe call at load
    #: (``serve.output_probe``): its datatype and shape are what a request gets (the shape
    #: also the Seldon metadata's, for an output without names).
    probes_outputs: ClassVar[bool] = False

    predict_raw = _HiddenStub()
    transform_input_raw = _HiddenStub()
    transform_output_raw = _HiddenStub()
    tags = _HiddenStub()

    def __init__(self, model_uri: str, fast_path: bool | str | None = None) -> None:
        super().__init__()
        from modelshelf.accelerators import FAST_PATH_ENV, fast_path_default

        #: Whether ``load`` offers the served methods to ``modelshelf.accelerators``: the
        #: ``fast_path`` parameter (every server takes it), else ``MODELSHELF_FAST_PATH``.
        self.fast_path = (
            bool_parameter(FAST_PATH_ENV, fast_path_default(), "environment variable")
            if fast_path is None
            else bool_parameter("fast_path", fast_path)
        )
        #: What set ``fast_path``: the parameter or the env var (the log and metadata say).
        self.fast_path_set_by = FAST_PATH_ENV if fast_path is None else "fast_path"
        #: Per served method, what serves it (``custom["fast path"]`` in the metadata).
        self.fast_paths: dict[str, str] = {}
        if not model_uri:
            raise ModelLoadError("<empty>", "parameter model_uri is required (a folder or URI)")
        self.model_uri = str(model_uri)
        self.model: Any = None
        #: What ``predict`` serves; set by ``load_model``.
        self.method: Method | None = None
        #: Set by ``load_model`` when the model has a ``transform`` (see ``serves_transform``).
        self.transform_method: Method | None = None
        #: The model file and columns, set by ``load_model``: they name the model, match the
        #: request's ``names`` / ``jsonData`` to the columns and describe the inputs.
        self.model_path: Path | None = None
        self.feature_names: list[str] | None = None
        self.n_features: int | None = None
        self.read_rows: RowReader | None = None
        #: For a model that takes named columns (fitted on a DataFrame), the dtype each column
        #: takes (V2 metadata lists one input per column); set by ``load_model``.
        self.column_dtypes: dict[str, np.dtype] | None = None
        #: Per method, the V2 datatype and shape its answer to a probe row had (``load``).
        self.probed_outputs: dict[str, tuple[str, list[int]]] = {}
        self.load_warnings: list[str] = []
        self.load_seconds: float | None = None
        self._model_dir: Path | None = None
        self._ready = False
        self._load_lock = threading.Lock()
        self._call_state = threading.local()
        self._served: dict[str, int] = {}
        self._metrics_lock = threading.Lock()
        self._metrics_sent_at = -METRICS_INTERVAL
        #: The OpenMP thread policy (``uses_openmp``); a subclass may replace it before load
        #: with one given a requested thread count (XGBoost's ``nthread``).
        self.threads: ProcessThreads | None = (
            ProcessThreads(platform=self.platform) if self.uses_openmp else None
        )

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None and "fast_path" not in inspect.signature(init).parameters:
            cls.__init__ = _taking_fast_path(init)  # type: ignore[method-assign]
        for name in GUARDED_METHODS & cls.__dict__.keys():
            if not callable(cls.__dict__[name]):
                raise TypeError(
                    f"{cls.__name__}.{name} is a {type(cls.__dict__[name]).__name__}, but "
                    f"ModelServer.{name}() is a method the server calls; define a method, or "
                    "use another name for the value"
                )

    def __setattr__(self, name: str, value: Any) -> None:
        if name in GUARDED_METHODS:
            raise TypeError(
                f"setting {type(self).__name__}.{name} would hide ModelServer.{name}(), a "
                "method the server calls; store the value under another name (output names "
                "go in Method(name, call, output_names))"
            )
        super().__setattr__(name, value)

    # ---------------------------------------------------------------- life cycle

    @property
    def model_dir(self) -> Path:
        """The local folder (or file) holding the model; downloaded on first use, once."""
        if self._model_dir is None:
            self._model_dir = storage.download(self.model_uri)
        return self._model_dir

    @property
    def ready(self) -> bool:
        return self._ready

    def load(self) -> None:
        """Download and load the model, once per process; later calls do nothing."""
        if self._ready:
            return
        with self._load_lock:
            if self._ready:
                return
            started = time.perf_counter()
            # The model and its framework live as long as the process: loaded with the
            # collector's automatic passes made rare, then collected once and frozen, kept
            # out of every later pass (a full pass walks every tracked object, and a process
            # that imported scikit-learn or XGBoost holds several hundred thousand). Done
            # before the fork, it also spares the workers' pages the copy a pass causes.
            with deferred_imports.long_lived_imports():
                self._load_and_accelerate()
            self.load_seconds = time.perf_counter() - started
            self._ready = True
            versions = ", ".join(f"{k} {v}" for k, v in self.versions().items())
            logger.info(
                "%s loaded %s in %.2f s (%s)",
                type(self).__name__,
                self.model_dir,
                self.load_seconds,
                versions,
            )

    def _load_and_accelerate(self) -> None:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                with self._parent_threads():
                    self.load_model(self.model_dir)
        except Exception as exc:  # unpickling raises anything, AttributeError included
            if self._model_dir is not None:  # downloaded, then failed: fetch anew next time
                storage.invalidate(self.model_uri)
            if isinstance(exc, ModelshelfError):
                raise
            raise ModelLoadError(self.model_uri, f"{type(exc).__name__}: {exc}") from exc
        self.accelerate_methods()
        if self.read_rows is None:
            self.read_rows = RowReader(self.feature_names, self.n_features)
        if self.probes_outputs:
            from modelshelf.serve.output_probe import probe_outputs

            with self._parent_threads():
                self.probed_outputs = probe_outputs(self)
        self.load_warnings = _unique(f"{w.category.__name__}: {w.message}" for w in caught)
        for text in self.load_warnings:
            logger.warning("while loading %s: %s", redact_uri(self.model_uri), text)

    def _parent_threads(self) -> contextlib.AbstractContextManager[None]:
        """Loading and verifying run before the fork: an OpenMP framework's on one thread (a
        forked worker hangs on a thread pool its parent started); others need no limit (and
        may lack threadpoolctl: the MLflow image's pyfunc models)."""
        return single_threaded() if self.uses_openmp else contextlib.nullcontext()

    def accelerate_methods(self) -> None:
        """With ``fast_path`` on, ``self.method`` and ``self.transform_method`` by their
        verified accelerated calls where ``modelshelf.accelerators`` has one; else as loaded."""
        self.fast_paths = {}
        for attribute in ("method", "transform_method"):
            method: Method | None = getattr(self, attribute)
            if method is None:
                continue
            if method.name in self.fast_paths:  # serves as both: accelerated once
                setattr(self, attribute, self.method)
                continue
            self.fast_paths[method.name] = f"off ({self.fast_path_set_by}=false)"
            if not self.fast_path:
                continue
            from modelshelf import accelerators

            with np.errstate(all="ignore"), self._parent_threads():
                found = accelerators.accelerate(self.model, method.name, method.call, logger)
            if found is not None:
                self.fast_paths[method.name] = found.description
                setattr(self, attribute, Method(method.name, found, method.output_names))
            else:
                self.fast_paths[method.name] = "the framework's own call"
        if not self.fast_path:
            logger.info(
                "%s: the framework's own calls (%s=false)",
                type(self).__name__,
                self.fast_path_set_by,
            )

    def health_status(self) -> dict[str, Any]:
        """Healthy only once the model is in memory (seldon's default says healthy at once)
        and, under ``modelshelf serve``, every port accepts (``serve.listeners``: gRPC's)."""
        if not self._ready or not all_listening():
            raise ModelNotReadyError()
        return {"status": "ready", "model_uri": redact_uri(self.model_uri)}

    # ---------------------------------------------------------------- framework hooks

    def load_model(self, model_dir: Path) -> None:
        """Load the framework's model from ``model_dir`` into ``self.model``."""
        raise NotImplementedError  # pragma: no cover - every server overrides it

    #: The metadata's ``platform``.
    platform: ClassVar[str] = ""

    def describe_model(self) -> dict[str, Any]:
        """Metadata derived from the loaded model: its name, ``platform``, inputs (its columns),
        outputs (the method's names, else the shape its load-time probe answered: a
        classifier's labels ``[-1]``) and ``custom`` (the method, the file, ``describe_custom``)."""
        if self.method is None:
            return {}
        names = self.method.output_names
        custom = {"method": self.method.name}
        if self.method.name in self.fast_paths:
            custom["fast path"] = self.fast_paths[self.method.name]
        if self.model_path is not None:
            custom["model file"] = self.model_path.name
        output = md.array_spec(names, len(names) if names else None)
        probed = self.probed_outputs.get(self.method.name)
        if probed is not None and "schema" not in output:
            output["schema"] = {"shape": probed[1]}
        return {
            "name": self.model_name(),
            "platform": self.platform,
            "inputs": [md.array_spec(self.feature_names, self.n_features)],
            "outputs": [output],
            "custom": {**custom, **self.describe_custom()},
        }

    def describe_custom(self) -> dict[str, str]:
        """What a framework adds to the metadata's ``custom`` (estimator, objective…)."""
        return {}

    def model_name(self) -> str:
        """The model file's name, unless it is the conventional ``model.*``: then the folder's."""
        path = self.model_path
        if path is not None and (path.stem != "model" or not self.model_dir.is_dir()):
            return path.stem
        return storage.folder_name(self.model_uri, self.model_dir)

    def check_method(self, name: str, available: Sequence[str]) -> str:
        """``name`` if the model has it; else a ``ConfigurationError`` listing what it has."""
        if name not in available:
            raise ConfigurationError(
                "method",
                name,
                f"a method {self.model_kind()} has ({', '.join(available) or 'none'})",
            )
        return name

    # ---------------------------------------------------------------- metadata

    def versions(self) -> dict[str, str]:
        """Versions of modelshelf and the framework packages in this image."""
        return md.package_versions(("modelshelf", *self.framework_packages))

    def init_metadata(self) -> dict[str, Any]:
        """``metadata.yaml`` from the downloaded folder, else what the model says of itself."""
        from_file = md.read_metadata_file(self.model_dir)
        if from_file is not None:
            found = from_file
        else:
            self.load()
            found = self.describe_model()
        custom = {f"{name} version": version for name, version in self.versions().items()}
        if self.load_warnings:
            custom["load warnings"] = " | ".join(self.load_warnings)
        return md.with_custom(found, custom)

    # ---------------------------------------------------------------- requests

    def class_names(self) -> Sequence[str]:
        """Names of the columns of the output this thread produced last (e.g. ``classes_``)."""
        names = getattr(self._call_state, "output_names", None)
        if not names:
            raise SeldonNotImplementedError("no names for this output")
        return names

    def serve(self, method: Method, model_input: Any, request: Any = None) -> Any:
        """Call ``method`` on a validated input, turning framework errors into 400 / 500.
        ``request`` is the payload ``model_input`` was read from: a refusal's 400 names a
        record lacking a key (read only then; the request the model takes pays nothing)."""
        if not self._ready:
            raise ModelNotReadyError()
        if self.threads is not None:
            self.threads.for_rows(rows_of(model_input))
        try:
            result = method.call(model_input)
        except BadRequestError:
            raise
        except INPUT_ERRORS as exc:
            message = refused_input_message(
                method.name,
                exc,
                model_input,
                self.model,
                getattr(self, "text_columns", None),
                request,
                # MLflow's optional columns (``required=False``): absent from a record, NaN
                getattr(getattr(self, "reader", None), "optional", ()),
            )
            raise BadRequestError(message) from exc
        except Exception as exc:
            logger.exception("%s failed", method.name)
            raise ServerFaultError(f"{method.name} failed: {type(exc).__name__}: {exc}") from exc
        self._call_state.output_names = method.output_names
        with self._metrics_lock:
            self._served[method.name] = self._served.get(method.name, 0) + 1
        return result

    def predict(
        self,
        X: Any,
        names: Any = None,
        meta: Any = None,
        params: Any = None,
        *,
        feature_names: Any = None,
        features_names: Any = None,
    ) -> Any:
        """``self.method`` on the request. The feature names are taken positionally or under
        each name Seldon's code uses: ``names`` (its SKLearnServer / XGBoostServer),
        ``feature_names`` (its MLFlowServer) and ``features_names`` (the s2i guides).
        ``meta`` and ``params`` go to ``read_request``."""
        if self.method is None:
            raise ModelNotReadyError()
        if names is None:
            names = feature_names if feature_names is not None else features_names
        method, model_input = self.read_request(X, names, meta, params)
        return self.model_output(self.serve(method, model_input, X))

    def read_request(self, X: Any, names: Any, meta: Any, params: Any) -> tuple[Method, Any]:
        """The method one request calls and its input: here ``self.method`` on
        ``model_input(X, names)``, ``meta`` unread. A server whose requests carry more
        (``serves_params``: MLflow's inference params, a scoring payload in ``X``) overrides
        this rather than ``predict``, so the feature-name contract stays in one place."""
        if params is not None:
            given = sorted(map(str, params)) if isinstance(params, dict) else type(params).__name__
            raise BadRequestError(
                f"{type(self).__name__} takes no params, got {given}; params are for models "
                "that declare them (an MLflow signature's params schema)"
            )
        return self.method, self.model_input(X, names)  # type: ignore[return-value]

    def model_input(self, X: Any, names: Any) -> Any:
        """The request's payload as rows of numbers in the model's column order, matched by
        ``names`` or ``jsonData`` (a 400 when it cannot be); override for other forms."""
        if self.read_rows is None:
            raise ModelNotReadyError()
        return self.read_rows(X, names)

    def model_output(self, result: Any) -> Any:
        """What the model returned, in a form seldon-core can send back."""
        return result

    def model_kind(self) -> str:
        """What the model is, for messages (its class name)."""
        return type(self.model).__name__ if self.model is not None else "this model"

    def transform_input(self, X: Any, features_names: Any = None, meta: Any = None) -> Any:
        """The model's ``transform`` of the request, as a ``TRANSFORMER``."""
        return self.serve_transform(X, features_names)

    def transform_output(self, X: Any, features_names: Any = None, meta: Any = None) -> Any:
        """The model's ``transform`` of the request, as an ``OUTPUT_TRANSFORMER``."""
        return self.serve_transform(X, features_names)

    def serve_transform(self, X: Any, names: Any) -> Any:
        """``transform_method`` on the request; a model without one is a deployment mistake
        (500 saying so), not the client's."""
        if not self.serves_transform:
            raise SeldonNotImplementedError(f"{type(self).__name__} does not transform")
        if not self._ready:
            raise ModelNotReadyError()
        if self.transform_method is None:
            raise ServerFaultError(
                f"{self.model_kind()} has no transform method, so it cannot serve as a "
                "TRANSFORMER or OUTPUT_TRANSFORMER; deploy it as a MODEL"
            )
        return self.model_output(self.serve(self.transform_method, self.model_input(X, names), X))

    # ---------------------------------------------------------------- custom metrics

    def server_metrics(self) -> list[dict[str, Any]]:
        """modelshelf's own custom metrics that are due; ``[]`` most of the time under load.

        ``modelshelf_predictions`` counts served requests per model method (label
        ``model_method``: ``predict_proba``, ``transform``…) and ``modelshelf_model_load_seconds``
        is how long ``load()`` took. Counts are handed to seldon-core at most once per
        ``METRICS_INTERVAL`` seconds (with the request after that), because each hand-over costs
        seldon-core a round trip to its metrics process -- about a millisecond.
        """
        if not self._metrics_due():
            return []
        with self._metrics_lock:
            if not self._served:  # another thread handed them over first
                return []
            served, self._served = self._served, {}
            self._metrics_sent_at = time.monotonic()
        found: list[dict[str, Any]] = [
            {
                "type": "COUNTER",
                "key": "modelshelf_predictions",
                "value": count,
                "tags": {"model_method": name},
            }
            for name, count in served.items()
        ]
        if self.load_seconds is not None:
            found.append(
                {
                    "type": "GAUGE",
                    "key": "modelshelf_model_load_seconds",
                    "value": self.load_seconds,
                }
            )
        return found

    def _metrics_due(self) -> bool:
        return bool(self._served) and (time.monotonic() - self._metrics_sent_at >= METRICS_INTERVAL)

    @property
    def metrics(self) -> Callable[[], list[dict[str, Any]]]:
        """What seldon-core publishes on the metrics port after a request (``/prometheus``).

        Only there when metrics are due: seldon-core asks ``hasattr(server, "metrics")`` on
        every request, and this way it skips both the call and the exception a stub would raise.
        A subclass adding its own defines ``metrics()`` returning ``self.server_metrics() +
        [...]``.
        """
        if not self._metrics_due():
            raise AttributeError("no modelshelf metrics due")
        return self.server_metrics


def output_names(model: Any, method: str) -> list[str] | None:
    """The names of ``method``'s output columns: the classes of a per-class method, the
    transformer's ``get_feature_names_out()``; ``None`` where there are none."""
    if method in CLASS_OUTPUT_METHODS:
        classes = getattr(model, "classes_", None)
        if classes is None or np.ndim(classes) != 1:
            return None
        if method == "decision_function" and len(classes) == 2:
            return None  # one score per row, for the positive class
        return [str(c) for c in classes]
    if method == "transform":
        try:
            return [str(n) for n in model.get_feature_names_out()]
        except Exception:  # many transformers cannot name their outputs
            return None
    return None


def _taking_fast_path(init: Callable[..., None]) -> Callable[..., None]:
    """A subclass's ``__init__`` that also takes ``fast_path`` (every server's parameter), so
    no framework declares or parses it; the value replaces the environment's after ``init``."""

    @functools.wraps(init)
    def taking_fast_path(
        self: ModelServer, *args: Any, fast_path: bool | str | None = None, **kw: Any
    ) -> None:
        chosen = None if fast_path is None else bool_parameter("fast_path", fast_path)
        init(self, *args, **kw)
        if chosen is not None:
            self.fast_path = chosen
            self.fast_path_set_by = "fast_path"

    signature = inspect.signature(init)
    extra = inspect.Parameter("fast_path", inspect.Parameter.KEYWORD_ONLY, default=None)
    params = list(signature.parameters.values())
    at = next((i for i, p in enumerate(params) if p.kind is p.VAR_KEYWORD), len(params))
    taking_fast_path.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*params[:at], extra, *params[at:]]
    )
    return taking_fast_path


def _unique(texts: Any) -> list[str]:
    return list(dict.fromkeys(texts))


def bool_parameter(parameter: str, value: bool | str, source: str = "parameter") -> bool:
    """A BOOL parameter; also accepts the words a STRING-typed parameter would carry. ``source``
    is what the error calls it (``environment variable`` for one read from the environment)."""
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in _TRUE_WORDS or word in _FALSE_WORDS:
        return word in _TRUE_WORDS
    raise ConfigurationError(parameter, value, "true or false", source)
