"""Errors about environment variables say "environment variable NAME=…", not "parameter NAME=…"
(a parameter is the SeldonDeployment's: the wrong place to look)."""

from __future__ import annotations

import pytest

from modelshelf import deferred_imports, persistence, storage
from modelshelf.commands.env import model_uri_from_parameters
from modelshelf.errors import ConfigurationError
from modelshelf.launcher import _values
from modelshelf.server import ModelServer

PORT = "PREDICTIVE_UNIT_HTTP_SERVICE_PORT"

READS = {
    "API_TYPE": lambda: _values.api_types("SOAP"),
    "PERSISTENCE": lambda: _values.flag("PERSISTENCE", "maybe"),
    "PREDICTIVE_UNIT_PARAMETERS": lambda: _values.unit_parameters("[1]"),
    PORT: lambda: _values.port({PORT: "http"}, PORT),
    "MODELSHELF_STOP_SECONDS": lambda: _values.stop_seconds("soon"),
    "MODELSHELF_FRONTEND": lambda: _values.frontend("nginx"),
    "REDIS_SERVICE_PORT": lambda: persistence.redis_client({"REDIS_SERVICE_PORT": "redis"}),
}


@pytest.mark.parametrize("variable", sorted(READS))
def test_a_bad_environment_variable_is_named_as_one(variable):
    with pytest.raises(ConfigurationError) as refused:
        READS[variable]()
    assert str(refused.value).startswith(f"environment variable {variable}="), refused.value


def test_an_unwritable_model_cache_is_named_as_an_environment_variable(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("MODELSHELF_MODEL_CACHE", str(tmp_path / "file" / "cache"))
    with pytest.raises(ConfigurationError, match=r"^environment variable MODELSHELF_MODEL_CACHE="):
        storage.cache_root()


@pytest.mark.parametrize("text", ["", "{not json", "[]"])
def test_modelshelf_env_names_predictive_unit_parameters_as_an_environment_variable(text):
    with pytest.raises(
        ConfigurationError, match=r"^environment variable PREDICTIVE_UNIT_PARAMETERS="
    ):
        model_uri_from_parameters({"PREDICTIVE_UNIT_PARAMETERS": text})


@pytest.mark.parametrize(
    "variable, read",
    [
        ("MODELSHELF_FAST_PATH", lambda: ModelServer(model_uri="unused")),
        ("MODELSHELF_DEFER_IMPORTS", deferred_imports.enabled),
    ],
)
def test_a_bad_boolean_environment_variable_is_named_as_one(variable, read, monkeypatch):
    monkeypatch.setenv(variable, "maybe")
    with pytest.raises(ConfigurationError) as refused:
        read()
    assert str(refused.value) == (
        f"environment variable {variable}='maybe' is not valid: expected true or false"
    )


def test_a_bad_fast_path_parameter_is_still_named_as_a_parameter():
    with pytest.raises(ConfigurationError, match=r"^parameter fast_path='maybe' is not valid"):
        ModelServer(model_uri="unused", fast_path="maybe")
