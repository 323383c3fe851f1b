"""``modelshelf.inputs``: frames built from rows of text give the frame pandas' own route gives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from tests.models import HOUSES, houses_pipeline

from modelshelf.errors import BadRequestError
from modelshelf.inputs import _numbers_where_possible, as_frame

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
