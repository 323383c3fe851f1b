"""The common life cycle of ModelServer, in process, with a small real subclass."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from modelshelf.errors import (
    BadRequestError,
    ModelLoadError,
    ModelNotReadyError,
    ServerFaultError,
)
from modelshelf.inputs import as_2d_numbers
from modelshelf.server import Method, ModelServer


class CountingServer(ModelServer):
    """Loads a JSON 'model' (a list of weights) and counts how often it is loaded."""

    loads = 0

    def __init__(self, model_uri: str) -> None:
        super().__init__(model_uri)
        self.method: Method | None = None

    def load_model(self, model_dir: Path) -> None:
        type(self).loads += 1
        self.model = json.loads((model_dir / "weights.json").read_text())
        self.method = Method("predict", self._predict, ["score"])

    def _predict(self, X: np.ndarray) -> np.ndarray:
        if X.shape[1] == 99:
            raise RuntimeError("a bug in the model")
        return X @ np.asarray(self.model).reshape(-1, 1)

    def describe_model(self) -> dict:
        return {"name": "weights", "platform": "test"}

    def predict(self, X, features_names=None, meta=None):
        return self.serve(self.method, as_2d_numbers(X, None))


@pytest.fixture
def weights(tmp_path):
    (tmp_path / "weights.json").write_text("[1, 2]")
    CountingServer.loads = 0
    return tmp_path


def test_nothing_is_loaded_in_the_constructor_and_load_happens_once(weights):
    server = CountingServer(str(weights))
    assert CountingServer.loads == 0
    with pytest.raises(ModelNotReadyError):
        server.health_status()
    server.load()
    server.load()
    assert CountingServer.loads == 1
    assert server.health_status()["status"] == "ready"


def test_requests_before_load_get_503(weights, sklearn_models):
    from modelshelf.frameworks.sklearn import SKLearnServer

    for server in (CountingServer(str(weights)), SKLearnServer(str(sklearn_models["iris"]))):
        with pytest.raises(ModelNotReadyError) as caught:
            server.predict([[1, 2, 3, 4]])
        assert caught.value.status_code == 503


def test_metadata_from_the_model_when_there_is_no_metadata_yaml(weights):
    server = CountingServer(str(weights))
    meta = server.init_metadata()
    assert meta["name"] == "weights"
    assert meta["custom"]["numpy version"] == np.__version__
    assert CountingServer.loads == 1  # loaded to describe itself, once


def test_metadata_yaml_wins_and_needs_no_load(weights):
    (weights / "metadata.yaml").write_text("name: from-file\ncustom: {owner: me}\n")
    server = CountingServer(str(weights))
    meta = server.init_metadata()
    assert meta["name"] == "from-file"
    assert meta["custom"]["owner"] == "me"
    assert "modelshelf version" in meta["custom"]
    assert CountingServer.loads == 0


def test_invalid_metadata_yaml_is_a_load_error(weights):
    (weights / "metadata.yaml").write_text("name: [unclosed\n")
    with pytest.raises(ModelLoadError, match="not valid YAML"):
        CountingServer(str(weights)).init_metadata()


def test_a_load_failure_is_never_an_attribute_error(weights):
    (weights / "weights.json").write_text("not json")
    with pytest.raises(ModelLoadError) as caught:
        CountingServer(str(weights)).load()
    assert not isinstance(caught.value, AttributeError | NotImplementedError)
    assert "JSONDecodeError" in str(caught.value)
    assert str(weights) in str(caught.value)


def test_a_missing_model_uri_is_an_error():
    with pytest.raises(ModelLoadError, match="model_uri is required"):
        CountingServer("")


def test_errors_are_mapped_and_names_follow_the_output(weights):
    server = CountingServer(str(weights))
    server.load()
    np.testing.assert_array_equal(server.predict([[1, 1]]), [[3]])
    assert server.class_names() == ["score"]
    with pytest.raises(BadRequestError, match="rejected the input"):
        server.predict([[1, 2, 3]])  # matmul shape error: the client's fault
    with pytest.raises(ServerFaultError, match="RuntimeError: a bug in the model") as caught:
        server.predict([[0] * 99])
    assert caught.value.status_code == 500


@pytest.mark.parametrize(
    ("payload", "n_features", "message"),
    [
        ({"a": 1}, 2, "got dict"),
        ("text", 2, "got str"),
        ([[1, 2], [3]], 2, "rectangular"),
        ([["1", "x"]], 2, "'x'"),
        ([[[1, 2]]], 2, "2-D"),
        (np.zeros((0, 2)), 2, "empty"),
        ([[1, 2, 3]], 2, "expected 2 features per row, got 3"),
    ],
)
def test_as_2d_numbers_says_what_was_wrong(payload, n_features, message):
    with pytest.raises(BadRequestError, match=message):
        as_2d_numbers(payload, n_features)


def test_as_2d_numbers_reads_numeric_strings_and_nulls():
    np.testing.assert_array_equal(as_2d_numbers([["1", "2.5"]], 2), [[1.0, 2.5]])
    assert np.isnan(as_2d_numbers([[None, 1]], 2)[0, 0])


def test_a_flat_list_is_refused_not_read_as_one_row():
    """seldon-core's own servers hand a 1-D ndarray to the model, which refuses it; V2 and
    KServe V1 refuse a flat input by name: so does every Seldon path (no guessing)."""
    with pytest.raises(BadRequestError, match=r"expected rows: .* flat list of 2 values"):
        as_2d_numbers([1, 2], 2)


class DoublingTransformer(CountingServer):
    """A server whose model transforms: ``transform_input`` / ``transform_output`` come from the
    base, through its ``model_input`` and ``model_output`` hooks."""

    serves_transform = True

    def load_model(self, model_dir: Path) -> None:
        super().load_model(model_dir)
        if self.model:  # an empty weight list: a model without transform
            self.transform_method = Method("transform", lambda X: X * 2, ["a", "b"])

    def model_input(self, X, names):
        return as_2d_numbers(X, 2)

    def model_output(self, result):
        return result.tolist()


def test_transform_goes_through_the_hooks(weights):
    server = DoublingTransformer(str(weights))
    with pytest.raises(ModelNotReadyError):
        server.transform_input([[1, 2]])
    server.load()
    assert server.transform_input([[1, 2]]) == [[2, 4]]
    assert server.transform_output(np.array([[3.0, 4.0]])) == [[6.0, 8.0]]
    assert server.class_names() == ["a", "b"]
    with pytest.raises(BadRequestError, match="expected 2 features per row, got 3"):
        server.transform_input([[1, 2, 3]])


def test_a_model_without_transform_is_a_server_fault_naming_it(tmp_path):
    (tmp_path / "weights.json").write_text("[]")
    server = DoublingTransformer(str(tmp_path))
    server.load()
    with pytest.raises(ServerFaultError, match="list has no transform method"):
        server.transform_output([[1, 2]])


def test_a_server_that_does_not_transform_keeps_seldons_pass_through(weights):
    from seldon_core.user_model import SeldonNotImplementedError, client_transform_input

    server = CountingServer(str(weights))
    server.load()
    with pytest.raises(SeldonNotImplementedError):
        server.transform_input([[1, 2]])
    X = np.array([[1.0, 2.0]])
    assert client_transform_input(server, X, []).data is X
