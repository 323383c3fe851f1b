"""``modelshelf.inputs``: frames built from rows of text give the frame pandas' own route gives."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from tests.models import FLATS, HOUSES, flats_pipeline, houses_pipeline, iris_frame_pipeline

from modelshelf.errors import BadRequestError
from modelshelf.fitted_columns import learnt_text_columns
from modelshelf.input_refusals import (
    FRAMEWORK_WORDS_LIMIT,
    column_type_conflicts,
    framework_words,
    refused_input_message,
)
from modelshelf.inputs import (
    _numbers_where_possible,
    as_2d_numbers,
    as_frame,
    typed_values,
)

COLUMNS = ["city", "kind", "rooms", "area"]
ROWS = [
    [["nantes", "flat", 6, 50.0]],
    [["paris", "house", 3, 120.5], ["lyon", "studio", 1, 18.25]],
    [["paris", "flat", "3", "7.5"], ["nice", "flat", "x", 1]],  # a column of numbers and text
    [["a", "b", 1, 1e300], ["c", "d", 2, -0.0]],
    [["a", None, 1, 2.5]],  # an object array
    [["1", "2", "3", "4"]],  # every column numbers
    [["nan", "inf", "-3", "1e5"]],
]


def pandas_route(arr: np.ndarray, names: list[str], columns: list[str]) -> pd.DataFrame:
    """What ``as_frame`` built before: one frame, ``apply``, then the model's column order."""
    return pd.DataFrame(arr, columns=names).apply(_numbers_where_possible)[columns]


@pytest.mark.parametrize("rows", ROWS)
@pytest.mark.parametrize("order", [COLUMNS, ["area", "city", "rooms", "kind"]])
def test_text_rows_frame_is_pandas_own(rows: list, order: list[str]) -> None:
    arr = np.array([[row[COLUMNS.index(n)] for n in order] for row in rows])
    found = as_frame(arr, order, COLUMNS)
    expected = pandas_route(arr, order, COLUMNS)
    pd.testing.assert_frame_equal(found, expected, check_exact=True)
    assert list(found.dtypes) == list(expected.dtypes)


def test_text_rows_without_columns_keep_the_request_order() -> None:
    arr = np.array([["paris", 2, 3.5]])
    found = as_frame(arr, ["c", "b", "a"], None)
    pd.testing.assert_frame_equal(found, pandas_route(arr, ["c", "b", "a"], ["c", "b", "a"]))


def test_text_rows_with_names_that_do_not_match_are_refused() -> None:
    arr = np.array([["paris", "flat", 3, 50.0]])
    with pytest.raises(BadRequestError, match=r"missing \['area'\], unexpected \['surface'\]"):
        as_frame(arr, ["city", "kind", "rooms", "surface"], COLUMNS)


def test_pipeline_answers_the_same_from_either_frame() -> None:
    pipeline = houses_pipeline()
    columns = [str(c) for c in pipeline.feature_names_in_]
    arr = np.array(HOUSES[columns].astype(object).to_numpy().tolist())  # seldon-core's strings
    found = pipeline.predict_proba(as_frame(arr, columns, columns))
    expected = pipeline.predict_proba(pandas_route(arr, columns, columns))
    assert found.tobytes() == expected.tobytes()


def test_pandas_imported_by_a_request_joins_the_frozen_objects() -> None:
    """A serving process freezes what it loaded; pandas imported later (a first DataFrame
    request) is frozen too, so the collector's full passes do not walk its objects per request.
    Before anything is frozen (loading, tests), importing it freezes nothing."""
    import subprocess
    import sys

    script = """
import gc, sys
from modelshelf.inputs import pandas_module
assert "pandas" not in sys.modules
gc.collect(); gc.freeze()
pandas_module()
assert "pandas" in sys.modules
print(len(gc.get_objects()))
"""
    unfrozen = int(
        subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True
        ).stdout
    )
    assert unfrozen < 2_000  # pandas alone tracks ~34,000


#: Rows mixing what JSON carries: text, integers, floats, null, booleans, text that reads as a
#: number, and text beginning with the letters of "inf" / "nan".
MIXED = [
    ["nantes", "flat", 6, 50.0],
    ["paris", None, 3, None],
    ["lyon", "house", "4", float("nan")],
    ["inf", "nan", True, 1e300],
    ["Infinity", "studio", False, -0.0],
    ["", "flat", 7, 12],
]


def mixed_rows(count: int) -> list[list]:
    return [list(MIXED[i % len(MIXED)]) for i in range(count)]


def one_kind_rows(count: int, column: int, values: list) -> list[list]:
    """``count`` rows of the first MIXED row with ``column`` cycling through ``values``."""
    return [
        [values[i % len(values)] if j == column else v for j, v in enumerate(MIXED[0])]
        for i in range(count)
    ]


ROW_SETS = {
    "one row": mixed_rows(1),
    "two rows": mixed_rows(2),
    "every kind": mixed_rows(6),
    "many rows": mixed_rows(500),
    "booleans": one_kind_rows(3, 2, [True, False]),
    "text then inf": one_kind_rows(3, 0, ["inf", "Infinity", "-inf"]),
    "infinities in any case": one_kind_rows(3, 0, ["INF", "iNfinity", "+inf"]),
    "words that begin like inf or nan": one_kind_rows(4, 0, ["nantes", "i", "in", "NaN"]),
    "text of numbers": one_kind_rows(4, 1, ["1", "2.5", " 3", "4e2"]),
    "numbers then a word": one_kind_rows(3, 3, [1.5, 2, "many"]),
    "nulls only": one_kind_rows(2, 1, [None]),
}


def records_route(X: object, columns: list[str]) -> pd.DataFrame:
    """What ``as_frame`` built for ``jsonData`` before: the whole frame, then its columns."""
    if isinstance(X, dict) and not any(isinstance(v, list | tuple | dict) for v in X.values()):
        X = [X]
    return pd.DataFrame(X)[columns]


def assert_same_frame(found: pd.DataFrame, expected: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(found, expected, check_exact=True)
    assert list(found.dtypes) == list(expected.dtypes)
    assert list(found.columns) == list(expected.columns)
    for name in expected.columns:  # the very values: text stays text, True stays True
        assert [type(v) for v in found[name]] == [type(v) for v in expected[name]], name


@pytest.mark.parametrize("case", list(ROW_SETS))
@pytest.mark.parametrize("order", [COLUMNS, ["area", "city", "rooms", "kind"]])
def test_rows_of_any_json_values_give_pandas_own_frame(case: str, order: list[str]) -> None:
    """Seldon ``names`` + ``ndarray`` rows (an array of text, or of objects where a null is)."""
    rows = ROW_SETS[case]
    arr = np.array([[row[COLUMNS.index(n)] for n in order] for row in rows])
    assert_same_frame(as_frame(arr, order, COLUMNS), pandas_route(arr, order, COLUMNS))


@pytest.mark.parametrize("case", list(ROW_SETS))
@pytest.mark.parametrize("order", [COLUMNS, ["area", "city", "rooms", "kind"]])
def test_records_and_columns_give_pandas_own_frame(case: str, order: list[str]) -> None:
    """``jsonData`` records (keys in any order) and columns by name, as pandas reads them."""
    rows = ROW_SETS[case]
    records = [{n: row[COLUMNS.index(n)] for n in order} for row in rows]
    assert_same_frame(as_frame(records, None, COLUMNS), records_route(records, COLUMNS))
    by_column = {n: [r[n] for r in records] for n in order}
    assert_same_frame(as_frame(by_column, None, COLUMNS), records_route(by_column, COLUMNS))
    if len(records) == 1:  # one record of scalars is one row
        assert_same_frame(as_frame(records[0], None, COLUMNS), records_route(records, COLUMNS))


def test_columns_keyed_by_row_labels_give_pandas_own_frame() -> None:
    """Columns as objects of row labels: pandas' index is the labels' union, in the order the
    columns bring them, so the frame is pandas' own of the request, then the model's columns."""
    X = {
        "area": {"b": 2.5, "a": 1.0},
        "city": {"a": "paris", "c": "lyon"},
        "kind": {"a": "flat", "b": "house", "c": "studio"},
        "rooms": {"c": 3, "a": 1, "b": 2},
    }
    assert_same_frame(as_frame(X, None, COLUMNS), records_route(X, COLUMNS))


def test_records_missing_a_field_in_some_rows_give_pandas_own_frame() -> None:
    records = [dict(zip(COLUMNS, row, strict=True)) for row in mixed_rows(3)]
    del records[1]["rooms"]
    assert_same_frame(as_frame(records, None, COLUMNS), records_route(records, COLUMNS))


@pytest.mark.parametrize(
    ("X", "words"),
    [
        ([{"city": "paris", "kind": "flat", "rooms": 3}], r"missing \['area'\], unexpected \[\]"),
        (
            [{"city": "a", "kind": "b", "rooms": 1, "area": 2.0, "floor": 3}],
            r"missing \[\], unexpected \['floor'\]",
        ),
        ({"city": ["a"], "kind": ["b"], "rooms": [1]}, r"missing \['area'\]"),
        ({"city": ["a", "b"], "kind": ["b"], "rooms": [1], "area": [2.0]}, "not a table"),
    ],
)
def test_records_that_do_not_match_are_refused_by_name(X: object, words: str) -> None:
    with pytest.raises(BadRequestError, match=words):
        as_frame(X, None, COLUMNS)


# ------------------------------------------------------- columns the model learnt as text

FLAT_COLUMNS = list(FLATS.columns)  # city, rooms, area, code
#: Rows as a client mixes them: a postal code of numeric text, and a room count sent as text.
FLAT_ROWS = [["paris", 2, 50.0, "12"], ["nice", "3", 31.0, "06"], ["lyon", 1, 20.0, "inf"]]
#: The same rows as the model takes them: codes text, rooms and areas numbers.
FLAT_FRAME = pd.DataFrame(
    {
        "city": ["paris", "nice", "lyon"],
        "rooms": [2, 3, 1],
        "area": [50.0, 31.0, 20.0],
        "code": ["12", "06", "inf"],
    }
)


def test_learnt_text_columns_are_those_encoded_from_text() -> None:
    assert learnt_text_columns(flats_pipeline()) == {"city", "code"}
    assert learnt_text_columns(houses_pipeline()) == {"city"}  # floor: integer categories
    assert learnt_text_columns(iris_frame_pipeline()) == frozenset()  # no ColumnTransformer


def test_learnt_text_columns_are_not_numbers_held_as_objects() -> None:
    """An imputer over a text and a number column learns one object array of statistics, and
    an object column of integers gives object categories: neither number column is text."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder

    columns = ColumnTransformer(
        [
            ("most", SimpleImputer(strategy="most_frequent"), ["city", "area"]),
            ("rooms", OneHotEncoder(), ["rooms"]),
        ]
    ).fit(FLATS.astype({"rooms": object}))
    assert columns.named_transformers_["most"].statistics_.dtype == object
    assert columns.named_transformers_["rooms"].categories_[0].dtype == object
    assert learnt_text_columns(columns) == {"city"}


@pytest.mark.parametrize("order", [FLAT_COLUMNS, ["code", "area", "city", "rooms"]])
def test_rows_of_text_keep_the_text_columns_text(order: list[str]) -> None:
    """seldon-core's array of the rows (all text): the code stays the text it was sent as,
    the room count sent as "3" is a number; the pipeline answers as for its own frame (and
    as for the same rows as ``jsonData``)."""
    pipeline = flats_pipeline()
    arr = np.array([[row[FLAT_COLUMNS.index(n)] for n in order] for row in FLAT_ROWS])
    assert arr.dtype.kind == "U"
    found = as_frame(arr, order, FLAT_COLUMNS, text_columns=learnt_text_columns(pipeline))
    assert_same_frame(found, FLAT_FRAME)
    from_records = as_frame(FLAT_FRAME.to_dict(orient="records"), None, FLAT_COLUMNS)
    assert pipeline.predict_proba(found).tobytes() == pipeline.predict_proba(from_records).tobytes()
    # Without the model's text columns the codes became numbers, which the encoder refuses.
    with pytest.raises((TypeError, ValueError)):  # 'isnan' not supported / infinity
        pipeline.predict_proba(as_frame(arr, order, FLAT_COLUMNS))


@pytest.mark.parametrize("case", list(ROW_SETS))
def test_text_columns_change_only_themselves(case: str) -> None:
    """Every other column is what it was without ``text_columns``; a text column holds the
    values of the array as they are (objects), whatever they read as."""
    order = ["area", "city", "rooms", "kind"]
    rows = ROW_SETS[case]
    arr = np.array([[row[COLUMNS.index(n)] for n in order] for row in rows])
    expected = pandas_route(arr, order, COLUMNS)
    expected["city"] = arr[:, order.index("city")].astype(object)
    assert_same_frame(as_frame(arr, order, COLUMNS, text_columns={"city"}), expected)


def test_text_columns_stay_text_under_repeated_names() -> None:
    """Rows whose names repeat (no model columns to match) take pandas' own route."""
    arr = np.array([["12", 3, 4.5]])
    found = as_frame(arr, ["code", "rooms", "rooms"], None, text_columns={"code"})
    assert list(found.dtypes) == [object, np.int64, np.float64]
    assert found.iloc[0, 0] == "12"


@pytest.mark.parametrize(
    ("X", "names", "words"),
    [
        (
            np.array([["oslo", 1, 2.0], [{"a": 1}, 2, 3.0]], dtype=object),
            COLUMNS[:3],
            "column 'city', row 1: a JSON object",
        ),
        ([{"city": "oslo", "kind": [1]}], None, "column 'kind', row 0: a JSON array"),
    ],
    ids=["rows", "records"],
)
def test_a_refused_object_or_array_cell_is_named_by_column_and_row(X, names, words):
    """The frame keeps the cell as sent; when the model refuses it, the 400 names it."""
    frame = as_frame(X, names, None)
    message = refused_input_message("predict", TypeError("unhashable type: 'dict'"), frame, None)
    assert message.startswith(f"predict rejected the input: {words} is not a table's value")
    assert "unhashable" not in message


def test_a_typed_text_column_refuses_an_object_or_array():
    """An MLflow signature's string column: a JSON object is not text (it was read as its
    Python repr); its other columns (``Array``, ``Object``: untyped here) keep them."""
    records = [{"city": {"a": 1}, "tags": ["a", "b"]}]
    with pytest.raises(BadRequestError, match=r"column 'city': cannot read \{'a': 1\} as string"):
        as_frame(records, None, ["city", "tags"], column_types={"city": "string"})
    records = [{"city": "oslo", "tags": ["a", "b"]}]
    frame = as_frame(records, None, ["city", "tags"], column_types={"city": "string"})
    assert frame["tags"].tolist() == [["a", "b"]]


def test_column_type_conflicts_name_the_column_the_value_and_the_row():
    frame = pd.DataFrame({"city": [5.0, 6.0], "kind": np.array(["flat", 3], dtype=object)})
    found = column_type_conflicts(frame, {"city"})
    assert "column 'city' holds a number (5.0 in row 0) where the model learnt text" in found
    assert "column 'kind' mixes text ('flat' in row 0) and a number (3 in row 1)" in found
    assert column_type_conflicts(pd.DataFrame({"city": ["a", None]}), {"city"}) == ""
    assert column_type_conflicts(np.zeros((1, 2)), {"city"}) == ""
    # The text columns are what the model's encoders learnt: HOUSES' city.
    houses = HOUSES.assign(city=[5.0] * len(HOUSES))
    refusal = ValueError("ufunc 'isnan'")
    message = refused_input_message("predict_proba", refusal, houses, houses_pipeline())
    assert message == (
        "predict_proba rejected the input: column 'city' holds a number (5.0 in row 0) where "
        "the model learnt text: send its values as strings (ufunc 'isnan')"
    )
    message = refused_input_message("predict_proba", refusal, HOUSES, houses_pipeline())
    assert message == "predict_proba rejected the input: ufunc 'isnan'"


def test_a_refused_array_does_not_import_pandas():
    """A numpy model's refusal (NaN, a wrong width) is answered without pandas, which its
    worker never imported (~0.3 s of CPU and tens of MB in each worker at its first 400)."""
    code = (
        "import sys, numpy as np\n"
        "from modelshelf.input_refusals import refused_input_message\n"
        "refused = ValueError('contains NaN')\n"
        "print(refused_input_message('predict', refused, np.zeros((1, 2)), None))\n"
        "print('pandas' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == ["predict rejected the input: contains NaN", "False"]


def test_a_frameworks_long_refusal_keeps_its_start_and_its_end():
    """XGBoost lists every feature name twice before saying which it expected (~950
    characters for 30 features), scikit-learn follows "Input X contains NaN." with ~400 of
    advice: the 400 quotes 300 characters, the start and the end (which names the missing
    features), as every refusal quoting a framework's words does; a native stack trace goes."""
    import xgboost as xgb

    columns = [f"feature_{i}" for i in range(30)]
    frame = pd.DataFrame(np.random.default_rng(0).random((20, 30)), columns=columns)
    model = xgb.XGBClassifier(n_estimators=2).fit(frame, np.arange(20) % 2)
    renamed = frame.rename(columns={"feature_7": "feat_7"})
    with pytest.raises(ValueError) as refused:
        model.predict(renamed)
    assert len(str(refused.value)) > 900
    message = refused_input_message("predict", refused.value, renamed.to_numpy(), model)
    words = message.removeprefix("predict rejected the input: ")
    assert len(words) == FRAMEWORK_WORDS_LIMIT and words.startswith("feature_names mismatch")
    assert "…" in words and words.endswith("the following fields: feat_7")
    assert "expected feature_7 in input data" in words
    short = ValueError("X has 3 features, but LogisticRegression is expecting 4 features.")
    assert framework_words(short) == str(short)
    native = ValueError("[10:00:00] data.cc:12: Check failed: rows\nStack trace:\n  [bt] (0) x")
    assert framework_words(native) == "[10:00:00] data.cc:12: Check failed: rows"


def refusal(model, frame: pd.DataFrame) -> Exception:
    """What ``model.predict_proba`` raises on ``frame`` (a test fails if it takes it)."""
    with pytest.raises((ValueError, TypeError)) as refused:
        model.predict_proba(frame)
    return refused.value


FLAT = {"city": "paris", "rooms": 3, "area": 50.0, "code": "12"}


@pytest.mark.parametrize(
    "X",
    [
        [{**FLAT, "rooms": "three"}],  # jsonData records, KServe V1 instances
        {"city": ["paris"], "rooms": ["three"], "area": [50.0], "code": ["12"]},  # columns
        np.array([["paris", "three", 50.0, "12"]], dtype=object),  # rows with names
    ],
    ids=["records", "columns", "rows"],
)
def test_text_in_a_number_column_is_named_by_column_and_row(X):
    """scikit-learn's scaler says "could not convert string to float: 'three'", naming no
    column: the 400 names the column holding that text, its row and what the model expects."""
    model = flats_pipeline()
    frame = as_frame(X, list(FLAT), list(FLATS.columns), text_columns=learnt_text_columns(model))
    message = refused_input_message("predict_proba", refusal(model, frame), frame, model)
    assert message == (
        "predict_proba rejected the input: column 'rooms' holds text ('three' in row 0) where "
        "the model expects numbers: send its values as numbers"
    )


def test_text_in_a_number_column_is_found_in_any_row_and_from_int_conversions():
    frame = FLATS.head(3).astype({"rooms": object})
    frame.loc[2, "rooms"] = "2x"
    model = flats_pipeline()
    message = refused_input_message("predict_proba", refusal(model, frame), frame, model)
    assert "column 'rooms' holds text ('2x' in row 2) where the model expects numbers" in message
    with pytest.raises(ValueError) as refused:  # Python's own words for an integer
        int(frame["rooms"][2])
    message = refused_input_message("predict", refused.value, frame, model)
    assert "column 'rooms' holds text ('2x' in row 2)" in message
    # Text the model learnt as text is not what it could not read as a number.
    message = refused_input_message(
        "predict", ValueError("could not convert string to float: 'paris'"), FLATS, model
    )
    assert message == "predict rejected the input: could not convert string to float: 'paris'"


def test_quoted_values_are_capped():
    """A huge cell is not copied whole into the 400 (and the warning log)."""
    huge = "x" * 10_000
    model = flats_pipeline()
    frame = FLATS.head(1).astype({"rooms": object}).assign(rooms=[huge])
    message = refused_input_message("predict_proba", refusal(model, frame), frame, model)
    assert "column 'rooms' holds text ('xxx" in message and "…" in message
    assert len(message) < 200
    mixed = pd.DataFrame({"kind": np.array([huge, 3], dtype=object), "city": [huge, 5.0]})
    found = column_type_conflicts(mixed, {"city"})
    assert "column 'kind' mixes text ('xxx" in found and "column 'city' holds a number" in found
    assert len(found) < 2 * 200
    for refuse in (
        lambda: typed_values(np.array([huge], dtype=object), "float64", "area"),
        lambda: as_2d_numbers([[1.0, huge]], 2),
    ):
        with pytest.raises(BadRequestError) as refused:
            refuse()
        assert "'xxx" in str(refused.value) and len(str(refused.value)) < 150
    assert len(refused_input_message("p", ValueError("v"), mixed, None, set())) < 400


def test_missing_values_are_of_no_kind():
    """pandas' ``NA`` and ``NaT`` are missing values, as null and NaN are: no column mixes
    them with its values, and a text column may hold them."""
    frame = pd.DataFrame(
        {
            "city": pd.array(["paris", pd.NA], dtype="string"),
            "rooms": pd.array([3, pd.NA], dtype="Int64"),
            "seen": np.array([pd.Timestamp("2026-01-01"), pd.NaT], dtype=object),
        }
    )
    assert column_type_conflicts(frame, {"city"}) == ""
    assert column_type_conflicts(frame.assign(city=[pd.NA, 5]), {"city"}) == (
        "column 'city' holds a number (5 in row 1) where the model learnt text: send its "
        "values as strings"
    )


def test_a_server_s_text_columns_are_used_for_its_refusals():
    """``SKLearnServer`` keeps the text columns from load; a refusal uses them rather than
    reading the model again (here: no model at all)."""
    houses = HOUSES.assign(city=[5.0] * len(HOUSES))
    refused = ValueError("ufunc 'isnan'")
    message = refused_input_message("predict_proba", refused, houses, None, frozenset({"city"}))
    assert "column 'city' holds a number (5.0 in row 0) where the model learnt text" in message


@pytest.mark.parametrize("order", [COLUMNS, ["area", "city", "rooms", "kind"]])
def test_a_frame_is_handed_over_in_the_model_s_order(order: list[str]) -> None:
    """A frame (V2's pd codec) already in the model's order is the model's input as it is;
    in another order, its columns in the model's order: the same dtypes, order and values as
    selecting them, and the model's answers the same bits."""
    sent = pd.DataFrame(
        {
            "city": np.array(["paris", "lyon"], dtype=object),
            "kind": np.array(["flat", "house"], dtype=object),
            "rooms": np.array([3, 1]),
            "area": np.array([50.5, 18.25]),
        }
    )[order]
    found = as_frame(sent, None, COLUMNS)
    assert (found is sent) == (order == COLUMNS)
    pd.testing.assert_frame_equal(found, sent[COLUMNS], check_exact=True)
    assert list(found.dtypes) == list(sent[COLUMNS].dtypes)
    pipeline = flats_pipeline()
    flats = FLATS[["area", "code", "city", "rooms"]]
    for frame in (FLATS, flats):
        columns = [str(c) for c in pipeline.feature_names_in_]
        answer = pipeline.predict_proba(as_frame(frame, None, columns))
        assert answer.tobytes() == pipeline.predict_proba(frame[columns]).tobytes()
