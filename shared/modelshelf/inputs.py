"""Request payloads in the shapes frameworks take: 2-D numbers, or a DataFrame in a model's
column order (each column of the type the model declares, when it declares one). Shared by every
server so that the same bad payload gets the same 400 everywhere.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

from modelshelf.errors import BadRequestError

_pandas: Any = None


def pandas_module() -> Any:
    """pandas, imported by its first caller and then kept: a global read per request rather
    than an import statement, and no import at start for models that only take arrays. Servers
    whose models take frames call it at load (``as_frame`` callers)."""
    global _pandas
    if _pandas is None:
        from modelshelf.deferred_imports import import_late

        _pandas = import_late("pandas")  # by a request: frozen with the loaded objects
    return _pandas


def as_2d_numbers(X: Any, n_features: int | None, what: str = "the input") -> np.ndarray:
    """``X`` as a 2-D float array with ``n_features`` columns, or a 400 that says what was wrong."""
    if (  # what seldon-core hands over for an ``ndarray`` of numbers: nothing to convert
        type(X) is np.ndarray
        and X.ndim == 2
        and X.dtype.kind in "biuf"
        and X.shape[0]
        and (n_features is None or X.shape[1] == n_features)
    ):
        return X
    if isinstance(X, dict | str | bytes):
        raise BadRequestError(
            f"{what} must be an array of rows of numbers (ndarray or tensor), "
            f"got {type(X).__name__}"
        )
    try:
        arr = np.asarray(X)
    except ValueError as exc:  # ragged nested lists
        raise BadRequestError(f"{what} must be a rectangular array of rows: {exc}") from exc
    if arr.dtype.kind not in "biuf":
        try:
            arr = arr.astype(np.float64)
        except (ValueError, TypeError) as exc:
            raise BadRequestError(
                f"{what} must hold numbers only; could not read {_sample(arr)} as a number"
            ) from exc
    if arr.ndim == 1 and arr.size:
        raise flat_values_error(what, arr.size, n_features)
    if arr.ndim != 2:
        raise BadRequestError(f"{what} must be 2-D (rows x features), got shape {list(arr.shape)}")
    if arr.shape[0] == 0:
        raise BadRequestError(f"{what} is empty: expected at least one row")
    if n_features is not None and arr.shape[1] != n_features:
        raise BadRequestError(f"expected {n_features} features per row, got {arr.shape[1]}")
    return arr


def flat_values_error(what: str, count: int, width: int | None) -> BadRequestError:
    """A 400 for a flat list of values where rows were expected. Reading it as one row would
    guess (seldon-core's servers hand it to the model, which refuses a 1-D array; V2 and
    KServe V1 refuse it by name): the same answer on every protocol."""
    rows = f"rows of {width} values" if width else "rows of values"
    shape = f"[1, {width}]" if width else "[1, n]"
    return BadRequestError(
        f"expected rows: {what} is a flat list of {count} values (shape [{count}]), but this "
        f"model takes {rows}; send one row as [[…]], shape {shape}"
    )


def _sample(arr: np.ndarray) -> str:
    for value in arr.ravel()[:1000]:
        try:
            float(value)
        except (ValueError, TypeError):
            return quoted(value)
    return "a value"


#: The most characters of a client's value a message quotes: a huge cell is not copied whole
#: into the 400 and the warning log.
QUOTED_VALUE_LIMIT = 60
#: The most characters of a framework's words a message quotes (they may quote a value whole).
QUOTED_WORDS_LIMIT = 160


def shortened(text: str, limit: int = QUOTED_VALUE_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, the last an ellipsis when it was longer."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def quoted(value: Any, limit: int = QUOTED_VALUE_LIMIT) -> str:
    """A client's value as a message quotes it: its ``repr`` (numpy scalars as the Python
    values they hold), ``shortened``. Every refusal that quotes a value uses it."""
    if isinstance(value, np.generic):
        value = value.item()
    return shortened(repr(value), limit)


#: The column types ``as_frame`` casts to, and how a 400 names each (MLflow's type names).
COLUMN_TYPES = {
    "string": "string",
    "boolean": "boolean",
    "int32": "integer (32-bit)",
    "int64": "long (64-bit integer)",
    "float32": "float (32-bit)",
    "float64": "double",
    "datetime": "datetime",
    "binary": "binary (base64)",
}
#: How text that pandas may read as a number begins, when it begins with a letter ("inf",
#: "Infinity"; "nan" for versions whose ``to_numeric`` reads it), lower-cased.
_NUMBER_WORD_STARTS = frozenset({"inf", "nan"})
_TRUE_WORDS = {"true": True, "1": True, "1.0": True, "false": False, "0": False, "0.0": False}


def as_frame(
    X: Any,
    names: Any,
    columns: list[str] | None,
    what: str = "the model's columns",
    column_types: Mapping[str, str] | None = None,
    optional: Collection[str] = (),
    text_columns: Collection[str] = (),
    drop_extra: bool = False,
) -> Any:
    """A DataFrame in ``columns``' order, from rows plus ``names`` or from ``jsonData`` (records
    or a mapping of columns); names that do not match ``columns`` get a 400 naming both, except
    with ``drop_extra`` (a model that ignores columns it does not use, as a ``ColumnTransformer``
    selecting by name does): there names beyond ``columns`` are dropped, missing ones refused.

    ``column_types`` (column -> a ``COLUMN_TYPES`` key) casts each column to its declared type,
    whatever JSON or seldon-core made of it (seldon-core turns a row mixing strings and numbers
    into one array of strings): a value that cannot be read as its column's type is a 400 naming
    the column, the value and the type, and columns the model does not have are ignored (both
    as MLflow does). Without it, text columns of rows become numbers where they all can, except
    ``text_columns`` (columns the model learnt as text: "12" there is a category, not the number
    12), and a DataFrame's columns keep the types they were sent with. ``optional`` columns may
    be absent (MLflow's ``required=False``)."""
    pd = pandas_module()
    if _is_records(X):
        if columns and not column_types and (ordered := _records_in_order(X, columns)) is not None:
            return ordered
        frame = _records_frame(X)
    elif isinstance(X, pd.DataFrame) and not column_types:
        # Typed columns (V2's pd codec: one tensor per column): text stays text, as the
        # client typed it ("12" in a BYTES column is a category, not the number 12).
        frame = X
    else:
        if isinstance(X, str | bytes):
            raise BadRequestError(
                f"expected rows of values for {what} {columns} (rows with column names, or "
                f"records by column name), got {type(X).__name__}"
            )
        arr = X if isinstance(X, np.ndarray) else np.asarray(X, dtype=object)
        if arr.ndim == 1 and arr.size and columns:
            raise flat_values_error("the input", arr.size, len(columns))
        if arr.ndim != 2 or arr.shape[0] == 0:
            raise BadRequestError(
                f"expected rows of values for {what} {columns} (rows with column names, or "
                f"records by column name), got shape {list(arr.shape)}"
            )
        given = [str(n) for n in names] if names is not None and len(names) else columns
        if given is None:
            given = [str(i) for i in range(arr.shape[1])]
        if len(given) != arr.shape[1]:
            raise BadRequestError(f"expected {len(given)} features per row, got {arr.shape[1]}")
        if column_types and not _all_already(arr, given, column_types):
            _check_names(given, columns, what, True, optional)
            wanted = [c for c in columns if c in given] if columns else given
            where = {name: i for i, name in enumerate(given)}
            typed = {
                name: typed_values(arr[:, where[name]], column_types.get(name), name)
                for name in wanted
            }
            return pd.DataFrame(typed, columns=wanted)
        if arr.dtype.kind in "OUS" and not column_types and given and _unique(given):
            return _text_rows_frame(arr, given, columns, what, optional, text_columns, drop_extra)
        frame = pd.DataFrame(arr, columns=given)
        if arr.dtype.kind in "OUS" and not column_types:
            frame = frame.apply(
                lambda column: (
                    column if column.name in text_columns else _numbers_where_possible(column)
                )
            )
    if not columns:
        return frame
    _check_names(list(frame.columns), columns, what, drop_extra or bool(column_types), optional)
    if optional:
        columns = [c for c in columns if c in frame.columns]
    if column_types and _is_records(X):
        typed = {
            name: typed_values(frame[name].to_numpy(), column_types.get(name), name)
            for name in columns
        }
        return pd.DataFrame(typed, columns=columns)
    if frame is X and frame.columns.tolist() == columns:
        # A decoder's frame (V2's pd codec) already in the model's order: selecting the
        # columns again copied every column, ~120 µs for one row of four.
        return frame
    return frame[columns]


def _text_rows_frame(
    arr: np.ndarray,
    given: list[str],
    columns: list[str] | None,
    what: str,
    optional: Collection[str],
    text_columns: Collection[str] = (),
    drop_extra: bool = False,
) -> Any:
    """Rows of text (seldon-core's array for rows that mix strings and numbers) as a frame in
    ``columns``' order, each column numbers where all its values read as numbers, else objects;
    ``text_columns`` stay objects (text) whatever they read as.

    The same frame as ``DataFrame(arr, columns=given).apply(_numbers_where_possible)[columns]``
    (same dtypes, same values), built from one object array per column: the frame of the whole
    array, ``apply`` and the reordering copy cost ~0.5 ms for a single row, most of a
    one-hot pipeline's overhead per request."""
    _check_names(given, columns, what, drop_extra, optional)
    wanted = given
    if columns:
        wanted = [c for c in columns if c in given] if optional else columns
    where = {name: i for i, name in enumerate(given)}
    values = arr if arr.dtype.kind == "O" else arr.astype(object)
    pd = pandas_module()
    # The index given (the one pandas would infer) and no copy of the fresh column arrays: half
    # the constructor's cost.
    return pd.DataFrame(
        {
            name: values[:, where[name]]
            if name in text_columns
            else _numbers_where_possible(values[:, where[name]])
            for name in wanted
        },
        index=pd.RangeIndex(arr.shape[0]),
        copy=False,
    )


def _unique(names: Sequence[Any]) -> bool:
    return len(set(names)) == len(names)


def _check_names(
    given: list[Any],
    columns: list[str] | None,
    what: str,
    extra_ok: bool,
    optional: Collection[str] = (),
) -> None:
    if not columns:
        return
    refuse_repeated_names(given, columns, what)
    missing = [c for c in columns if c not in given and c not in optional]
    if extra_ok and not missing:  # any extra columns are dropped by the caller's selection
        return
    extra = [str(c) for c in given if c not in columns]  # named beside the missing: misspelt?
    if missing or extra:
        raise BadRequestError(
            f"the column names do not match {what} {columns}: missing {missing}, unexpected {extra}"
        )


def _records_frame(X: Any) -> Any:
    """``jsonData``: records, a mapping of columns, or one record of scalars (one row)."""
    pd = pandas_module()
    if (  # an object among scalars is a cell (refused by name), not a column by row labels
        isinstance(X, dict)
        and X
        and not any(isinstance(v, list | tuple) for v in X.values())
        and not all(isinstance(v, dict) for v in X.values())
    ):
        X = [X]
    try:
        return pd.DataFrame(X)
    except ValueError as exc:  # columns of different lengths
        raise BadRequestError(f"the records are not a table of rows or columns: {exc}") from exc


def _records_in_order(X: Any, columns: list[str]) -> Any:
    """``_records_frame(X)[columns]`` when ``X``'s names are exactly ``columns`` (in any order),
    built in that order at once; ``None`` otherwise (names to refuse, optional columns absent).

    pandas converts each column the same way whatever the order (records: ``dicts_to_array``
    then one conversion per column; a mapping: one array per list), so the frame is the same;
    selecting the columns of a whole frame afterwards cost 55 % of a one-record request's
    input handling."""
    pd = pandas_module()
    if isinstance(X, dict):
        if len(X) != len(columns) or not all(name in X for name in columns):
            return None
        if not any(isinstance(v, list | tuple | dict) for v in X.values()):
            X = [X]  # one record of scalars (one row), as ``_records_frame`` reads it
        elif any(isinstance(v, dict) for v in X.values()):
            return None  # columns keyed by row labels: their union's order is the columns'
        else:
            try:
                return pd.DataFrame({name: X[name] for name in columns})
            except ValueError:
                return None  # columns of different lengths: ``_records_frame`` says so
    wanted = set(columns)
    if len(wanted) != len(columns) or set().union(*X) != wanted:
        return None
    return pd.DataFrame(X, columns=columns)


def _all_already(arr: np.ndarray, given: list[str], column_types: Mapping[str, str]) -> bool:
    """Whether a numeric array needs no cast at all (every column's type is its dtype)."""
    kind = arr.dtype.name
    return kind in ("float64", "float32", "int64", "int32", "bool") and all(
        column_types.get(name, kind) == ("boolean" if kind == "bool" else kind) for name in given
    )


def typed_values(
    values: np.ndarray, kind: str | None, name: str, what: str = "column"
) -> np.ndarray:
    """``values`` (one column, or a flattened tensor) as ``kind`` (a ``COLUMN_TYPES`` key), or a
    400 naming the column (``what`` ``name``), the value and the type."""
    if kind is None or kind not in COLUMN_TYPES:
        return values
    try:
        if kind.startswith("float"):
            return _as_floats(values, kind)
        if kind.startswith("int"):
            return _as_integers(values, kind)
        if kind == "boolean":
            return _as_booleans(values)
        if kind == "string":
            return _as_strings(values)
        if kind == "datetime":
            return _as_datetimes(values)
        return _as_binary(values)
    except _NotOfTypeError as exc:
        raise BadRequestError(
            f"{what} {name!r}: cannot read {quoted(exc.value)} as {COLUMN_TYPES[kind]}"
        ) from None


class _NotOfTypeError(Exception):
    def __init__(self, value: Any) -> None:
        self.value = value.item() if isinstance(value, np.generic) else value


def _as_floats(values: np.ndarray, kind: str) -> np.ndarray:
    if values.dtype.kind in "biuf":
        return values.astype(kind, copy=False)
    try:
        return values.astype(kind)
    except (ValueError, TypeError):
        pass
    found = np.empty(len(values), dtype=kind)
    for i, value in enumerate(values):
        if value is None:
            found[i] = np.nan
            continue
        try:
            found[i] = float(value)
        except (ValueError, TypeError):
            raise _NotOfTypeError(value) from None
    return found


def _as_integers(values: np.ndarray, kind: str) -> np.ndarray:
    if values.dtype.kind in "biu":
        return values.astype(kind, copy=False)
    if values.dtype.kind == "f":
        whole = np.isfinite(values) & (np.mod(values, 1) == 0)
        if not whole.all():
            raise _NotOfTypeError(values[~whole][0])
        return values.astype(kind)
    return np.array([_integer(value) for value in values], dtype=kind)


def _integer(value: Any) -> int:
    """An integer from a JSON value or its text (``"3"``, ``"3.0"``); never a rounded one."""
    if isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, int | np.integer):
        return int(value)
    try:
        return int(value)  # "3", "-12"
    except (ValueError, TypeError):
        pass
    try:
        number = float(value)
    except (ValueError, TypeError):
        raise _NotOfTypeError(value) from None
    if not number.is_integer():
        raise _NotOfTypeError(value)
    return int(number)


def _as_booleans(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "b":
        return values
    if values.dtype.kind in "iuf":
        ones = (values == 0) | (values == 1)
        if not ones.all():
            raise _NotOfTypeError(values[~ones][0])
        return values.astype(bool)
    return np.array([_boolean(value) for value in values], dtype=bool)


def _boolean(value: Any) -> bool:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | float | np.number) and value in (0, 1):
        return bool(value)
    found = _TRUE_WORDS.get(str(value).strip().lower()) if isinstance(value, str) else None
    if found is None:
        raise _NotOfTypeError(value)
    return found


def _as_strings(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "U":
        return values.astype(object)
    return np.array([_text(value) for value in values], dtype=object)


def _text(value: Any) -> Any:
    """A JSON value as text; a whole number written as one (``6000`` -> ``"6000"``: seldon-core
    hands an all-number row over as floats)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict | list):  # a JSON object or array: no text, nor a table's value
        raise _NotOfTypeError(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, np.generic):
        return str(value.item())
    return str(value)


def _as_datetimes(values: np.ndarray) -> np.ndarray:
    pd = pandas_module()
    if values.dtype.kind == "M":
        return values.astype("datetime64[ns]")
    try:
        return pd.to_datetime(values).to_numpy(dtype="datetime64[ns]")
    except (ValueError, TypeError):
        pass
    for value in values:
        try:
            pd.to_datetime(value)
        except (ValueError, TypeError):
            raise _NotOfTypeError(value) from None
    raise _NotOfTypeError(values[0])


def _as_binary(values: np.ndarray) -> np.ndarray:
    """Bytes as they are; text as base64, which may be split into lines (MLflow's own JSON
    encoder, ``base64.encodebytes``, breaks it every 76 characters; its scoring server reads
    it with ``decodebytes``). Other characters are refused, where ``decodebytes`` skips them."""
    found = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        if isinstance(value, bytes):
            found[i] = value
            continue
        text = str(value)
        try:
            found[i] = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            try:
                found[i] = base64.b64decode("".join(text.split()), validate=True)
            except (binascii.Error, ValueError):
                raise _NotOfTypeError(value) from None
    return found


def _is_records(X: Any) -> bool:
    if isinstance(X, dict):
        return True
    return isinstance(X, list) and bool(X) and all(isinstance(row, dict) for row in X)


def _numbers_where_possible(column: Any) -> Any:
    """``column`` as numbers when pandas reads every value as one (``to_numeric``), else as it
    is. Text beginning with a letter, other than "inf…" (and "nan…", which other pandas
    versions may read), is a value ``to_numeric`` refuses, and one refused value refuses the
    column: when the first value is such text, the column stays text without the attempt (its
    exception cost ~5 µs a column per request)."""
    if type(column) is np.ndarray and len(column):
        first = column[0]
        if (
            type(first) is str
            and first[:1].isalpha()
            and first[:3].lower() not in _NUMBER_WORD_STARTS
        ):
            return column
    pd = pandas_module()
    try:
        return pd.to_numeric(column)
    except (ValueError, TypeError):
        return column


def refuse_repeated_names(given: Sequence[Any], columns: Sequence[str], what: str) -> None:
    """A 400 for column names that repeat one: the first repeated name and where it stands
    (else "missing ['rooms']" would name a column the client did send, under another name)."""
    if _unique(given):  # ~0.2 µs for a few names: the usual answer
        return
    seen: dict[str, int] = {}
    for index, name in enumerate(given):
        first = seen.setdefault(str(name), index)
        if first != index:
            raise BadRequestError(
                f"the column names repeat {quoted(str(name))} (names[{first}] and names[{index}]); "
                f"expected each of {what} {list(columns)} once"
            )


class RowReader:
    """A request's rows as numbers in the model's feature order: ``ndarray`` / ``tensor`` rows in
    order, or reordered by the request's ``names``; ``jsonData`` records (a list of objects) or
    columns (an object of lists) matched by name. Names that do not match the model's features
    are a 400 that lists the missing and the unexpected."""

    def __init__(self, feature_names: Sequence[str] | None, n_features: int | None) -> None:
        self.feature_names = list(feature_names) if feature_names else None
        self.n_features = n_features
        self._positions = (
            {name: i for i, name in enumerate(self.feature_names)} if self.feature_names else None
        )

    def __call__(self, X: Any, names: Any) -> np.ndarray:
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
        """Where each of the model's features sits among the request's ``names``."""
        assert self.feature_names is not None
        refuse_repeated_names(names, self.feature_names, "the model's features")
        given = {name: i for i, name in enumerate(names)}
        missing = [n for n in self.feature_names if n not in given]
        extra = [n for n in names if self._positions and n not in self._positions]
        if missing or extra:  # repeated names were refused above
            raise BadRequestError(
                f"names do not match the model's features {self.feature_names}: "
                f"missing {missing}, unexpected {extra}"
            )
        return [given[n] for n in self.feature_names]

    def _rows_from_records(self, X: Any) -> np.ndarray:
        """``jsonData`` as records (a list of objects) or columns (an object of lists)."""
        if self.feature_names is None:
            raise BadRequestError(
                "objects (jsonData records or columns, KServe instances) are matched to the "
                "model's feature names, and this model has none (their key order is no column "
                f"order): send rows of {self.n_features or 'its'} numbers as arrays (ndarray, "
                "tensor, instances of lists)"
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


def as_texts(X: Any) -> list[str]:
    """One text per row (a string, ``[n]`` or ``[n, 1]``), for models that take raw strings."""
    if isinstance(X, bytes):
        X = X.decode("utf-8", errors="replace")
    if isinstance(X, str):
        return [X]
    arr = np.asarray(X, dtype=object)
    if arr.size == 0:
        raise BadRequestError("the input is empty: expected one or more texts")
    if arr.ndim > 2 or (arr.ndim == 2 and arr.shape[1] != 1):
        raise BadRequestError(
            f"expected one text per row (shape [n] or [n, 1]), got shape {list(arr.shape)}"
        )
    texts = arr.ravel().tolist()
    for value in texts:
        if not isinstance(value, str):
            raise BadRequestError(f"expected texts (strings), got {quoted(value)}")
    return texts
