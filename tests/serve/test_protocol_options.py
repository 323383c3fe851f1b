"""The options the serving protocols add: the model's name, KServe's runtime arguments, ports."""

from __future__ import annotations

import json

import pytest

from modelshelf.serve import options

PORT_VARIABLES = (
    "PREDICTIVE_UNIT_HTTP_SERVICE_PORT",
    "PREDICTIVE_UNIT_GRPC_SERVICE_PORT",
    "HTTP_PORT",
    "GRPC_PORT",
    "MODEL_NAME",
    "PREDICTIVE_UNIT_ID",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in PORT_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_kserve_image_ports_and_seldons_win(monkeypatch):
    monkeypatch.setenv("HTTP_PORT", "8080")
    monkeypatch.setenv("GRPC_PORT", "8081")
    args = options.parse_args(["SKLearnServer"])
    assert (args.http_port, args.grpc_port) == (8080, 8081)
    monkeypatch.setenv("PREDICTIVE_UNIT_HTTP_SERVICE_PORT", "9000")
    assert options.parse_args(["SKLearnServer"]).http_port == 9000
    args = options.parse_args(["SKLearnServer", "--http_port", "7000", "--grpc_port", "7001"])
    assert (args.http_port, args.grpc_port) == (7000, 7001)


def test_kserve_runtime_arguments_give_name_and_model_uri():
    args = options.parse_args(
        ["SKLearnServer", "--model_name=iris", "--model_dir=/mnt/models", "--http_port=8080"]
    )
    assert args.model_name == "iris"
    assert options.user_parameters(args.parameters) == {"model_uri": "/mnt/models"}


def test_a_given_model_uri_wins_over_model_dir():
    given = json.dumps([{"name": "model_uri", "value": "s3://b/m", "type": "STRING"}])
    args = options.parse_args(["X", "--parameters", given, "--model_dir", "/mnt/models"])
    assert options.user_parameters(args.parameters) == {"model_uri": "s3://b/m"}


def test_model_name_from_the_environment(monkeypatch):
    monkeypatch.setenv("MODEL_NAME", "flowers")
    assert options.parse_args(["SKLearnServer"]).model_name == "flowers"
    assert options.parse_args(["SKLearnServer", "--model-name", "x"]).model_name == "x"


def test_model_name_naming_the_class_is_seldons_meaning(monkeypatch):
    """Seldon's s2i images set MODEL_NAME to the class: the model then keeps its own name."""
    monkeypatch.setenv("MODEL_NAME", "SKLearnServer")
    assert options.parse_args(["SKLearnServer"]).model_name is None
    assert options.parse_args(["servers.SKLearnServer"]).model_name is None


def test_model_name_under_seldon_is_the_predictive_units(monkeypatch):
    """Each Seldon pod's model folder is /mnt/models: the unit's name tells the models apart."""
    monkeypatch.setenv("PREDICTIVE_UNIT_ID", "classifier")
    assert options.parse_args(["SKLearnServer"]).model_name == "classifier"
    monkeypatch.setenv("MODEL_NAME", "SKLearnServer")  # s2i's class: the unit's name stays
    assert options.parse_args(["SKLearnServer"]).model_name == "classifier"
    monkeypatch.setenv("MODEL_NAME", "flowers")
    assert options.parse_args(["SKLearnServer"]).model_name == "flowers"
