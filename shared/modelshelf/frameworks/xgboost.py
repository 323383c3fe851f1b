"""XGBoost: Boosters saved as JSON / UBJSON (``model.json``, ``model.ubj``, ``model.bst``) and
scikit-learn-API models (``XGBClassifier`` / ``XGBRegressor``) saved with joblib or pickle.

Two things shape this module:

* **Fork safety.** seldon-core-microservice loads the model in its parent (to derive metadata)
  and then forks gunicorn workers and the gRPC process. GNU OpenMP's thread pool does not survive
  a fork, so the parent loads with one thread (no pool is ever started there) and each process
  sets its own thread count on its first request.
* **Per-request cost.** A single-row prediction through ``Booster.predict(DMatrix(X))`` spends
  most of its time building the ``DMatrix`` and in Python argument handling, not in the trees.
  Values and margins go through XGBoost's in-place prediction C entry point with its JSON
  configuration prepared once at load time; small batches use a single-threaded copy of the
  booster, because waking OpenMP threads for one row costs more than the trees and collapses
  when the cores are busy.
"""

from __future__ import annotations

import ctypes
import json
import logging
import math
import os
import re
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import xgboost as xgb

from modelshelf.errors import (
    BadRequestError,
    ConfigurationError,
    ModelLoadError,
    ModelNotFoundError,
)
from modelshelf.inputs import as_2d_numbers
from modelshelf.metadata import array_spec, read_metadata_file
from modelshelf.model_files import find_model_file
from modelshelf.server import Method, ModelServer

logger = logging.getLogger(__name__)

BOOSTER_NAMES = ("model.json", "model.ubj", "model.bst")
PICKLE_NAMES = ("model.joblib", "model.pkl", "model.pickle")
MODEL_NAMES = BOOSTER_NAMES + PICKLE_NAMES
BOOSTER_SUFFIXES = (".json", ".ubj", ".bst")
PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")
METHODS = ("predict", "predict_proba", "predict_margin", "predict_contribs", "predict_leaf")

#: Objectives whose outputs are class probabilities (``predict_proba`` needs one of these).
PROBABILITY_OBJECTIVES = ("binary:logistic", "multi:softprob", "multi:softmax")

#: Up to this many rows a request runs on one thread: XGBoost predicts in blocks of 64 rows, so
#: more threads cannot share the work and only add a wake-up (or a spin against busy cores).
SINGLE_THREAD_MAX_ROWS = 64

# In-place prediction types of the C API (``XGBoosterPredictFromDense``'s config ``type``).
_VALUE, _MARGIN = 0, 1


def xgboost_version() -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", xgb.__version__)[:3])


class XGBoostServer(ModelServer):
    """Serves an XGBoost Booster or scikit-learn-API XGBoost model.

    Parameters (SeldonDeployment ``parameters``): ``model_uri``; ``method`` (``predict``,
    ``predict_proba``, ``predict_margin``, ``predict_contribs``, ``predict_leaf``; default
    ``predict``); ``model_file`` when the folder holds several files; ``nthread`` (default 0:
    the cores this process may use divided by the gunicorn workers).
    """

    framework_packages = ("xgboost", "xgboost-cpu", "scikit-learn", "numpy")

    def __init__(
        self, model_uri: str, method: str = "predict", model_file: str = "", nthread: int = 0
    ) -> None:
        super().__init__(model_uri)
        method = method or "predict"
        if method not in METHODS:
            raise ConfigurationError("method", method, "one of " + ", ".join(METHODS))
        try:
            threads = int(nthread)
        except (TypeError, ValueError):
            threads = -1
        if threads < 0:
            raise ConfigurationError(
                "nthread", nthread, "a whole number >= 1, or 0 for cores / gunicorn workers"
            )
        self.method_name = method
        self.model_file = model_file
        self.requested_threads = threads
        self.method: Method | None = None
        self.nthread: int | None = None
        self._threads_pid: int | None = None
        self._threads_lock = threading.Lock()
        self._thread_config = threading.local()

    # ---------------------------------------------------------------- loading

    def load_model(self, model_dir: Path) -> None:
        path = _model_path(model_dir, self.model_file, self.model_uri)
        # One thread while loading and describing: this runs in seldon's parent process, which
        # forks the workers later, and anything that configures the booster may start OpenMP.
        with xgb.config_context(nthread=1):
            if path.name.lower().endswith(PICKLE_SUFFIXES):
                estimator, booster = _load_estimator(path, self.model_uri)
                self.saved_version: str | None = None
            else:
                estimator = None
                self.saved_version = _check_saved_version(path, self.model_uri)
                booster = _load_booster(path, self.model_uri)
            # A copy for small batches: always single-threaded (see SINGLE_THREAD_MAX_ROWS).
            small_batch_booster = booster.copy()
            self.description = _describe_booster(booster)
            self.feature_names: list[str] | None = booster.feature_names
            self.n_features: int = booster.num_features()
        self.model = estimator if estimator is not None else booster
        self.model_path = path
        self.booster = booster
        self.small_batch_booster = small_batch_booster
        self.estimator = estimator
        self._feature_positions = (
            {name: i for i, name in enumerate(self.feature_names)} if self.feature_names else None
        )
        self.missing = float(getattr(estimator, "missing", np.nan)) if estimator else np.nan
        self.class_labels = _class_labels(
            estimator, self.description, read_metadata_file(model_dir)
        )
        self.method = self._build_method(self.method_name)

    def _use_threads(self) -> None:
        """Give this process's boosters their threads, on its first request: seldon's parent
        loads the model but never predicts, so it never starts an OpenMP pool before forking.

        XGBoost's global ``nthread`` is per calling thread and caps every booster; loading set it
        to 1 here and ``config_context`` cannot restore the default, so each serving thread sets
        it too.
        """
        pid = os.getpid()
        with self._threads_lock:
            if self._threads_pid != pid:
                threads = self.requested_threads or default_threads()
                self.booster.set_param({"nthread": threads})
                self.small_batch_booster.set_param({"nthread": 1})
                self.nthread = threads
                self._threads_pid = pid
                logger.info("XGBoost uses %d thread(s) per request in process %d", threads, pid)
        xgb.set_config(nthread=self.nthread)
        self._thread_config.pid = pid

    def _build_method(self, name: str) -> Method:
        objective = self.description["objective"]
        num_class = self.description["num_class"]
        is_classifier = self.estimator is not None and hasattr(self.estimator, "classes_")
        if name == "predict_proba" and objective not in PROBABILITY_OBJECTIVES:
            raise ConfigurationError(
                "method",
                name,
                "a method this model supports: predict_proba needs a classification objective "
                f"({', '.join(PROBABILITY_OBJECTIVES)}); this model's objective is {objective}",
            )
        value = _InplacePredictor(self.booster, self.small_batch_booster, _VALUE, self.missing)
        margin = _InplacePredictor(self.booster, self.small_batch_booster, _MARGIN, self.missing)
        class_names = self.class_labels
        multi_output = num_class > 1
        if name == "predict" and is_classifier:
            return Method(name, _labels(value, objective, self.estimator.classes_), None)
        if name == "predict":
            names = class_names if objective == "multi:softprob" else None
            return Method(name, value, names)
        if name == "predict_proba":
            if objective == "multi:softmax":
                return Method(name, _softmax(margin), class_names)
            if objective == "binary:logistic":
                return Method(name, _two_columns(value), class_names)
            return Method(name, value, class_names)
        if name == "predict_margin":
            return Method(name, margin, class_names if multi_output else None)
        contribs = name == "predict_contribs"
        names = [*(self.feature_names or _default_names(self.n_features)), "bias"]
        call = _DMatrixPredictor(
            self.booster,
            self.small_batch_booster,
            self.missing,
            pred_contribs=contribs,
            pred_leaf=not contribs,
        )
        return Method(name, call, names if contribs else None)

    def describe_model(self) -> dict[str, Any]:
        assert self.method is not None
        names = self.method.output_names
        desc = self.description
        custom = {
            "method": self.method.name,
            "model file": self.model_path.name,
            "objective": desc["objective"],
            "number of classes": str(desc["num_class"]),
            "number of features": str(self.n_features),
            "booster": desc["booster"],
            "boosted rounds": str(desc["rounds"]),
        }
        if desc["feature_types"]:
            custom["feature types"] = ",".join(desc["feature_types"])
        if self.saved_version:
            custom["saved by xgboost"] = self.saved_version
        if self.estimator is not None:
            custom["estimator"] = type(self.estimator).__name__
        return {
            "name": self.model_path.stem if self.model_path.stem != "model" else _folder_name(self),
            "platform": "xgboost",
            "inputs": [array_spec(self.feature_names, self.n_features)],
            "outputs": [self._output_spec(names)],
            "custom": custom,
        }

    def _output_spec(self, names: Sequence[str] | None) -> dict[str, Any]:
        num_class = self.description["num_class"]
        if self.method_name == "predict_contribs" and num_class > 1:
            spec = array_spec(names, None)
            spec["schema"]["shape"] = [-1, num_class, self.n_features + 1]
            return spec
        if self.method_name == "predict_leaf":
            return array_spec(None, None)
        return array_spec(names, len(names) if names else None)

    # ---------------------------------------------------------------- requests

    def predict(self, X: Any, features_names: Any = None, meta: Any = None) -> Any:
        if self.ready and getattr(self._thread_config, "pid", None) != os.getpid():
            self._use_threads()
        return self.serve(self.method, self._model_input(X, features_names))  # type: ignore[arg-type]

    def _model_input(self, X: Any, names: Any) -> np.ndarray:
        """The request's rows as a float array in the booster's feature order."""
        if isinstance(X, dict) or (isinstance(X, list) and X and isinstance(X[0], dict)):
            return self._rows_from_records(X)
        arr = as_2d_numbers(X, self.n_features)
        if names is None or not len(names):
            return arr
        names = [str(n) for n in names]
        if len(names) != arr.shape[1]:
            raise BadRequestError(
                f"names has {len(names)} entries but each row has {arr.shape[1]} values"
            )
        if self.feature_names is None or names == self.feature_names:
            return arr
        return arr[:, self._columns_for(names)]

    def _columns_for(self, names: list[str]) -> list[int]:
        """Where each of the booster's features sits among the request's ``names``."""
        assert self.feature_names is not None
        given = {name: i for i, name in enumerate(names)}
        missing = [n for n in self.feature_names if n not in given]
        extra = [n for n in names if self._feature_positions and n not in self._feature_positions]
        if missing or extra or len(given) != len(names):
            raise BadRequestError(
                f"names do not match the model's features {self.feature_names}: "
                f"missing {missing}, unexpected {extra}"
            )
        return [given[n] for n in self.feature_names]

    def _rows_from_records(self, X: Any) -> np.ndarray:
        """``jsonData`` as records (a list of objects) or columns (an object of lists)."""
        if self.feature_names is None:
            raise BadRequestError(
                "jsonData needs a model with feature names; this booster has none, so send "
                f"rows of {self.n_features} numbers (ndarray or tensor)"
            )
        if isinstance(X, dict):
            given = list(X)
            try:
                columns = [np.atleast_1d(np.asarray(X[n], dtype=object)) for n in given]
                rows = np.column_stack(columns) if columns else np.empty((0, 0))
            except ValueError as exc:
                raise BadRequestError(f"jsonData columns must have equal lengths: {exc}") from exc
        else:
            if not all(isinstance(r, dict) for r in X):
                raise BadRequestError("jsonData must be a list of objects or an object of lists")
            given = list(X[0])
            try:
                rows = np.array([[r[n] for n in given] for r in X], dtype=object)
            except KeyError as exc:
                raise BadRequestError(f"jsonData record without field {exc}") from exc
        arr = as_2d_numbers(rows, len(given), what="jsonData")
        return arr[:, self._columns_for([str(n) for n in given])]


# -------------------------------------------------------------------- threads


def default_threads() -> int:
    """Threads per process so that gunicorn workers x threads ~ the cores this process may use."""
    return max(1, available_cores() // gunicorn_workers())


def available_cores() -> int:
    """CPUs in this process's affinity mask, capped by a cgroup CPU quota (a container limit)."""
    cores = len(os.sched_getaffinity(0))
    quota = _cgroup_cpu_quota()
    return max(1, min(cores, math.ceil(quota))) if quota else cores


def gunicorn_workers() -> int:
    """seldon-core-microservice's REST workers: ``--workers N`` if given, else
    ``GUNICORN_WORKERS`` (its default), else 1."""
    value: str | None = os.environ.get("GUNICORN_WORKERS")
    argv = sys.argv[1:]
    for i, arg in enumerate(argv):
        if arg == "--workers" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--workers="):
            value = arg.split("=", 1)[1]
    try:
        return max(1, int(value)) if value else 1
    except ValueError:
        raise ConfigurationError("GUNICORN_WORKERS", value, "a whole number of workers") from None


def _cgroup_cpu_quota() -> float | None:
    try:  # cgroup v2: "max 100000" or "<quota> <period>"
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return quota_us / period_us if quota_us > 0 and period_us > 0 else None
    except (OSError, ValueError):
        return None


# -------------------------------------------------------------------- prediction


class _InplacePredictor:
    """Values or margins of dense rows without a ``DMatrix``: XGBoost's in-place prediction,
    called through its C API with the configuration built once (``Booster.inplace_predict``
    rebuilds it, and checks the input's type, on every call)."""

    def __init__(self, booster: xgb.Booster, small: xgb.Booster, kind: int, missing: float):
        self.boosters = (booster, small)
        self.kind = kind
        self.missing = missing
        config = {
            "type": kind,
            "training": False,
            "iteration_begin": 0,
            "iteration_end": 0,
            "missing": missing,
            "strict_shape": False,
            "cache_id": 0,
        }
        self._config = json.dumps(config).encode()  # NaN is written as NaN, which XGBoost reads
        try:
            from xgboost.core import _LIB, _check_call

            self._predict_dense = _LIB.XGBoosterPredictFromDense
            self._check = _check_call
        except (ImportError, AttributeError):  # another XGBoost build: use the public method
            self._predict_dense = None

    def __call__(self, X: np.ndarray) -> np.ndarray:
        if X.dtype != np.float32 and X.dtype != np.float64:
            X = X.astype(np.float64)
        if not X.flags.c_contiguous:
            X = np.ascontiguousarray(X)
        booster = self.boosters[1] if X.shape[0] <= SINGLE_THREAD_MAX_ROWS else self.boosters[0]
        if self._predict_dense is None:
            return booster.inplace_predict(
                X,
                predict_type="margin" if self.kind == _MARGIN else "value",
                missing=self.missing,
                validate_features=False,
            )
        interface = (
            f'{{"data": [{X.ctypes.data}, true], "shape": [{X.shape[0]}, {X.shape[1]}], '
            f'"strides": null, "typestr": "{X.dtype.str}", "version": 3}}'
        ).encode()
        shape = ctypes.POINTER(ctypes.c_uint64)()
        dims = ctypes.c_uint64()
        preds = ctypes.POINTER(ctypes.c_float)()
        self._check(
            self._predict_dense(
                booster.handle,
                interface,
                self._config,
                None,
                ctypes.byref(shape),
                ctypes.byref(dims),
                ctypes.byref(preds),
            )
        )
        out_shape = tuple(shape[i] for i in range(dims.value))
        out = np.empty(out_shape, dtype=np.float32)
        ctypes.memmove(out.ctypes.data, preds, out.nbytes)  # XGBoost reuses its buffer
        return out


class _DMatrixPredictor:
    """SHAP contributions and leaf indices: XGBoost computes these only from a ``DMatrix``."""

    def __init__(
        self,
        booster: xgb.Booster,
        small: xgb.Booster,
        missing: float,
        pred_contribs: bool,
        pred_leaf: bool,
    ) -> None:
        self.boosters = (booster, small)
        self.missing = missing
        self.options = {"pred_contribs": pred_contribs, "pred_leaf": pred_leaf}

    def __call__(self, X: np.ndarray) -> np.ndarray:
        small = X.shape[0] <= SINGLE_THREAD_MAX_ROWS
        booster = self.boosters[1] if small else self.boosters[0]
        data = xgb.DMatrix(X, missing=self.missing, nthread=1 if small else -1)
        return booster.predict(data, validate_features=False, **self.options)


def _two_columns(value: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """A binary model's P(class 1) as ``[1 - p, p]``, one column per class name."""

    def predict_proba(X: np.ndarray) -> np.ndarray:
        p = value(X)
        return np.column_stack((1.0 - p, p))

    return predict_proba


def _softmax(margin: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """``multi:softmax`` predicts labels; its probabilities are the softmax of the margins."""
    from scipy.special import softmax

    def predict_proba(X: np.ndarray) -> np.ndarray:
        return softmax(margin(X), axis=1)

    return predict_proba


def _labels(
    value: Callable[[np.ndarray], np.ndarray], objective: str, classes: Any
) -> Callable[[np.ndarray], np.ndarray]:
    """An ``XGBClassifier``'s ``predict``: the label of the most probable class."""
    labels = np.asarray(classes)

    def predict(X: np.ndarray) -> np.ndarray:
        out = value(X)
        if objective == "multi:softmax":
            index = out.astype(np.int64)
        elif out.ndim > 1:
            index = np.argmax(out, axis=1)
        else:
            index = (out > 0.5).astype(np.int64)
        return labels[index]

    return predict


# -------------------------------------------------------------------- model files


def _model_path(model_dir: Path, model_file: str, uri: str) -> Path:
    """Exactly one model file (or ``model_file``); several conventional names are an error."""
    if model_dir.is_dir() and not model_file:
        present = [n for n in MODEL_NAMES if (model_dir / n).is_file()]
        if len(present) > 1:
            raise ModelNotFoundError(
                uri,
                f"several model files ({', '.join(present)}): keep one, or set the parameter "
                "model_file to the one to serve",
            )
    return find_model_file(
        model_dir, MODEL_NAMES, BOOSTER_SUFFIXES + PICKLE_SUFFIXES, model_file, uri=uri
    )


def _load_booster(path: Path, uri: str) -> xgb.Booster:
    booster = xgb.Booster()
    try:
        if path.suffix.lower() in (".json", ".ubj"):
            booster.load_model(str(path))
        else:  # model.bst: JSON or UBJSON by content (XGBoost would guess UBJSON and warn)
            with path.open("rb") as f:
                head = f.read(1)
            booster.load_model(bytearray(path.read_bytes()) if head == b"{" else str(path))
    except xgb.core.XGBoostError as exc:
        raise ModelLoadError(
            uri,
            f"XGBoost {xgb.__version__} cannot read {path.name}: {_first_lines(exc)}. "
            "If it was saved by another XGBoost version, re-save it with Booster.save_model to "
            "model.json or model.ubj using that version, or use an image with a matching XGBoost",
        ) from exc
    return booster


def _load_estimator(path: Path, uri: str) -> tuple[Any, xgb.Booster]:
    estimator = joblib.load(path)
    if isinstance(estimator, xgb.Booster):
        return None, estimator
    if not isinstance(estimator, xgb.XGBModel):
        raise ModelLoadError(
            uri,
            f"{path.name} holds a {type(estimator).__module__}.{type(estimator).__name__}, not "
            "an XGBoost model (XGBClassifier, XGBRegressor or Booster); "
            "serve scikit-learn models with SKLearnServer",
        )
    try:
        booster = estimator.get_booster()
    except xgb.core.XGBoostError as exc:  # e.g. "need to call fit or load_model beforehand"
        raise ModelLoadError(uri, f"{path.name}: {_first_lines(exc)}") from exc
    return estimator, booster


_JSON_VERSION = re.compile(rb'"version"\s*:\s*\[\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\]')
_UBJ_INTS = {b"i": (1, True), b"U": (1, False), b"I": (2, True), b"l": (4, True), b"L": (8, True)}


def saved_version(path: Path) -> tuple[int, ...] | None:
    """The XGBoost version recorded in a JSON / UBJSON model file (its top-level ``version``,
    written last), or ``None`` when the file does not say."""
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 512))
        tail = f.read()
    found = _JSON_VERSION.findall(tail)
    if found:
        return tuple(int(v) for v in found[-1])
    at = tail.rfind(b"version")
    return _ubj_int_array(tail, at + len(b"version")) if at >= 0 else None


def _ubj_int_array(data: bytes, pos: int) -> tuple[int, ...] | None:
    """Read a small UBJSON array of integers (``[#L<n>i..`` or ``[$i#..``) at ``pos``."""
    try:
        if data[pos : pos + 1] != b"[":
            return None
        pos += 1
        fixed = None
        if data[pos : pos + 1] == b"$":
            fixed = data[pos + 1 : pos + 2]
            pos += 2
        if data[pos : pos + 1] != b"#":
            return None
        size, signed = _UBJ_INTS[data[pos + 1 : pos + 2]]
        count = int.from_bytes(data[pos + 2 : pos + 2 + size], "big", signed=signed)
        pos += 2 + size
        values = []
        for _ in range(min(count, 4)):
            marker = fixed or data[pos : pos + 1]
            pos += 0 if fixed else 1
            size, signed = _UBJ_INTS[marker]
            values.append(int.from_bytes(data[pos : pos + size], "big", signed=signed))
            pos += size
        return tuple(values)
    except (KeyError, IndexError, ValueError):
        return None


def _check_saved_version(path: Path, uri: str) -> str | None:
    """Refuse a model saved by a newer XGBoost than this one: XGBoost reads older models, not
    newer ones, and a newer file may load without error yet predict differently."""
    version = saved_version(path)
    if version is None:
        return None
    text = ".".join(str(v) for v in version)
    if tuple(version[:2]) > xgboost_version()[:2]:
        raise ModelLoadError(
            uri,
            f"{path.name} was saved by XGBoost {text}, newer than this server's XGBoost "
            f"{xgb.__version__}, which cannot read it reliably; re-save the model with "
            f"XGBoost <= {xgb.__version__} or use an image with XGBoost >= {text}",
        )
    return text


def _first_lines(exc: BaseException) -> str:
    """XGBoost's message without the native stack trace it appends."""
    text = str(exc).split("Stack trace:", 1)[0]
    text = re.sub(r"^\[\d\d:\d\d:\d\d\] [^:]+:\d+: ", "", text.strip())
    return " ".join(text.split())


# -------------------------------------------------------------------- description


def _describe_booster(booster: xgb.Booster) -> dict[str, Any]:
    """Objective, classes and booster type from the booster's JSON configuration (no predict:
    this runs in the parent process)."""
    learner = json.loads(booster.save_config())["learner"]
    params = learner.get("learner_model_param", {})
    return {
        "objective": learner.get("objective", {}).get("name", "unknown"),
        "num_class": int(params.get("num_class", 0) or 0),
        "num_target": int(params.get("num_target", 1) or 1),
        "booster": learner.get("gradient_booster", {}).get("name", "unknown"),
        "rounds": booster.num_boosted_rounds(),
        "feature_types": booster.feature_types,
    }


def _class_labels(
    estimator: Any, description: dict[str, Any], metadata: dict[str, Any] | None
) -> list[str]:
    """The ``XGBClassifier``'s ``classes_``, else names from ``metadata.yaml``'s first output,
    else ``class_0…``."""
    count = description["num_class"] or (2 if description["objective"].startswith("binary:") else 0)
    classes = getattr(estimator, "classes_", None)
    if classes is not None:
        return [str(c) for c in classes]
    try:
        names = metadata["outputs"][0]["schema"]["names"]  # type: ignore[index]
    except (TypeError, KeyError, IndexError):
        names = None
    if isinstance(names, list) and len(names) == count:
        return [str(n) for n in names]
    return [f"class_{i}" for i in range(count)]


def _default_names(n_features: int) -> list[str]:
    return [f"f{i}" for i in range(n_features)]


def _folder_name(server: XGBoostServer) -> str:
    return server.model_dir.name if server.model_dir.is_dir() else server.model_path.stem
