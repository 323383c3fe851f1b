"""scikit-learn's ``Pipeline(ColumnTransformer(OneHotEncoder / StandardScaler / passthrough /
drop), final estimator)`` on a DataFrame: the ColumnTransformer's matrix built straight from the
frame's columns, handed to the final estimator's own served call.

Why: on the realistic bench's one-hot pipeline (4 columns, 12 outputs, LogisticRegression) the
pipeline's ``predict_proba`` costs ~2.4 ms for one row, ~2.2 ms of it in ``ColumnTransformer
.transform``'s machinery (pandas column selection per transformer and per encoded column,
narwhals' frame detection, ``check_array`` and feature-name checks, joblib's sequential
dispatch); the matrix itself is a few dictionary look-ups and one subtraction and division per
number (``bench/profiles/pipeline.md``).

Exactness: it serves only a ``pandas.DataFrame`` whose columns are the fitted
``feature_names_in_`` in that order, with rows, where every encoded column's values are among
its learnt text categories (so unknown categories, None, NaN and numbers there go to
scikit-learn, whichever ``handle_unknown``) and every scaled or passed-through column is int64 /
float64 and finite; anything else, so every refusal, goes to the pipeline's own call. What it
builds repeats scikit-learn 1.9.1: one-hot ones at the learnt category's position; ``(x -
mean_) / scale_`` elementwise in float64 (int64 read as float64, as ``check_array`` does);
passthrough columns at their frame dtype (float64 if any is float64); pieces side by side in
``transformers_`` order (``np.hstack``'s dtype), or -- when ``sparse_output_`` was decided at
fit -- the encoder's CSR (int32 indices, the configured sparse interface) and the dense pieces
through ``scipy.sparse.hstack(...).tocsr()``, as ``ColumnTransformer._hstack`` does. At load
the matrix is compared bit for bit with ``ColumnTransformer.transform`` on the probe frames
(else no candidate), then ``verify`` compares the pipeline's answers. The final estimator's call
is the one ``accelerate`` verifies for it (``sklearn_linear`` for a dense matrix) or its own.

Refused at load (no candidate): subclasses of any of these classes; more than one step before
the final estimator; metadata routing; ``transformer_weights``; any configured output container
(``set_output``); OneHotEncoder with ``drop``, ``min_frequency`` / ``max_categories``, a dtype
other than float64 or categories that are not all text; FunctionTransformers other than the
identity (no ``func``, ``validate`` or ``kw_args``: what ``'passthrough'`` becomes); columns
selected by anything but a list of names or positions. Private APIs: pandas'
``DataFrame._get_column_array`` (else each column's Series) and ``_sklearn_output_config`` (the
``set_output`` choice, read only to refuse).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import sklearn  # this module is imported for scikit-learn's models only: both are loaded
from scipy import sparse

from modelshelf.accelerators.verify import Candidate, same_output

NAME = "the ColumnTransformer's matrix built from the frame's columns"
METHODS = ("predict", "predict_proba", "predict_log_proba", "decision_function")
HANDLE_UNKNOWN = ("error", "ignore", "infrequent_if_exist", "warn")
NUMBER_DTYPES = (np.dtype(np.int64), np.dtype(np.float64))
#: Values the fast path leaves to scikit-learn (the largest float it serves), by column kind.
ODD_TEXT = ("an unknown category", None, 3)
ODD_NUMBERS = (np.nan, -np.inf, "12", 1.7976931348623157e308)
#: How many of the probes are served frames of one kind (the first ones).
COVERED_PROBES = 5
logger = logging.getLogger(__name__)


class UncoveredInputError(Exception):
    """A value the fast path does not cover: the pipeline's own call answers."""


def candidate(model: Any, method: str, reference: Callable[[Any], Any]) -> Candidate | None:
    """The built matrix for a supported pipeline's ``method``, or ``None``."""
    if type(model).__name__ != "Pipeline" or method not in METHODS:
        return None  # before importing sklearn.compose: other models' start-up as it was
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    if type(model) is not Pipeline or len(model.steps) != 2:
        return None
    transformer, final = model.steps[0][1], model.steps[1][1]
    config = sklearn.get_config()
    if config.get("enable_metadata_routing") or config.get("transform_output") != "default":
        return None
    if type(transformer) is not ColumnTransformer or not callable(getattr(final, method, None)):
        return None
    build = matrix_builder(transformer)
    if build is None:
        return None
    from modelshelf.accelerators import accelerate

    final_call = accelerate(final, method, getattr(final, method), logger)
    final_served: Callable[[Any], Any] = final_call or getattr(final, method)
    probes = _probes(model)
    import pandas as pd

    # The matrix itself, bit for bit, before any answer is compared; the first probes (one
    # kind, all served) in one call: each transform costs ~2 ms of the server's start.
    joined = pd.concat(probes[:COVERED_PROBES], ignore_index=True)
    for probe in [joined, *probes[COVERED_PROBES:]]:
        try:
            got = build(probe)
        except UncoveredInputError:
            continue
        difference = _matrix_difference(got, transformer.transform(probe))
        if difference is not None:
            logger.warning(
                "%s: no candidate: on a probe frame of %d rows the built matrix differs from "
                "ColumnTransformer.transform's (%s)",
                NAME,
                len(probe),
                difference,
            )
            return None

    def served(X: Any) -> Any:
        try:
            matrix = build(X)
        except UncoveredInputError:
            return reference(X)
        return final_served(matrix)

    return Candidate(NAME, served, probes)


def matrix_builder(transformer: Any) -> Callable[[Any], Any] | None:
    """``ColumnTransformer.transform`` for the frames it covers (``UncoveredInputError`` for
    others), or ``None`` for a ColumnTransformer it does not reproduce."""
    import pandas as pd

    names = getattr(transformer, "feature_names_in_", None)
    if names is None or transformer.transformer_weights is not None:
        return None
    if _output_configured(transformer):
        return None
    names = [str(n) for n in names]
    width = len(names)
    pieces: list[Callable[[list[np.ndarray], int], Any]] = []
    sparse_output = bool(transformer.sparse_output_)
    for _, fitted, columns in transformer.transformers_:
        positions = _positions(columns, names)
        if positions is None:
            return None
        if not positions or (isinstance(fitted, str) and fitted == "drop"):
            continue  # scikit-learn skips empty selections and drops
        if isinstance(fitted, str):
            return None  # 'passthrough' is fitted as a FunctionTransformer
        if _output_configured(fitted):
            return None
        piece = _piece(fitted, positions, sparse_output)
        if piece is None:
            return None
        pieces.append(piece)
    if not pieces:
        return None
    read_columns = _column_reader(pd.DataFrame, names)

    def build(X: Any) -> Any:
        if type(X) is not pd.DataFrame or X.shape[1] != width or not len(X):
            raise UncoveredInputError
        if X.columns.tolist() != names:
            raise UncoveredInputError
        columns = read_columns(X)
        n = len(X)
        parts = [piece(columns, n) for piece in pieces]
        if sparse_output:
            return sparse.hstack(parts).tocsr()
        return np.hstack(parts)

    return build


def _column_reader(frame_type: Any, names: list[str]) -> Callable[[Any], list[Any]]:
    """The frame's columns as the arrays pandas stores (an ExtensionArray for extension
    dtypes: not served). pandas' ``DataFrame._get_column_array`` where it exists: a Series per
    column (``X[name]``) costs ~15 µs on a fresh frame, more than the whole matrix."""
    if callable(getattr(frame_type, "_get_column_array", None)):
        positions = range(len(names))
        return lambda X: [X._get_column_array(i) for i in positions]
    return lambda X: [_stored(X[name]) for name in names]


def _stored(column: Any) -> Any:
    """A Series' values as a numpy array for a numpy dtype, else its ExtensionArray."""
    return column.to_numpy() if isinstance(column.dtype, np.dtype) else column.array


def _output_configured(estimator: Any) -> bool:
    chosen = getattr(estimator, "_sklearn_output_config", None) or {}
    return chosen.get("transform", "default") != "default"


def _positions(columns: Any, names: Sequence[str]) -> list[int] | None:
    """A fitted entry's columns as positions in the frame; ``None`` for other selectors (a
    scalar selects a 1-D column: refused too)."""
    if not isinstance(columns, list | tuple | np.ndarray):
        return None
    found = []
    for column in columns:
        if isinstance(column, str) and column in names:
            found.append(names.index(column))
        elif isinstance(column, int | np.integer) and not isinstance(column, bool | np.bool_):
            if not 0 <= int(column) < len(names):
                return None
            found.append(int(column))
        else:
            return None
    return found


def _piece(
    fitted: Any, positions: list[int], sparse_output: bool
) -> Callable[[list[Any], int], Any] | None:
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    kind = type(fitted)
    if kind is OneHotEncoder:
        return _one_hot(fitted, positions, sparse_output)
    if kind is StandardScaler:
        return _scaled(fitted, positions)
    if kind is FunctionTransformer:
        plain = fitted.func is None and not fitted.validate and not fitted.kw_args
        return _passed(positions) if plain else None
    return None


def _one_hot(
    encoder: Any, positions: list[int], sparse_output: bool
) -> Callable[[list[Any], int], Any] | None:
    """The encoder's output for text values it learnt (``UncoveredInputError`` for any other
    value): dense where the encoder or the ColumnTransformer makes it dense."""
    infrequent = encoder.min_frequency is not None or encoder.max_categories is not None
    if encoder.drop is not None or getattr(encoder, "drop_idx_", None) is not None or infrequent:
        return None
    if np.dtype(encoder.dtype) != np.float64 or encoder.handle_unknown not in HANDLE_UNKNOWN:
        return None
    if len(encoder.categories_) != len(positions):
        return None
    tables: list[dict[str, int]] = []
    offset = 0  # each column's first output column
    for categories in encoder.categories_:
        if categories.dtype != object or not all(type(c) is str for c in categories):
            return None
        tables.append({value: offset + i for i, value in enumerate(categories)})
        offset += len(categories)
    width, dense = offset, not (encoder.sparse_output and sparse_output)
    pairs = list(zip(positions, tables, strict=True))
    count = len(pairs)

    def indices_of(columns: list[Any], n: int) -> np.ndarray:
        found = np.empty((n, count), dtype=np.int64)
        for j, (position, table) in enumerate(pairs):
            column = columns[position]
            if type(column) is not np.ndarray or column.dtype != object:
                raise UncoveredInputError
            get = table.get
            try:
                for i, value in enumerate(column):
                    index = get(value)
                    if index is None:
                        raise UncoveredInputError
                    found[i, j] = index
            except TypeError:  # an unhashable cell (a list, a dict): scikit-learn's to refuse
                raise UncoveredInputError from None
        return found

    def encoded(columns: list[Any], n: int) -> Any:
        found = indices_of(columns, n)
        if dense:
            out = np.zeros((n, width))
            out[np.arange(n)[:, None], found] = 1.0
            return out
        indptr = np.arange(0, n * count + 1, count, dtype=np.int32)
        out = sparse.csr_array(
            (np.ones(n * count), found.ravel().astype(np.int32), indptr),
            shape=(n, width),
            dtype=np.float64,
        )
        return _sparse_interface(out)

    return encoded


def _sparse_interface(out: Any) -> Any:
    """The encoder's CSR in the interface scikit-learn's configuration asks for."""
    if sklearn.get_config().get("sparse_interface", "spmatrix") == "spmatrix":
        return sparse.csr_matrix(out)
    return out


def _scaled(scaler: Any, positions: list[int]) -> Callable[[list[Any], int], Any] | None:
    mean = scaler.mean_ if scaler.with_mean else None
    scale = scaler.scale_ if scaler.with_std else None
    for statistic in (mean, scale):
        if statistic is not None and (
            type(statistic) is not np.ndarray
            or statistic.dtype != np.float64
            or statistic.shape != (len(positions),)
        ):
            return None

    def scaled(columns: list[Any], n: int) -> np.ndarray:
        out = _numbers(columns, positions, n, np.float64)
        if mean is not None:
            out -= mean
        if scale is not None:
            out /= scale
        return out

    return scaled


def _passed(positions: list[int]) -> Callable[[list[Any], int], np.ndarray]:
    def passed(columns: list[Any], n: int) -> np.ndarray:
        dtypes = {columns[p].dtype for p in positions}
        kind = np.float64 if np.dtype(np.float64) in dtypes else np.int64
        return _numbers(columns, positions, n, kind)

    return passed


def _numbers(columns: list[Any], positions: list[int], n: int, dtype: Any) -> np.ndarray:
    """The columns side by side as ``dtype``; ``UncoveredInputError`` unless each is finite
    int64 / float64."""
    out = np.empty((n, len(positions)), dtype=dtype)
    for j, position in enumerate(positions):
        column = columns[position]
        if type(column) is not np.ndarray or column.dtype not in NUMBER_DTYPES:
            raise UncoveredInputError
        out[:, j] = column
    if out.dtype.kind == "f" and not np.isfinite(out).all():
        raise UncoveredInputError
    return out


def _matrix_difference(got: Any, want: Any) -> str | None:
    if sparse.issparse(got) or sparse.issparse(want):
        if type(got) is not type(want) or got.shape != want.shape:
            return f"{type(got).__name__} instead of {type(want).__name__}"
        for part in ("data", "indices", "indptr"):
            found = same_output(getattr(got, part), getattr(want, part))
            if found is not None:
                return f"{part}: {found}"
        return None
    return same_output(got, want)


def _probes(model: Any) -> list[Any]:
    """Frames in the fitted columns: learnt categories with numbers at several scales, one row
    and many; each value the fast path leaves to scikit-learn (unknown, None, NaN, a number
    where text was learnt, ±inf, text where numbers were learnt); columns reordered, missing
    and extra; the numbers as float32 and int64."""
    import pandas as pd

    transformer = model.steps[0][1]
    names = [str(n) for n in transformer.feature_names_in_]
    learnt: dict[str, list[Any]] = {}
    for _, fitted, columns in transformer.transformers_:
        categories = getattr(fitted, "categories_", None)
        positions = _positions(columns, names) if not isinstance(fitted, str) else None
        if categories is not None and positions:
            for position, values in zip(positions, categories, strict=False):
                learnt[names[position]] = list(values)
    rng = np.random.default_rng(20)

    def frame(rows: int, scale: float = 1.0) -> Any:
        data: dict[str, Any] = {}
        for name in names:
            if name in learnt:
                values = learnt[name]
                data[name] = np.array(
                    [values[i] for i in rng.integers(len(values), size=rows)], dtype=object
                )
            else:
                data[name] = np.round(rng.standard_normal(rows) * scale, 3)
        return pd.DataFrame(data, columns=names)

    probes = [frame(1), frame(16), frame(16, 1e3), frame(300, 10.0), frame(1, 1e30)]
    texts = [name for name in names if name in learnt]
    numbers = [name for name in names if name not in learnt]
    for columns, odd in ((texts, ODD_TEXT), (numbers, ODD_NUMBERS)):
        for bad in odd if columns else ():
            # One probe per value, in every such column on a row of its own: every reference
            # call here costs ~2.5 ms of the server's start (the tests probe column by column).
            probe = frame(len(columns) + 1)
            for row, name in enumerate(columns):
                values = probe[name].tolist()
                values[row] = bad
                probe[name] = pd.Series(values)  # the dtype pandas infers, as a decoder's
            probes.append(probe)
    integers = frame(8)
    for name in names:
        if name not in learnt:
            integers[name] = np.round(integers[name] * 10).astype(np.int64)
    singles = frame(8)
    for name in names:
        if name not in learnt:
            singles[name] = singles[name].astype(np.float32)
    base = frame(4)
    probes += [integers, singles, base[names[::-1]], base[names[1:]]]
    probes.append(base.assign(extra_column=1.0))
    return probes
