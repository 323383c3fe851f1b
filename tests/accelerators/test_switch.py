"""The one ``fast_path`` switch: every server of the registry takes the parameter (no framework
declares it), ``MODELSHELF_FAST_PATH`` sets the default, the parameter wins, anything but a
boolean is refused naming where it came from; and off means the framework's own call."""

from __future__ import annotations

import importlib
import inspect
import logging

import numpy as np
import pytest

import models
import xgboost_models as xm
from models import IRIS_X, IRIS_Y
from modelshelf.accelerators import FAST_PATH_ENV, Accelerated
from modelshelf.errors import ConfigurationError
from modelshelf.registry import SERVERS
from modelshelf.server import ModelServer

SERVER_CLASSES = {s.class_name: (s.module, s.class_name) for s in SERVERS}


def server_class(name: str) -> type[ModelServer]:
    module, class_name = SERVER_CLASSES[name]
    return getattr(importlib.import_module(module), class_name)


@pytest.mark.parametrize("name", sorted(SERVER_CLASSES))
def test_every_server_takes_the_one_switch(name, monkeypatch, tmp_path):
    cls = server_class(name)
    assert "fast_path" not in inspect.signature(cls.__dict__["__init__"].__wrapped__).parameters
    assert "fast_path" in inspect.signature(cls).parameters
    uri = str(tmp_path)
    monkeypatch.delenv(FAST_PATH_ENV, raising=False)
    assert cls(uri).fast_path is True
    for off in (False, "false", "0", "off"):
        assert cls(uri, fast_path=off).fast_path is False
    monkeypatch.setenv(FAST_PATH_ENV, "false")
    assert cls(uri).fast_path is False
    assert cls(uri, fast_path="true").fast_path is True  # the parameter wins
    with pytest.raises(ConfigurationError, match="fast_path='sometimes'"):
        cls(uri, fast_path="sometimes")
    monkeypatch.setenv(FAST_PATH_ENV, "maybe")
    with pytest.raises(ConfigurationError, match=f"{FAST_PATH_ENV}='maybe'"):
        cls(uri)


def test_a_subclass_of_a_server_takes_it_too(tmp_path):
    cls = server_class("XGBoostServer")

    class Custom(cls):  # type: ignore[misc,valid-type]
        def __init__(self, model_uri: str, scale: float = 1.0) -> None:
            super().__init__(model_uri)
            self.scale = scale

    assert Custom(str(tmp_path), scale=2.0, fast_path=False).fast_path is False


@pytest.fixture(scope="module")
def forest(tmp_path_factory: pytest.TempPathFactory):
    from sklearn.ensemble import RandomForestClassifier

    model = RandomForestClassifier(10, random_state=0).fit(IRIS_X, IRIS_Y)
    return models.save(model, tmp_path_factory.mktemp("forest") / "forest")


def test_off_serves_the_framework_s_own_call_and_says_so(forest, monkeypatch, caplog):
    cls = server_class("SKLearnServer")
    monkeypatch.setenv(FAST_PATH_ENV, "false")
    with caplog.at_level(logging.INFO, logger="modelshelf.server"):
        off = cls(str(forest))
        off.load()
    # the env var turned it off, and is the one named (not the fast_path parameter)
    assert "MODELSHELF_FAST_PATH=false" in caplog.text
    assert not isinstance(off.method.call, Accelerated)
    assert off.init_metadata()["custom"]["fast path"] == "off (MODELSHELF_FAST_PATH=false)"
    monkeypatch.delenv(FAST_PATH_ENV)
    on = cls(str(forest))
    on.load()
    assert isinstance(on.method.call, Accelerated)
    assert "bit-identical" in on.init_metadata()["custom"]["fast path"]
    np.testing.assert_array_equal(on.predict(IRIS_X), off.predict(IRIS_X))


def test_the_verification_leaves_no_load_warnings(forest):
    """Overflow warnings on the extreme probes are the verifier's, not the model's."""
    server = server_class("SKLearnServer")(str(forest))
    server.load()
    assert isinstance(server.method.call, Accelerated)
    assert server.load_warnings == []


def test_a_model_without_an_accelerator_is_served_by_its_own_call(tmp_path):
    folder = xm.save_booster(xm.iris_softprob(), tmp_path / "iris", "model.json")
    server = server_class("XGBoostServer")(str(folder))
    server.load()
    assert not isinstance(server.method.call, Accelerated)
    assert server.init_metadata()["custom"]["fast path"] == "the framework's own call"
