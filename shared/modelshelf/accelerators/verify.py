"""The one verifier: an accelerator's call against the framework's own, at load.

A candidate is used only if, on every probe input, both answer the same way: both return
outputs of the same type, dtype and shape whose values are bit-identical (NaN where NaN, the
sign of zero included), or both refuse the input with the same kind of answer (a 400 -- what
``ModelServer.serve`` makes of ``BadRequestError`` and ``INPUT_ERRORS`` -- or a 500). The probe
inputs are the accelerator's own (what its model's splits or statistics make interesting) and
``adversarial_rows``: several scales, zeros, the extremes of float64 and float32, values that
overflow float32, subnormals, -0.0, ±inf and NaN, alone and in batches, as float64, float32
and int64.

The framework is not called once per probe: its per-call cost (a forest's joblib dispatch over
its trees, ~3 ms; HistGradientBoosting's OpenMP region per tree) made verification the largest
part of a random forest's start (31 calls, ~90 ms of ~120). Probes of one kind (type, dtype,
columns) are stacked into one call and its answer is split back into the probes' rows, as the
server's adaptive batching does with requests. A candidate must still match, on every probe,
the framework's answer for that probe's rows; reading that answer from a stacked call assumes a
row's answer does not depend on the call's other rows (what adaptive batching assumes, and
checks, too), so:

* a stack the framework refuses is split in halves until each refused part is one probe, whose
  refusal is then the framework's own answer to that probe (the probes are ordered finite, then
  NaN, then infinite, so the accepted ones share few calls);
* the framework's rows must not depend on the other rows of the call (a BLAS product may round a
  1-row call differently): per kind, a single-row probe and the largest one are also called
  alone and must match their rows of the stack, else that kind is answered one probe at a time;
* a candidate's answer that differs from its rows of a stack is compared again with the
  framework's answer to that probe alone before it counts as a difference.

So a random forest's verification makes 8 accepted framework calls (and ~20 refusals, 0.1 ms
each) instead of 31 calls, HistGradientBoosting's 6 instead of 35: 134 -> 75 and 98 -> 52 ms of
CPU at start (the realistic bench's models).
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
#: Kinds with at most this many probes are called one probe at a time: stacking them and
#: checking the stack's rows (two more calls) would cost as many calls.
STACK_MIN_PROBES = 3


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
        wants = reference_answers(reference, candidate.probes)
        for index, probe in enumerate(candidate.probes):
            got = _answer(candidate.call, probe)
            want, stacked = wants[index]
            difference = _difference(got, want)
            if difference is not None and stacked:  # confirmed against the probe's own call
                difference = _difference(got, _answer(reference, probe))
            if difference is not None:
                return f"probe {index} ({_shape(probe)}): {difference}"
    return None


def reference_answers(
    reference: Callable[[Any], Any], probes: Sequence[Any]
) -> list[tuple[tuple[str, Any], bool]]:
    """``reference``'s answer to each probe, and whether it was cut from a stacked call (see the
    module's docstring): probes of one kind share calls; any other probe is called alone."""
    answers: dict[int, tuple[tuple[str, Any], bool]] = {}
    kinds: dict[Any, list[int]] = {}
    for index, probe in enumerate(probes):
        kinds.setdefault(_kind(probe), []).append(index)
    for kind, indices in kinds.items():
        if kind is None or len(indices) <= STACK_MIN_PROBES:
            answers.update(_answered_alone(reference, probes, indices))
            continue
        ordered = sorted(indices, key=lambda i: _risk(probes[i]))
        found: dict[int, tuple[tuple[str, Any], bool]] = {}
        _answer_stacked(reference, probes, ordered, found)
        if not _rows_independent(reference, probes, found):
            found = _answered_alone(reference, probes, indices)
        answers.update(found)
    return [answers[index] for index in range(len(probes))]


def _answer_stacked(
    reference: Callable[[Any], Any],
    probes: Sequence[Any],
    indices: Sequence[int],
    found: dict[int, tuple[tuple[str, Any], bool]],
) -> None:
    """Answers for ``indices`` (probes of one kind) from as few calls as the refusals allow."""
    if len(indices) == 1:
        found[indices[0]] = (_answer(reference, probes[indices[0]]), False)
        return
    parts = [probes[i] for i in indices]
    try:
        stacked = _stack(parts)
    except (TypeError, ValueError):  # probes that do not stack: one call each
        found.update(_answered_alone(reference, probes, indices))
        return
    kind, output = _answer(reference, stacked)
    if kind == "ok":
        rows = _split(output, [len(p) for p in parts])
        if rows is None:  # no array of one answer per row: one call per probe
            found.update(_answered_alone(reference, probes, indices))
        else:
            for index, part in zip(indices, rows, strict=True):
                found[index] = (("ok", part), True)
        return
    half = len(indices) // 2
    _answer_stacked(reference, probes, indices[:half], found)
    _answer_stacked(reference, probes, indices[half:], found)


def _answered_alone(
    reference: Callable[[Any], Any], probes: Sequence[Any], indices: Sequence[int]
) -> dict[int, tuple[tuple[str, Any], bool]]:
    """``reference``'s answer to each probe of ``indices``, one call per probe."""
    return {index: (_answer(reference, probes[index]), False) for index in indices}


def _rows_independent(
    reference: Callable[[Any], Any],
    probes: Sequence[Any],
    found: dict[int, tuple[tuple[str, Any], bool]],
) -> bool:
    """Whether a single-row probe and the largest one, called alone, get exactly their rows of
    the stacked calls (and are accepted alone as in the stack)."""
    stacked = [i for i, (_, from_stack) in found.items() if from_stack]
    if not stacked:
        return True
    single = [i for i in stacked if len(probes[i]) == 1]
    largest = max(stacked, key=lambda i: len(probes[i]))
    for index in {*single[:1], largest}:
        if _difference(_answer(reference, probes[index]), found[index][0]) is not None:
            return False
    return True


def _kind(probe: Any) -> Any:
    """What probes must share to be stacked: type, dtype(s) and columns; ``None`` for inputs
    that are not 2-D arrays or data frames (called one by one)."""
    if isinstance(probe, np.ndarray):
        return (np.ndarray, probe.dtype.str, probe.shape[1:]) if probe.ndim == 2 else None
    columns, dtypes = getattr(probe, "columns", None), getattr(probe, "dtypes", None)
    if columns is None or dtypes is None or not hasattr(probe, "iloc"):
        return None
    return (type(probe), tuple(columns), tuple(str(d) for d in dtypes))


def _risk(probe: Any) -> tuple[bool, bool, float]:
    """Sort key: finite probes first (by magnitude), then NaN, then infinities -- so the probes
    a framework refuses sit together and the accepted ones share calls."""
    try:
        values = np.asarray(probe, dtype=np.float64)
    except (TypeError, ValueError):  # not numbers: last, with the other suspects
        return (True, True, float("inf"))
    finite = np.isfinite(values)
    largest = float(np.abs(values[finite]).max()) if finite.any() else 0.0
    return (not finite.all(), bool(np.isinf(values).any()), largest)


def _stack(parts: Sequence[Any]) -> Any:
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts)
    import pandas as pd  # the probes are data frames: pandas is loaded

    return pd.concat(parts, ignore_index=True)


def _split(output: Any, lengths: Sequence[int]) -> list[np.ndarray] | None:
    """``output``'s rows per probe, or ``None`` when it is not an array of one row per input
    row."""
    if not isinstance(output, np.ndarray) or output.ndim == 0 or len(output) != sum(lengths):
        return None
    return np.split(output, np.cumsum(lengths)[:-1])


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
