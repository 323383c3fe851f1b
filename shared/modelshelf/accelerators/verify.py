"""The one verifier: an accelerator's call against the framework's own, at load.

A candidate is used only if, on every probe input, both answer the same way: both return
outputs of the same type, dtype and shape whose values are bit-identical (NaN where NaN, the
sign of zero included), or both refuse the input with the same kind of answer (a 400 -- what
``ModelServer.serve`` makes of ``BadRequestError`` and ``INPUT_ERRORS`` -- or a 500). The probe
inputs are the accelerator's own (what its model's splits or statistics make interesting) and
``adversarial_rows``: several scales, zeros, the extremes of float64 and float32, values that
overflow float32, subnormals, -0.0, ±inf and NaN, alone and in batches, as float64, float32
and int64.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelshelf.errors import BadRequestError
from modelshelf.server import INPUT_ERRORS

#: Values that break arithmetic: float64's and float32's extremes, just past float32's (they
#: become inf when converted), subnormals, signed zeros, infinities and NaN.
EXTREMES = (
    1.7976931348623157e308,
    -1.7976931348623157e308,
    1e308,
    -1e308,
    3.4028234663852886e38,
    -3.4028234663852886e38,
    3.5e38,
    -3.5e38,
    5e-324,
    -5e-324,
    1.1754943508222875e-38,
    0.0,
    -0.0,
    np.inf,
    -np.inf,
    np.nan,
)
SCALES = (1e-3, 1.0, 1e3, 1e30)


@dataclass(frozen=True)
class Candidate:
    """What an accelerator offers for one method: its ``call`` and the ``probes`` (inputs as
    the server passes them to the method) it must answer exactly as the reference does."""

    name: str
    call: Callable[[Any], Any]
    probes: Sequence[Any]

    @property
    def rows(self) -> int:
        return sum(len(p) for p in self.probes)


def adversarial_rows(n_features: int, seed: int = 20240601) -> list[np.ndarray]:
    """Probe batches of ``n_features`` columns: random rows at several scales, each extreme
    value in every column, single rows of each kind, and their float32 / int64 forms."""
    rng = np.random.default_rng(seed)
    # 16 rows a batch: an accelerator may serve only small requests (HistGradientBoosting's).
    batches = [rng.standard_normal((16, n_features)) * s for s in SCALES for _ in range(2)]
    extremes = np.repeat(np.array(EXTREMES)[:, None], n_features, axis=1)
    mixed = rng.standard_normal((len(EXTREMES), n_features))
    mixed[np.arange(len(EXTREMES)), rng.integers(n_features, size=len(EXTREMES))] = EXTREMES
    batches += [extremes, mixed, np.zeros((1, n_features))]
    batches += [row[None, :].copy() for row in mixed]
    batches += [batches[0][:1].copy(), batches[0].astype(np.float32)]
    largest = np.full((1, n_features), np.iinfo(np.int64).max, dtype=np.int64)
    batches += [(batches[1] * 100).astype(np.int64), largest]
    return batches


def verify(candidate: Candidate, reference: Callable[[Any], Any]) -> str | None:
    """``None`` when ``candidate`` answers every probe exactly as ``reference``; else the
    first difference, in words. Warnings (overflow, log of zero) on extreme probes are
    expected on both sides and dropped, so they do not become the server's load warnings."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        for index, probe in enumerate(candidate.probes):
            want = _answer(reference, probe)
            got = _answer(candidate.call, probe)
            difference = _difference(got, want)
            if difference is not None:
                return f"probe {index} ({_shape(probe)}): {difference}"
    return None


def same_output(got: Any, want: Any) -> str | None:
    """``None`` when two outputs are the same type, dtype, shape and bits; else what differs."""
    if type(got) is not type(want):
        return f"type {type(got).__name__} instead of {type(want).__name__}"
    got_arr, want_arr = np.asarray(got), np.asarray(want)
    if got_arr.dtype != want_arr.dtype or got_arr.shape != want_arr.shape:
        return (
            f"{got_arr.dtype}{list(got_arr.shape)} instead of "
            f"{want_arr.dtype}{list(want_arr.shape)}"
        )
    if got_arr.dtype.kind in "fc":
        same = np.array_equal(got_arr, want_arr, equal_nan=True) and np.array_equal(
            np.signbit(got_arr), np.signbit(want_arr)
        )
    else:
        same = np.array_equal(got_arr, want_arr)
    if not same:
        return f"values differ (e.g. {_first_unequal(got_arr, want_arr)})"
    return None


def _answer(call: Callable[[Any], Any], probe: Any) -> tuple[str, Any]:
    """``("ok", output)`` or the answer a refusal becomes: ``("400", …)`` / ``("500", …)``."""
    try:
        return "ok", call(probe.copy())
    except BadRequestError as exc:
        return "400", exc
    except INPUT_ERRORS as exc:
        return "400", exc
    except Exception as exc:
        return "500", exc


def _difference(got: tuple[str, Any], want: tuple[str, Any]) -> str | None:
    if got[0] != want[0]:
        return f"answers {_said(got)} where the framework answers {_said(want)}"
    return same_output(got[1], want[1]) if got[0] == "ok" else None


def _said(answer: tuple[str, Any]) -> str:
    kind, value = answer
    if kind == "ok":
        return "a result"
    return f"{kind} ({type(value).__name__}: {str(value)[:120]})"


def _shape(probe: Any) -> str:
    dtype = getattr(probe, "dtype", None)
    return f"{getattr(probe, 'shape', '?')} {dtype}" if dtype is not None else type(probe).__name__


def _first_unequal(got: np.ndarray, want: np.ndarray) -> str:
    flat_got, flat_want = got.reshape(-1), want.reshape(-1)
    for a, b in zip(flat_got.tolist(), flat_want.tolist(), strict=True):
        if a != b and not (a != a and b != b):
            return f"{a!r} instead of {b!r}"
    return "signs of zero"
