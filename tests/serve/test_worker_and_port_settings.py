"""The worker counts and ports ``modelshelf serve`` and ``modelshelf.kserve_model`` read from the
environment follow ``modelshelf.number_settings``' rules: text was a bare ``ValueError``
traceback, and a negative worker count was quietly served as 1 (REST) or 0 (gRPC) workers."""

from __future__ import annotations

import pytest
from frontends import MODELSHELF

from microservice import SERVERS, run_to_exit, seldon_parameters
from modelshelf.errors import ConfigurationError, SettingError
from modelshelf.kserve_model import model_server_arguments
from modelshelf.serve import options

SERVE_VARIABLES = (
    "GUNICORN_WORKERS",
    "GRPC_WORKERS",
    "PREDICTIVE_UNIT_HTTP_SERVICE_PORT",
    "PREDICTIVE_UNIT_GRPC_SERVICE_PORT",
    "PREDICTIVE_UNIT_METRICS_SERVICE_PORT",
    "HTTP_PORT",
    "GRPC_PORT",
    "WORKERS",
)
NOT_NUMBERS = ["many", "-1", "1.5", "nan", "inf"]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in SERVE_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("variable", SERVE_VARIABLES[:-1])
@pytest.mark.parametrize("text", NOT_NUMBERS)
def test_serve_refuses_a_worker_count_or_port_that_is_no_number_naming_it(
    variable, text, monkeypatch
):
    monkeypatch.setenv(variable, text)
    with pytest.raises(SettingError) as refused:
        options.parse_args(["SKLearnServer"])
    assert str(refused.value).startswith(f"environment variable {variable}={text!r} is not valid")


@pytest.mark.parametrize(
    ("variable", "text"),
    [("GUNICORN_WORKERS", "0"), ("HTTP_PORT", "0"), ("GRPC_PORT", "65536")],
)
def test_zero_rest_workers_and_ports_out_of_range_are_refused(variable, text, monkeypatch):
    monkeypatch.setenv(variable, text)
    with pytest.raises(SettingError, match=f"{variable}='{text}' is not valid"):
        options.parse_args(["SKLearnServer"])


def test_documented_values_are_read(monkeypatch):
    args = options.parse_args(["SKLearnServer"])
    assert (args.workers, args.grpc_workers) == (1, 1)
    assert (args.http_port, args.grpc_port, args.metrics_port) == (9000, 5000, 6000)
    monkeypatch.setenv("GUNICORN_WORKERS", "4")
    monkeypatch.setenv("GRPC_WORKERS", "0")  # documented: REST only, no gRPC server
    monkeypatch.setenv("HTTP_PORT", "8080")
    monkeypatch.setenv("PREDICTIVE_UNIT_METRICS_SERVICE_PORT", "6001")
    args = options.parse_args(["SKLearnServer"])
    assert (args.workers, args.grpc_workers) == (4, 0)
    assert (args.http_port, args.metrics_port) == (8080, 6001)
    monkeypatch.setenv("PREDICTIVE_UNIT_HTTP_SERVICE_PORT", "9001")
    monkeypatch.setenv("HTTP_PORT", "http")  # Seldon's variable wins: KServe's is not read
    assert options.parse_args(["SKLearnServer"]).http_port == 9001


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--workers", "-1"], "option --workers='-1'"),
        (["--workers", "0"], "option --workers='0'"),
        (["--grpc-workers", "-1"], "option --grpc-workers='-1'"),
    ],
)
def test_a_negative_worker_option_is_refused_naming_it(argv, named):
    with pytest.raises(ConfigurationError) as refused:
        options.parse_args(["SKLearnServer", *argv])
    assert str(refused.value).startswith(f"{named} is not valid: expected"), refused.value


def test_no_grpc_workers_is_taken_as_an_option():
    assert options.parse_args(["SKLearnServer", "--grpc-workers", "0"]).grpc_workers == 0


@pytest.mark.parametrize(
    ("variable", "text"),
    [("HTTP_PORT", "http"), ("GRPC_PORT", "-8081"), ("WORKERS", "-2"), ("WORKERS", "two")],
)
def test_kserve_model_server_arguments_refuse_nonsense_naming_it(variable, text, monkeypatch):
    monkeypatch.setenv(variable, text)
    with pytest.raises(SettingError) as refused:
        model_server_arguments([])
    assert str(refused.value).startswith(f"environment variable {variable}={text!r} is not valid")


def test_kserve_model_server_arguments_read_documented_values(monkeypatch):
    args = model_server_arguments([])
    assert (args.http_port, args.grpc_port, args.workers) == (8080, 8081, 1)
    monkeypatch.setenv("HTTP_PORT", "9080")
    monkeypatch.setenv("WORKERS", "3")
    args = model_server_arguments([])
    assert (args.http_port, args.workers) == (9080, 3)


@pytest.mark.parametrize(
    ("variable", "text", "expected"),
    [
        ("GUNICORN_WORKERS", "many", "a whole number of REST workers >= 1"),
        ("GRPC_WORKERS", "-1", "a whole number of gRPC workers >= 0 (0: no gRPC server)"),
    ],
)
def test_serve_exits_1_with_one_error_line_naming_the_variable(tmp_path, variable, text, expected):
    params = seldon_parameters(model_uri=str(tmp_path))
    result = run_to_exit(
        [*MODELSHELF, "SKLearnServer", "--parameters", params],
        SERVERS / "sklearnserver",
        env={variable: text},
    )
    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stdout, result.stdout
    errors = [line for line in result.stdout.splitlines() if " - ERROR:" in line]
    assert len(errors) == 1, result.stdout
    assert errors[0].endswith(
        f"modelshelf serve could not start: environment variable {variable}={text!r} is not "
        f"valid: expected {expected}"
    ), errors[0]
