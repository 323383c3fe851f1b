"""Why a model refused a request's frame, said by the cells that tell more than its words: a
JSON object or array in a cell, text where the model expects numbers, values of another kind than
their column; else the framework's own words, cut (``framework_words``). Read only after a
refusal: the request a model takes pays nothing.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Collection
from typing import Any

import numpy as np

from modelshelf.inputs import quoted

#: The most characters of a framework's words a 400 quotes: the sentence or two that say what
#: was wrong (scikit-learn's "Input X contains NaN." and its advice, numpy's "could not convert
#: string to float: '…'"), not XGBoost's two lists of every feature name (~950 characters for
#: 30 features) or a client's huge value quoted whole.
FRAMEWORK_WORDS_LIMIT = 300


def framework_words(exc: BaseException, limit: int = FRAMEWORK_WORDS_LIMIT) -> str:
    """What ``exc`` says, as a 400 quotes it: without the native stack trace XGBoost appends
    and, beyond ``limit`` characters, its start and its end with "…" between them -- the end
    is where XGBoost says which feature names it expected and scikit-learn where to read on."""
    text = str(exc).split("Stack trace:", 1)[0].rstrip()
    if len(text) <= limit:
        return text
    head = (limit - 1) // 2
    return f"{text[:head]}…{text[len(text) - (limit - 1 - head) :]}"


def refused_input_message(
    method: str,
    exc: Exception,
    model_input: Any,
    model: Any,
    text_columns: Collection[str] | None = None,
    request: Any = None,
    optional: Collection[str] = (),
) -> str:
    """What a 400 says when ``method`` refused ``model_input`` with ``exc``, where the frame's
    cells tell more than the framework's words: a JSON object or array in a cell (scikit-learn:
    "unhashable type: 'dict'"), said instead of them; text the model could not read as a number
    (``text_where_numbers``: "could not convert string to float: 'three'" names no column),
    said instead of them; values of another kind than their column (``column_type_conflicts``;
    scikit-learn's encoders answer a number in a text column with "ufunc 'isnan' not
    supported…"), said before them. ``text_columns`` are those the model learnt as text (a
    server's, kept from load), else read from ``model``. Looked for only after a refusal: the
    request that the model takes pays nothing (a check of every cell while decoding cost
    ~100 µs on 1,000 rows of 3, ~45 % of building their frame). The framework's words are
    cut by ``framework_words``. A record of ``request`` (records as sent) that lacks one of
    the frame's columns other than ``optional`` ones is said instead of them too: pandas
    made the absent key NaN, which the model's words blame ("Input X contains NaN")."""
    words = framework_words(exc)
    pd = sys.modules.get("pandas")  # no DataFrame exists before pandas is imported
    if pd is None or not isinstance(model_input, pd.DataFrame):
        return f"{method} rejected the input: {words}"  # a numpy model's worker: no pandas
    lacking = record_lacking_columns(request, model_input.columns, optional)
    if lacking:
        return f"{method} rejected the input: {lacking}"
    nested = nested_cell(model_input)
    if nested:
        return f"{method} rejected the input: {nested}"
    if text_columns is None:
        from modelshelf.fitted_columns import learnt_text_columns

        text_columns = learnt_text_columns(model)
    misplaced = text_where_numbers(exc, model_input, text_columns)
    if misplaced:
        return f"{method} rejected the input: {misplaced}"
    conflicts = column_type_conflicts(model_input, text_columns)
    if conflicts:
        return f"{method} rejected the input: {conflicts} ({words})"
    return f"{method} rejected the input: {words}"


def record_lacking_columns(
    request: Any, columns: Collection[Any], optional: Collection[str] = ()
) -> str:
    """The first record of ``request`` (a list of objects: Seldon's ``jsonData``, KServe V1
    ``instances``, MLflow's ``dataframe_records``) lacking keys among ``columns`` that are not
    ``optional``, as "record 1 lacks 'pw'"; "" when every record has them all or ``request``
    holds no records. Other records hold those keys (a key no record holds is refused before
    the model is called), so the frame has the columns and the model sees NaN in them."""
    if isinstance(request, dict) and isinstance(request.get("dataframe_records"), list):
        request = request["dataframe_records"]  # an MLflow scoring payload, read by the model
    if not isinstance(request, list):
        return ""
    required = [str(c) for c in columns if c not in optional]
    for row, record in enumerate(request):
        if not isinstance(record, dict):
            return ""
        missing = [name for name in required if name not in record]
        if missing:
            named = ", ".join(repr(name) for name in missing)
            return (
                f"record {row} lacks {named}: expected every record to hold each of "
                f"{required} (null for a missing value)"
            )
    return ""


#: What Python and numpy say when they cannot read text as a number, quoting the text last
#: (its ``repr``): the words of no one estimator, but of every conversion to numbers.
_NOT_A_NUMBER = re.compile(
    r"(?:could not convert string to float|invalid literal for int\(\) with base \d+): "
    r"(?P<text>(?:'|\"|b'|b\").*)\Z",
    re.DOTALL,
)


def text_where_numbers(exc: BaseException, frame: Any, text_columns: Collection[str] = ()) -> str:
    """The column and row of ``frame`` holding the text that ``exc`` (or an exception it was
    raised from) says could not be read as a number, outside the columns the model learnt as
    text; "" when ``exc`` says no such thing or no such cell exists."""
    pd = sys.modules.get("pandas")
    if pd is None or not isinstance(frame, pd.DataFrame):
        return ""
    text = _unreadable_text(exc)
    if text is None:
        return ""
    for position, name in enumerate(frame.columns):
        if name in text_columns:
            continue
        values = frame.iloc[:, position].to_numpy()
        if values.dtype.kind not in "OUS":
            continue
        for row, value in enumerate(values):
            if isinstance(value, str | bytes) and value == text:
                held = _BOOLEAN_TEXT.get(value) or f"text ({quoted(value)}"
                return (
                    f"column {name!r} holds {held} in row {row}) where the model expects "
                    "numbers: send its values as numbers"
                )
    return ""


#: A JSON boolean as seldon-core's array of rows that mix text with other values holds it (its
#: Python text): the client sent ``true``, not text, and is told so.
_BOOLEAN_TEXT = {"True": "a boolean (true", "False": "a boolean (false"}


def _unreadable_text(exc: BaseException) -> str | bytes | None:
    """The text an exception, or one in its chain, says could not be read as a number."""
    seen: BaseException | None = exc
    for _ in range(4):  # the refusal and the exceptions it was raised from
        if seen is None:
            break
        match = _NOT_A_NUMBER.search(str(seen))
        if match:
            try:
                text = ast.literal_eval(match.group("text"))
            except (ValueError, SyntaxError):
                return None
            return text if isinstance(text, str | bytes) else None
        seen = seen.__cause__ or seen.__context__
    return None


def nested_cell(frame: Any) -> str:
    """The first cell of ``frame`` holding a JSON object or array, which is no table's value,
    with its column and row; "" when there is none or ``frame`` is no DataFrame."""
    pd = sys.modules.get("pandas")
    if pd is None or not isinstance(frame, pd.DataFrame):
        return ""
    for position, name in enumerate(frame.columns):
        values = frame.iloc[:, position].to_numpy()
        if values.dtype.kind != "O":
            continue
        for row, value in enumerate(values):
            if isinstance(value, dict | list):
                kind = "a JSON object" if isinstance(value, dict) else "a JSON array"
                return (
                    f"column {name!r}, row {row}: {kind} is not a table's value; expected one "
                    "value per cell (text, a number, a boolean or null)"
                )
    return ""


def _value_kind(value: Any, missing: tuple[Any, ...] = ()) -> str | None:
    """A cell's kind as a client wrote it: text, a number, a boolean; ``None`` for a missing
    value (null, NaN, NaT, and ``missing``: pandas' ``NA`` and ``NaT``), which any column may
    hold."""
    if value is None or (isinstance(value, float | np.floating) and value != value):
        return None
    if any(value is marker for marker in missing):
        return None
    if isinstance(value, np.datetime64 | np.timedelta64) and np.isnat(value):
        return None
    if isinstance(value, str | bytes):
        return "text"
    if isinstance(value, bool | np.bool_):
        return "a boolean"
    if isinstance(value, int | float | np.number):
        return "a number"
    return type(value).__name__


def column_type_conflicts(frame: Any, text_columns: Collection[str] = ()) -> str:
    """The columns of ``frame`` holding values of another kind than their own: a column the
    model learnt as text (``text_columns``) holding numbers or booleans, or one column mixing
    kinds (text and numbers), each with its first such value and row; "" when there are none
    or ``frame`` is no DataFrame. Reads every cell of the object columns: for error messages."""
    pd = sys.modules.get("pandas")
    if pd is None or not isinstance(frame, pd.DataFrame):
        return ""
    missing = (pd.NA, pd.NaT)
    found = []
    for position, name in enumerate(frame.columns):
        values = frame.iloc[:, position].to_numpy()
        if values.dtype.kind != "O":  # one kind: wrong only where the model learnt text
            if name not in text_columns or values.dtype.kind not in "biuf" or not len(values):
                continue
            values = values[:1].tolist()
        first: dict[str, tuple[int, Any]] = {}
        for row, value in enumerate(values):
            kind = _value_kind(value, missing)
            if kind is not None and kind not in first:
                first[kind] = (row, value)
        wrong = {k: v for k, v in first.items() if k != "text"} if name in text_columns else {}
        if wrong:
            kind, (row, value) = next(iter(wrong.items()))
            found.append(
                f"column {name!r} holds {kind} ({quoted(value)} in row {row}) where the model "
                "learnt text: send its values as strings"
            )
        elif len(first) > 1:
            kinds = " and ".join(f"{k} ({quoted(v)} in row {r})" for k, (r, v) in first.items())
            found.append(f"column {name!r} mixes {kinds}: send one kind of value per column")
    return "; ".join(found)
