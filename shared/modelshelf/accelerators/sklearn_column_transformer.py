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
each probe frame is built once; on those it serves, the matrix is compared bit for bit with
``ColumnTransformer.transform`` (one call per dtype kind; else no candidate), then ``verify``
compares the pipeline's answers on them. The frames it refuses are not handed to ``verify``:
its call on them is the pipeline's own, so comparing could not fail and called scikit-learn
twice per frame (that, and the frames made once from their columns: ~0.12 -> ~0.04 s of CPU
at load for the realistic bench's pipeline). The final estimator's call is the one
``accelerate`` verifies for it (``sklearn_linear`` for a dense matrix) or its own; the load
log says which in the pipeline's one line.

Refused at load (no candidate; one INFO line names the first thing not reproduced): subclasses
of any of these classes; more than one step before the final estimator; metadata routing;
``transformer_weights``; any configured output container (``set_output``); OneHotEncoder with
``drop``, ``min_frequency`` / ``max_categories``, a dtype other than float64 or categories that
are not all text; FunctionTransformers other than the identity (no ``func``, ``validate`` or
``kw_args``: what ``'passthrough'`` becomes); columns selected by anything but a list of names
or positions. Private APIs: pandas'
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
logger = logging.getLogger(__name__)
#: The final estimator's own ``accelerate`` log: its INFO line (the call that serves it, or
#: "the framework's own call") is left out -- read just before the pipeline's line it said the
#: opposite of what serves -- and said in the pipeline's line instead; its warnings are kept.
final_step_logger = logging.getLogger(f"{__name__}.final_step")
final_step_logger.addFilter(lambda record: record.levelno > logging.INFO)


class UncoveredInputError(Exception):
    """A value the fast path does not cover: the pipeline's own call answers."""


class NotReproducedError(Exception):
    """What the fast path does not reproduce, in words (the load log's reason): the pipeline
    keeps its own call."""


def candidate(model: Any, method: str, reference: Callable[[Any], Any]) -> Candidate | None:
    """The built matrix for a supported pipeline's ``method``, or ``None`` (for a pipeline, the
    first thing not reproduced is logged at INFO)."""
    if type(model).__name__ != "Pipeline":
        return None  # before importing sklearn.compose: other models' start-up as it was
    try:
        transformer, final, build = _covered_parts(model, method)
    except NotReproducedError as exc:
        logger.info("%s.%s: the ColumnTransformer fast path declines: %s",
                    type(model).__name__, method, exc)  # fmt: skip
        return None
    probes = probe_frames(model)
    served_probes = _served_probes(transformer, build, probes)
    if served_probes is None:
        return None
    from modelshelf.accelerators import accelerate

    own = getattr(final, method)
    final_call = accelerate(final, method, own, final_step_logger)
    final_served: Callable[[Any], Any] = final_call or own
    final_name = f"{type(final).__name__}.{method}"
    into = (
        f"{final_name}'s fast path ({final_call.description})"
        if final_call is not None
        else f"{final_name}'s own call"
    )

    def served(X: Any) -> Any:
        try:
            matrix = build(X)
        except UncoveredInputError:
            return reference(X)
        return final_served(matrix)

    # Only the frames it serves go to ``verify``: on any other, ``served`` is ``reference``
    # itself (checked above: ``build`` refuses it), so comparing would call scikit-learn twice
    # for an answer equal by construction (~2/3 of the verification's cost).
    return Candidate(f"{NAME}, then {into}", served, served_probes)


def _covered_parts(model: Any, method: str) -> tuple[Any, Any, Callable[[Any], Any]]:
    """The pipeline's ColumnTransformer, final estimator and built matrix;
    ``NotReproducedError`` naming the first thing not covered."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    if type(model) is not Pipeline:
        raise NotReproducedError(f"a subclass of Pipeline ({type(model).__qualname__})")
    if method not in METHODS:
        raise NotReproducedError(f"{method} is not one of {', '.join(METHODS)}")
    if len(model.steps) != 2:
        raise NotReproducedError(
            f"{len(model.steps)} steps (only a ColumnTransformer then the final estimator)"
        )
    config = sklearn.get_config()
    if config.get("enable_metadata_routing"):
        raise NotReproducedError("scikit-learn's metadata routing is on")
    if config.get("transform_output") != "default":
        raise NotReproducedError(f"transform_output={config.get('transform_output')!r}")
    (first, transformer), (last, final) = model.steps
    if type(transformer) is not ColumnTransformer:
        raise NotReproducedError(
            f"its first step {first!r} is a {type(transformer).__qualname__}, not a "
            "ColumnTransformer"
        )
    if not callable(getattr(final, method, None)):
        raise NotReproducedError(f"its final step {last!r} has no {method}")
    return transformer, final, _matrix_builder(transformer)


def _served_probes(
    transformer: Any, build: Callable[[Any], Any], probes: list[Any]
) -> list[Any] | None:
    """The probes ``build`` serves, once its matrix was found bit for bit
    ``ColumnTransformer.transform``'s; ``None`` (a WARNING) when it differs or when none is
    served. Each probe is built once; those of one kind (dtypes) are transformed in one call:
    each transform costs ~2 ms of the server's start."""
    import pandas as pd

    served: dict[tuple[str, ...], list[Any]] = {}
    for probe in probes:
        try:
            build(probe)
        except UncoveredInputError:
            continue  # the pipeline's own call: nothing of the fast path to compare
        served.setdefault(tuple(str(d) for d in probe.dtypes), []).append(probe)
    if not served:
        logger.warning("%s: no candidate: it serves none of the probe frames", NAME)
        return None
    for frames in served.values():
        joined = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        difference = _matrix_difference(build(joined), transformer.transform(joined))
        if difference is not None:
            logger.warning(
                "%s: no candidate: on a probe frame of %d rows the built matrix differs from "
                "ColumnTransformer.transform's (%s)",
                NAME,
                len(joined),
                difference,
            )
            return None
    return [probe for frames in served.values() for probe in frames]


def matrix_builder(transformer: Any) -> Callable[[Any], Any] | None:
    """``ColumnTransformer.transform`` for the frames it covers (``UncoveredInputError`` for
    others), or ``None`` for a ColumnTransformer it does not reproduce."""
    try:
        return _matrix_builder(transformer)
    except NotReproducedError:
        return None


def _matrix_builder(transformer: Any) -> Callable[[Any], Any]:
    """``matrix_builder``'s build; ``NotReproducedError`` naming the first thing it does not
    reproduce."""
    import pandas as pd

    names = getattr(transformer, "feature_names_in_", None)
    if names is None:
        raise NotReproducedError("the ColumnTransformer was fitted without column names")
    if transformer.transformer_weights is not None:
        raise NotReproducedError("the ColumnTransformer has transformer_weights")
    if (container := _output_container(transformer)) is not None:
        raise NotReproducedError(f"the ColumnTransformer's set_output(transform={container!r})")
    names = [str(n) for n in names]
    width = len(names)
    pieces: list[Callable[[list[np.ndarray], int], Any]] = []
    sparse_output = bool(transformer.sparse_output_)
    for entry, fitted, columns in transformer.transformers_:
        positions = _positions(columns, names)
        if positions is None:
            raise NotReproducedError(
                f"transformer {entry!r} selects its columns by {columns!r} (only a list of "
                "column names or positions)"
            )
        if not positions or (isinstance(fitted, str) and fitted == "drop"):
            continue  # scikit-learn skips empty selections and drops
        if isinstance(fitted, str):  # 'passthrough' is fitted as a FunctionTransformer
            raise NotReproducedError(f"transformer {entry!r} is {fitted!r}, not fitted")
        if (container := _output_container(fitted)) is not None:
            raise NotReproducedError(f"transformer {entry!r}: set_output(transform={container!r})")
        try:
            pieces.append(_piece(fitted, positions, sparse_output, names))
        except NotReproducedError as exc:
            raise NotReproducedError(f"transformer {entry!r}: {exc}") from None
    if not pieces:
        raise NotReproducedError("the ColumnTransformer drops every column")
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


def _output_container(estimator: Any) -> str | None:
    """The container ``set_output`` configured for ``estimator``, or ``None``."""
    chosen = (getattr(estimator, "_sklearn_output_config", None) or {}).get("transform")
    return None if chosen in (None, "default") else str(chosen)


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
    fitted: Any, positions: list[int], sparse_output: bool, names: list[str]
) -> Callable[[list[Any], int], Any]:
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    kind = type(fitted)
    if kind is OneHotEncoder:
        return _one_hot(fitted, positions, sparse_output, names)
    if kind is StandardScaler:
        return _scaled(fitted, positions)
    if kind is FunctionTransformer:
        if fitted.func is None and not fitted.validate and not fitted.kw_args:
            return _passed(positions)
        raise NotReproducedError("a FunctionTransformer with func, validate or kw_args")
    served = (OneHotEncoder, StandardScaler, FunctionTransformer)
    parent = next((c.__name__ for c in served if isinstance(fitted, c)), None)
    raise NotReproducedError(
        f"a subclass of {parent} ({kind.__qualname__})"
        if parent is not None
        else f"a {kind.__qualname__} (only OneHotEncoder, StandardScaler, 'passthrough', 'drop')"
    )


def _one_hot(
    encoder: Any, positions: list[int], sparse_output: bool, names: list[str]
) -> Callable[[list[Any], int], Any]:
    """The encoder's output for text values it learnt (``UncoveredInputError`` for any other
    value): dense where the encoder or the ColumnTransformer makes it dense."""
    for option in ("drop", "min_frequency", "max_categories"):
        if getattr(encoder, option) is not None:
            raise NotReproducedError(f"OneHotEncoder with {option}={getattr(encoder, option)!r}")
    if getattr(encoder, "drop_idx_", None) is not None:
        raise NotReproducedError("OneHotEncoder with drop")
    if np.dtype(encoder.dtype) != np.float64:
        raise NotReproducedError(f"OneHotEncoder with dtype={np.dtype(encoder.dtype)}")
    if encoder.handle_unknown not in HANDLE_UNKNOWN:
        raise NotReproducedError(f"OneHotEncoder with handle_unknown={encoder.handle_unknown!r}")
    if len(encoder.categories_) != len(positions):
        raise NotReproducedError(
            f"OneHotEncoder learnt {len(encoder.categories_)} columns for {len(positions)}"
        )
    tables: list[dict[str, int]] = []
    offset = 0  # each column's first output column
    for position, categories in zip(positions, encoder.categories_, strict=True):
        if categories.dtype != object or not all(type(c) is str for c in categories):
            learnt = "not only text" if categories.dtype == object else str(categories.dtype)
            raise NotReproducedError(
                f"OneHotEncoder learnt categories {learnt} for column {names[position]!r} "
                f"(e.g. {categories[0]!r}): only text categories are served"
            )
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


def _scaled(scaler: Any, positions: list[int]) -> Callable[[list[Any], int], Any]:
    mean = scaler.mean_ if scaler.with_mean else None
    scale = scaler.scale_ if scaler.with_std else None
    for statistic in (mean, scale):
        if statistic is not None and (
            type(statistic) is not np.ndarray
            or statistic.dtype != np.float64
            or statistic.shape != (len(positions),)
        ):
            raise NotReproducedError("StandardScaler whose statistics are not float64 arrays")

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


def probe_row(model: Any) -> Any:
    """The first of ``probe_frames``: one row of learnt categories and small numbers, alone
    (the metadata's probe call, ``serve.output_probe``, needs no more)."""
    import pandas as pd

    return pd.DataFrame(_drawer(model)[2](1))


def _drawer(
    model: Any,
) -> tuple[list[str], dict[str, np.ndarray], Callable[..., dict[str, Any]]]:
    """The fitted columns, the categories learnt for some, and ``drawn(rows, scale)``: columns
    of random learnt categories and numbers at ``scale`` (seeded: the same each load)."""
    transformer = model.steps[0][1]
    names = [str(n) for n in transformer.feature_names_in_]
    learnt: dict[str, np.ndarray] = {}
    for _, fitted, columns in transformer.transformers_:
        categories = getattr(fitted, "categories_", None)
        positions = _positions(columns, names) if not isinstance(fitted, str) else None
        if categories is not None and positions:
            for position, values in zip(positions, categories, strict=False):
                learnt[names[position]] = np.array(list(values), dtype=object)
    rng = np.random.default_rng(20)

    def drawn(rows: int, scale: float = 1.0) -> dict[str, Any]:
        return {
            name: learnt[name][rng.integers(len(learnt[name]), size=rows)]
            if name in learnt
            else np.round(rng.standard_normal(rows) * scale, 3)
            for name in names
        }

    return names, learnt, drawn


def probe_frames(model: Any) -> list[Any]:
    """Frames in the fitted columns: learnt categories with numbers at several scales, one row
    and many; each value the fast path leaves to scikit-learn (unknown, None, NaN, a number
    where text was learnt, ±inf, text where numbers were learnt); columns reordered, missing
    and extra; the numbers as float32 and int64. Each frame is made once from its columns
    (assigning columns to a frame cost most of their ~7 ms)."""
    import pandas as pd

    names, learnt, drawn = _drawer(model)
    probes = [
        pd.DataFrame(drawn(rows, scale))
        for rows, scale in ((1, 1.0), (16, 1.0), (16, 1e3), (300, 10.0), (1, 1e30))
    ]
    texts = [name for name in names if name in learnt]
    numbers = [name for name in names if name not in learnt]
    for columns, odd in ((texts, ODD_TEXT), (numbers, ODD_NUMBERS)):
        for bad in odd if columns else ():
            # One probe per value, in every such column on a row of its own: every reference
            # call here costs ~2.5 ms of the server's start (the tests probe column by column).
            data = drawn(len(columns) + 1)
            for row, name in enumerate(columns):
                values = data[name].tolist()
                values[row] = bad
                data[name] = values  # a list: the dtype pandas infers, as a decoder's
            probes.append(pd.DataFrame(data))
    integers = drawn(8)
    singles = drawn(8)
    for name in numbers:
        integers[name] = np.round(integers[name] * 10).astype(np.int64)
        singles[name] = singles[name].astype(np.float32)
    base = drawn(4)
    probes += [pd.DataFrame(integers), pd.DataFrame(singles)]
    probes.append(pd.DataFrame({name: base[name] for name in names[::-1]}))
    probes.append(pd.DataFrame({name: base[name] for name in names[1:]}))
    probes.append(pd.DataFrame({**base, "extra_column": np.ones(4)}))
    return probes
