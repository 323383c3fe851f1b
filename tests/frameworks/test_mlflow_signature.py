"""MLFlowServer in process: requests read by the signature's types, params, the metadata's
params, and MLflow's own error messages with their reason first."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from mlflow_corpus import HOMES, build_corpus
from modelshelf.errors import BadRequestError
from modelshelf.frameworks.mlflow import MLFlowServer
from modelshelf.frameworks.mlflow._signature import MAX_MESSAGE, reason_first
from modelshelf.inputs import as_frame

pytestmark = pytest.mark.timeout(240)

NAMES = ["city", "zip", "rooms", "area", "has_garage"]
TYPES = {"city": "string", "zip": "string", "rooms": "int64", "area": "float64",
         "has_garage": "boolean"}  # fmt: skip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("mlflow-corpus"))


def served(corpus, name: str) -> MLFlowServer:
    server = MLFlowServer(str(corpus[name].path))
    server.load()
    return server


def seldon_rows(rows: list) -> np.ndarray:
    """What seldon-core hands over for an ``ndarray`` (one str array when text is mixed in)."""
    return np.array(rows)


def test_a_mixed_row_is_read_by_the_column_types():
    frame = as_frame(seldon_rows([["paris", "06000", 3, 55.5, True]]), NAMES, NAMES,
                     column_types=TYPES)  # fmt: skip
    assert frame.iloc[0].tolist() == ["paris", "06000", 3, 55.5, True]
    assert [str(t) for t in frame.dtypes] == ["object", "object", "int64", "float64", "bool"]


def test_numbers_only_rows_become_longs_and_text():
    frame = as_frame(np.array([[3.0, 55.5, 6000.0]]), ["rooms", "area", "zip"],
                     ["rooms", "area", "zip"], column_types=TYPES)  # fmt: skip
    assert frame.iloc[0].tolist() == [3, 55.5, "6000"]
    assert str(frame.dtypes["rooms"]) == "int64"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (["paris", "06000", "3.5", 55.5, True], "column 'rooms': cannot read '3.5' as long"),
        (["paris", "06000", 3, "big", True], "column 'area': cannot read 'big' as double"),
        (["paris", "06000", 3, 55.5, "maybe"], "column 'has_garage': cannot read 'maybe' as bool"),
    ],
)
def test_a_value_that_cannot_be_cast_names_column_value_and_type(row, message):
    with pytest.raises(BadRequestError) as info:
        as_frame(seldon_rows([row]), NAMES, NAMES, column_types=TYPES)
    assert message in str(info.value)
    with pytest.raises(BadRequestError) as info:
        as_frame([dict(zip(NAMES, row, strict=True))], None, NAMES, column_types=TYPES)
    assert message.split(":")[0] in str(info.value)


def test_the_issue_requests_on_the_mixed_pipeline(corpus):
    import mlflow

    server = served(corpus, "mixed_pipeline")
    pyfunc = mlflow.pyfunc.load_model(str(corpus["mixed_pipeline"].path))
    for row in (["paris", "06000", 3, 55.5, True], ["paris", "75001", 3, 55.5, False]):
        expected = pyfunc.predict(pd.DataFrame([row], columns=NAMES))
        assert server.predict(seldon_rows([row]), NAMES).tolist() == expected.tolist()
    answer = server.predict(HOMES.to_dict(orient="records"), None)
    assert answer.tolist() == pyfunc.predict(HOMES).tolist()


def test_a_float32_tensor_takes_json_numbers(corpus):
    server = served(corpus, "tensor_float32")
    for X in ([[5.1, 3.5, 1.4, 0.2]], np.array([[5.1, 3.5, 1.4, 0.2]])):
        assert server.predict(X, None).shape == (1,)
    assert server.model_input(np.array([[5.1, 3.5, 1.4, 0.2]]), None).dtype == np.float32


def test_meta_params_reach_predict_and_the_defaults_apply_without(corpus):
    server = served(corpus, "python_params")
    rows = [{"score": 0.7}, {"score": 0.9}]
    assert server.predict(rows, None, {"params": {"threshold": 0.8}})[:, 0].tolist() == [0, 1]
    assert server.predict(rows, None, {})[:, 0].tolist() == [1, 1]
    assert server.predict(rows, None, params={"label": "high"})[:, 1].tolist() == ["high"] * 2


def test_params_and_meta_beside_each_keyword_for_the_feature_names(corpus):
    server = served(corpus, "python_params")
    scores = np.array([[0.7], [0.9]])
    for keyword in ("names", "feature_names", "features_names"):
        answer = server.predict(scores, **{keyword: ["score"]}, params={"threshold": 0.8})
        assert answer[:, 0].tolist() == [0, 1]
        answer = server.predict(scores, meta={"params": {"label": "high"}}, **{keyword: ["score"]})
        assert answer[:, 1].tolist() == ["high"] * 2
    with pytest.raises(BadRequestError, match="unknown params"):
        server.predict(scores, feature_names=["score"], meta={"params": {"thresh": 0.8}})


def test_params_from_other_protocols_follow_mlflow_models_serve(corpus):
    """V2 ``parameters`` and ``/invocations`` ``params`` (``predict(params=...)``): undeclared
    ones are dropped as ``mlflow models serve`` drops them; a declared one of the wrong type is
    still a 400, and a Seldon request's undeclared ones too."""
    with_schema = served(corpus, "python_params")
    scores = np.array([[0.7], [0.9]])
    answer = with_schema.predict(scores, ["score"], params={"threshold": 0.8, "colour": "red"})
    assert answer[:, 0].tolist() == [0, 1]
    with pytest.raises(BadRequestError, match="threshold"):
        with_schema.predict(scores, ["score"], params={"threshold": "high"})
    without = served(corpus, "sklearn_signature")
    X = corpus["sklearn_signature"].frame.to_numpy()[:2]
    assert without.predict(X, params={"unused": 1}).tolist() == without.predict(X).tolist()
    with pytest.raises(BadRequestError, match="takes no params"):
        without.predict(X, meta={"params": {"unused": 1}})


def test_the_protocols_pass_params_only_to_a_server_that_serves_them(corpus, tmp_path):
    """The base's ``predict`` has ``params`` for every server; V2 and ``/invocations`` pass
    them to MLFlowServer, not to one that serves none (a 400 if called so) nor to a subclass
    whose own ``predict`` has no ``params``."""
    from modelshelf.serve.server_methods import takes_params
    from modelshelf.server import Method, ModelServer

    class WithoutParams(MLFlowServer):
        def predict(self, X, features_names=None, meta=None):
            return super().predict(X, features_names, meta)

    class Doubling(ModelServer):
        def load_model(self, model_dir):
            self.method = Method("predict", lambda X: 2 * X)

    assert takes_params(served(corpus, "python_params"))
    assert not takes_params(WithoutParams(str(corpus["python_params"].path)))
    doubling = Doubling(str(tmp_path))
    doubling.load()
    assert not takes_params(doubling)
    assert doubling.predict([[1.0, 2.0]], feature_names=["a", "b"]).tolist() == [[2.0, 4.0]]
    with pytest.raises(BadRequestError, match=r"Doubling takes no params, got \['threshold'\]"):
        doubling.predict([[1.0, 2.0]], params={"threshold": 0.8})


def test_params_are_listed_in_the_metadata(corpus):
    custom = MLFlowServer(str(corpus["python_params"].path)).init_metadata()["custom"]
    assert custom["param threshold"] == "double, default 0.5"
    assert custom["param label"] == 'string, default "yes"'


def test_mlflows_schema_error_keeps_its_reason_first(corpus):
    """pyfunc's own message on a 30-column model: the DataFrame dump, the schema, then the
    reason. Cut to the response's size, the reason comes first, whole."""
    import mlflow
    from mlflow.exceptions import MlflowException

    model = corpus["xgb_classifier"]
    records = json.loads(model.frame.to_json(orient="records"))
    records[5]["worst area"] = "huge"
    with pytest.raises(MlflowException) as info:
        mlflow.pyfunc.load_model(str(model.path)).predict(pd.DataFrame(records))
    assert len(info.value.message) > MAX_MESSAGE
    message = reason_first(info.value.message)
    assert message.startswith("Failed to convert column worst area"), message[:300]
    assert len(message) <= MAX_MESSAGE and " ... " in message


def test_a_short_message_is_kept_whole():
    assert reason_first("the reason") == "the reason"
    long = "reason: " + "x" * 5000 + " end"
    cut = reason_first(long)
    assert cut.startswith("reason: ") and cut.endswith(" end") and len(cut) <= MAX_MESSAGE


def test_an_optional_column_may_be_left_out_a_required_one_may_not():
    columns, types = ["rooms", "area"], {"rooms": "int64", "area": "float64"}
    for X, names in (([[3]], ["rooms"]), ([{"rooms": 3}], None)):
        frame = as_frame(X, names, columns, column_types=types, optional=("area",))
        assert list(frame.columns) == ["rooms"] and frame["rooms"].tolist() == [3]
    with pytest.raises(BadRequestError, match=r"missing \['rooms'\]"):
        as_frame([{"area": 3.5}], None, columns, column_types=types, optional=("area",))


def test_json_data_in_mlflow_serves_formats(corpus):
    """What a client of ``mlflow models serve`` sends, as ``jsonData``, params included."""
    server = served(corpus, "python_params")
    split = {"dataframe_split": {"columns": ["score"], "data": [[0.7], [0.9]]}}
    records = {"dataframe_records": [{"score": 0.7}, {"score": 0.9}]}
    inputs = {"inputs": {"score": [0.7, 0.9]}}
    for body in (split, records, inputs):
        assert server.predict(body, None)[:, 0].tolist() == [1, 1]
        with_params = {**body, "params": {"threshold": 0.8}}
        assert server.predict(with_params, None)[:, 0].tolist() == [0, 1]
    tensor = served(corpus, "tensor_float32")
    assert tensor.predict({"instances": [[5.1, 3.5, 1.4, 0.2]]}, None).shape == (1,)
    mixed = served(corpus, "mixed_pipeline")
    row = {"city": "paris", "zip": "06000", "rooms": 3, "area": 55.5, "has_garage": True}
    assert mixed.predict({"dataframe_records": [row]}, None).shape == (1,)


def test_float32_and_int32_columns_take_json_numbers(tmp_path):
    """A model fitted on float32 / int32 columns (signature ``float``, ``integer``): every
    request shape is cast to them, and answers as pyfunc does on the same frame."""
    import mlflow
    from mlflow.models import infer_signature

    frame = pd.DataFrame(
        {
            "a": np.array([0.5, 1.5, 2.5, 3.5], dtype=np.float32),
            "b": np.array([1, 0, 1, 0], "int32"),
        }
    )
    model = LogisticRegression().fit(frame, [0, 0, 1, 1])
    mlflow.sklearn.save_model(model, tmp_path / "m", signature=infer_signature(frame),
                              pip_requirements=["scikit-learn"])  # fmt: skip
    server = MLFlowServer(str(tmp_path / "m"))
    server.load()
    expected = mlflow.pyfunc.load_model(str(tmp_path / "m")).predict(frame).tolist()
    assert server.predict(frame.to_numpy(dtype=float), ["a", "b"]).tolist() == expected
    assert server.predict(frame.to_dict(orient="records"), None).tolist() == expected
    with pytest.raises(BadRequestError, match=r"column 'b': cannot read 0\.5 as integer"):
        server.predict(np.array([[1.0, 0.5]]), ["a", "b"])


def test_datetime_and_binary_columns():
    frame = as_frame(
        [{"when": "2024-05-01T10:00:00", "blob": "aGVsbG8="}],
        None,
        ["when", "blob"],
        column_types={"when": "datetime", "blob": "binary"},
    )
    assert str(frame.dtypes["when"]) == "datetime64[ns]" and frame["blob"][0] == b"hello"
    with pytest.raises(BadRequestError, match="column 'when': cannot read 'soon' as datetime"):
        as_frame([{"when": "soon"}], None, ["when"], column_types={"when": "datetime"})
