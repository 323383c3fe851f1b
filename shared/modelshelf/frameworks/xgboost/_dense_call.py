"""XGBoost's in-place prediction of dense rows through its C API, without the Python around it.

``Booster.inplace_predict`` (XGBoost 3.2) wraps one C function, ``XGBoosterPredictFromDense``,
in Python that costs more than a small booster's trees: per call it imports, JSON-encodes its
arguments and the array's interface, defines a class to read the answer back and takes numpy
reductions (~70 µs on this machine), and its C side allocates a proxy ``DMatrix`` whose
``Context`` reads the cgroup CPU quota from ``/sys`` (~10 µs). ``DenseCall`` calls the same C
function (public C API, ``c_api.h``) with the arguments encoded once and a proxy kept per
thread: the same computation, so the same bits. In process, one row, one thread: the 300-round
x depth-6 booster's call 1.5x faster, a one-tree booster's 3x (bench/profiles/xgboost_call.py).

Private: ``xgboost.core._LIB`` (the loaded libxgboost). Checked at load (``dense_call``): the
functions present, a proxy made, then answers equal to ``inplace_predict``'s, dtype and shape
included, on probe rows (NaN, +-inf, extremes, 1 to 65 rows, float32 and float64); else
``None`` and ``inplace_predict`` serves.
"""

from __future__ import annotations

import ctypes
import json
import logging
import threading
from typing import Any

import numpy as np
import xgboost as xgb

logger = logging.getLogger(__name__)

_TYPESTR = {np.dtype(np.float32): "<f4", np.dtype(np.float64): "<f8"}
_PROBE_ROWS = (1, 2, 65)  # one row, a few, more than one of XGBoost's 64-row blocks


class _ThreadState:
    """One thread's proxy ``DMatrix`` and out-parameters; the proxy is freed with it."""

    __slots__ = ("_free", "dims", "out", "proxy", "shape")

    def __init__(self, lib: Any) -> None:
        self.proxy = ctypes.c_void_p()
        _check(lib, lib.XGProxyDMatrixCreate(ctypes.byref(self.proxy)))
        self._free = lib.XGDMatrixFree
        self.shape = ctypes.POINTER(ctypes.c_uint64)()
        self.dims = ctypes.c_uint64()
        self.out = ctypes.POINTER(ctypes.c_float)()

    def __del__(self) -> None:
        if self.proxy:
            self._free(self.proxy)


class DenseCall:
    """``booster.inplace_predict(X, predict_type=…, missing=…, validate_features=False)`` for
    C-ordered float32 / float64 matrices of at least one row."""

    def __init__(self, booster: xgb.Booster, predict_type: str, missing: float) -> None:
        lib = xgb.core._LIB  # private: the loaded libxgboost
        self._lib = lib
        self._predict = lib.XGBoosterPredictFromDense
        lib.XGProxyDMatrixCreate  # noqa: B018 - present, or no DenseCall (AttributeError)
        lib.XGDMatrixFree  # noqa: B018
        self.booster = booster  # owns the handle
        self._handle = booster.handle
        # What inplace_predict sends (its make_jcargs): JSON, NaN / Infinity as Python writes.
        self._config = json.dumps(
            {
                "type": 1 if predict_type == "margin" else 0,
                "training": False,
                "iteration_begin": 0,
                "iteration_end": 0,
                "missing": missing,
                "strict_shape": False,
                "cache_id": 0,
            }
        ).encode()
        self._local = threading.local()

    def __call__(self, X: np.ndarray) -> np.ndarray:
        state = getattr(self._local, "state", None)
        if state is None:
            state = self._local.state = _ThreadState(self._lib)
        rows, columns = X.shape
        interface = (
            f'{{"data": [{X.ctypes.data}, true], "shape": [{rows}, {columns}], '
            f'"strides": null, "typestr": "{_TYPESTR[X.dtype]}", "version": 3}}'
        ).encode()
        _check(
            self._lib,
            self._predict(
                self._handle,
                interface,
                self._config,
                state.proxy,
                ctypes.byref(state.shape),
                ctypes.byref(state.dims),
                ctypes.byref(state.out),
            ),
        )
        shape = state.shape
        answer = np.empty(tuple(shape[i] for i in range(state.dims.value)), np.float32)
        ctypes.memmove(answer.ctypes.data, state.out, answer.nbytes)  # the booster's buffer
        return answer


def accepts(X: np.ndarray) -> bool:
    """Rows ``DenseCall`` takes as they are: 2-D, C-ordered and aligned, little-endian float32 /
    float64, not empty."""
    flags = X.flags
    return (
        X.ndim == 2
        and X.shape[0] > 0
        and X.dtype in _TYPESTR
        and flags.c_contiguous
        and flags.aligned
    )


def dense_call(
    booster: xgb.Booster, predict_type: str, missing: float, n_features: int
) -> DenseCall | None:
    """A ``DenseCall`` that answered as ``inplace_predict`` on the probe rows, else ``None``
    (why: logged)."""
    try:
        call = DenseCall(booster, predict_type, missing)
        for X in _probe_rows(n_features, missing):
            found = call(X)
            wanted = booster.inplace_predict(
                X, predict_type=predict_type, missing=missing, validate_features=False
            )
            if found.dtype != wanted.dtype or not np.array_equal(found, wanted, equal_nan=True):
                logger.warning(
                    "XGBoost's C API called directly answered %s %s for %s where "
                    "inplace_predict answered %s %s: inplace_predict serves",
                    found.dtype, found.shape, X.shape, wanted.dtype, wanted.shape,
                )  # fmt: skip
                return None
    except (AttributeError, xgb.core.XGBoostError, KeyError, ValueError) as exc:
        logger.warning("XGBoost's C API not called directly (%s: %s): inplace_predict serves",
                       type(exc).__name__, exc)  # fmt: skip
        return None
    logger.info("XGBoost's %s: XGBoosterPredictFromDense called directly (equal to "
                "inplace_predict on its probe rows)", predict_type)  # fmt: skip
    return call


def _probe_rows(n_features: int, missing: float) -> list[np.ndarray]:
    rng = np.random.default_rng(20)
    special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e30, -1e30, 1e-30, missing])
    found = []
    for rows in _PROBE_ROWS:
        X = rng.normal(scale=3.0, size=(rows, n_features))
        chosen = rng.random(X.shape) < 0.2
        X[chosen] = rng.choice(special, size=int(chosen.sum()))
        found += [X, X.astype(np.float32)]
    return found


def _check(lib: Any, status: int) -> None:
    """XGBoost's own error for a failed call (what ``inplace_predict`` raises)."""
    if status != 0:
        raise xgb.core.XGBoostError(lib.XGBGetLastError().decode())
