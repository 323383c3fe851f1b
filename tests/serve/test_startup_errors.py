"""Start-up failures of ``modelshelf serve``: modelshelf's own errors are one ERROR line (what
failed, the redacted URI, what was expected) and no traceback; anything else keeps its
traceback. The exit code is 1 either way."""

from __future__ import annotations

import json
import pickle
import socket

import joblib
import pytest
from frontends import COMPONENTS, MODELSHELF

from microservice import SERVERS, free_port, run_to_exit, seldon_parameters
from models import iris_classifier


def error_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if " - ERROR:" in line]


def serve_sklearn(model_uri: str, *extra_args: str) -> tuple[int, str]:
    params = seldon_parameters(model_uri=model_uri)
    result = run_to_exit(
        [*MODELSHELF, "SKLearnServer", "--parameters", params, "--grpc-workers", "0", *extra_args],
        SERVERS / "sklearnserver",
    )
    return result.returncode, result.stdout


def test_a_model_uri_that_does_not_exist_is_one_error_line(tmp_path):
    code, log = serve_sklearn(str(tmp_path / "missing"))
    assert code == 1, log
    assert "Traceback" not in log
    (line,) = error_lines(log)
    assert f"could not start SKLearnServer: cannot download {tmp_path / 'missing'}" in line
    assert "no such file or folder" in line


def test_the_traceback_of_a_typed_error_is_logged_at_debug(tmp_path):
    code, log = serve_sklearn(str(tmp_path / "missing"), "--log-level", "DEBUG")
    assert code == 1, log
    (line,) = error_lines(log)
    assert f"cannot download {tmp_path / 'missing'}" in line
    assert "--log-level DEBUG" not in line  # ours alone: the traceback adds nothing to act on
    after = log[log.index(line) :]
    assert "DEBUG:  where it failed\nTraceback (most recent call last):" in after, log
    assert f"StorageError: cannot download {tmp_path / 'missing'}" in after


def test_an_unreadable_pickle_is_one_error_line_pointing_to_its_traceback(tmp_path):
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(object())[:5])  # cut short
    code, log = serve_sklearn(str(tmp_path))
    assert code == 1, log
    assert "Traceback" not in log
    (line,) = error_lines(log)
    assert f"cannot load the model from {tmp_path}" in line
    assert "model.pkl (5 bytes) looks truncated or corrupt" in line  # not a bare EOFError
    assert "expected a complete pickle or joblib file" in line
    assert line.endswith("; --log-level DEBUG logs its traceback")  # unpickling's error, quoted


def test_a_typed_error_in_a_worker_is_one_line_with_the_uri_redacted():
    uri = "https://models.example/iris?X-Amz-Signature=very-secret-value"
    params = seldon_parameters(fail_load_uri=uri)
    result = run_to_exit([*MODELSHELF, "CrashingModel", "--parameters", params], COMPONENTS)
    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stdout
    assert "very-secret-value" not in result.stdout
    failed = [line for line in error_lines(result.stdout) if "rest failed" in line]
    assert len(failed) == 1, result.stdout
    assert "cannot load the model from https://models.example/iris" in failed[0]
    assert "expected model.joblib" in failed[0]


def test_an_unexpected_exception_keeps_its_traceback():
    params = seldon_parameters(fail_load=True)
    result = run_to_exit([*MODELSHELF, "CrashingModel", "--parameters", params], COMPONENTS)
    assert result.returncode == 1, result.stdout
    assert "Traceback" in result.stdout
    assert "RuntimeError: CrashingModel cannot load (fail_load)" in result.stdout


@pytest.mark.parametrize(
    "variable, value, refusal",
    [
        (
            "MODELSHELF_MAX_BATCH_SIZE",
            "nan",
            "environment variable MODELSHELF_MAX_BATCH_SIZE='nan' is not valid: "
            "expected a positive integer",
        ),
        (
            "SELDON_LOG_LEVEL",
            "LOUD",
            "could not start: environment variable SELDON_LOG_LEVEL='LOUD' is not valid: "
            "expected one of DEBUG, INFO, WARNING, WARN, ERROR, CRITICAL (any case)",
        ),
    ],
)
def test_a_bad_setting_is_one_error_line_before_the_model_loads(tmp_path, variable, value, refusal):
    params = seldon_parameters(model_uri=str(tmp_path / "not-read"))
    result = run_to_exit(
        [*MODELSHELF, "SKLearnServer", "--parameters", params],
        SERVERS / "sklearnserver",
        env={variable: value},
    )
    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stdout
    (line,) = error_lines(result.stdout)  # not one per worker, nor a worker replaced
    assert line.endswith(refusal)
    assert "cannot download" not in result.stdout  # refused before the model URI is read


@pytest.mark.parametrize(
    "parameters, refusal",
    [
        (  # a typo in a SeldonDeployment's parameters: was __init__'s TypeError traceback
            [
                {"name": "model_uri", "value": "/not-read", "type": "STRING"},
                {"name": "methd", "value": "predict", "type": "STRING"},
            ],
            "parameter methd='predict' is not valid: expected a parameter SKLearnServer takes "
            "(model_uri, method, model_file, fast_path)",
        ),
        (  # no model_uri at all
            [{"name": "method", "value": "predict", "type": "STRING"}],
            "parameter model_uri is missing: SKLearnServer needs it (it takes model_uri, method, "
            "model_file, fast_path); give it in --parameters, PREDICTIVE_UNIT_PARAMETERS or the "
            "graph's parameters",
        ),
        (  # was seldon-core's SeldonMicroserviceException with no text: a bare traceback
            [
                {"name": "model_uri", "value": "/not-read", "type": "STRING"},
                {"name": "fast_path", "value": "sometimes", "type": "BOOL"},
            ],
            "parameter fast_path='sometimes' is not valid: expected a BOOL: true or false",
        ),
    ],
)
def test_a_wrong_parameter_is_one_error_line_naming_it(parameters, refusal):
    result = run_to_exit(
        [*MODELSHELF, "SKLearnServer", "--parameters", json.dumps(parameters)],
        SERVERS / "sklearnserver",
    )
    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stdout
    (line,) = error_lines(result.stdout)
    assert line.endswith(f"could not start SKLearnServer: {refusal}"), line
    assert "cannot download" not in result.stdout  # refused before the model URI is read


SECRET = "hunter2-not-for-logs"


@pytest.mark.parametrize(
    "parameters, refusal",
    [
        (  # a secret parameter's value that its type cannot read: named, its value not shown
            [
                {"name": "model_uri", "value": "/not-read", "type": "STRING"},
                {"name": "db_password", "value": SECRET, "type": "INT"},
            ],
            "parameter db_password='<redacted>' is not valid: expected a whole number (its "
            "type is INT)",
        ),
        (  # an entry without a name: the whole list is quoted, the secret's value redacted
            [
                {"name": "api_token", "value": SECRET, "type": "STRING"},
                {"value": "predict", "type": "STRING"},
            ],
            'argument --parameters=\'[{"name":"api_token","value":"<redacted>",'
            '"type":"STRING"},{"value":"predict","type":"STRING"}]\' is not '
            'valid: expected a JSON list of {"name": …, "value": …, "type": …} objects',
        ),
    ],
)
def test_a_secret_parameter_s_value_stays_out_of_the_start_up_error(parameters, refusal):
    """Start-up errors quote the parameters they refuse; a password or token among them (a
    user's class may take one) was quoted too."""
    result = run_to_exit(
        [*MODELSHELF, "SKLearnServer", "--parameters", json.dumps(parameters)],
        SERVERS / "sklearnserver",
    )
    assert result.returncode == 1, result.stdout
    (line,) = error_lines(result.stdout)
    assert line.endswith(f"could not start SKLearnServer: {refusal}"), line
    assert SECRET not in result.stdout


def test_seldon_cores_start_up_notices_are_not_logged_at_info(tmp_path):
    """seldon-core's "Tensorflow is not installed" notice (11 lines) and Flask's whole
    configuration were logged at INFO at every start, before the lines that matter; at DEBUG
    they still are."""
    model = tmp_path / "missing"  # the notices come before the model loads
    code, log = serve_sklearn(str(model))
    assert code == 1, log
    assert "Tensorflow is not installed" not in log
    assert "App Config" not in log
    assert "Registering the custom error handler" not in log
    assert f"cannot download {model}" in log
    code, log = serve_sklearn(str(model), "--log-level", "DEBUG")
    assert "Tensorflow is not installed" in log


def test_a_port_out_of_range_or_taken_twice_is_one_error_line(tmp_path):
    """Was the socket's OverflowError traceback (after the model had loaded) for 99999, and
    "Address already in use" for two options naming one port."""
    port = str(free_port())
    for ports, refusal in (
        (
            ["--http-port", "99999"],
            "option --http-port='99999' is not valid: expected a TCP port number, 1-65535 (0: any "
            "free port)",
        ),
        (
            ["--http-port", port, "--metrics-port", port],
            f"option --metrics-port='{port}' is not valid: expected a port other than "
            "--http-port's",
        ),
    ):
        code, log = serve_sklearn(str(tmp_path / "not-read"), *ports)
        assert code == 1, log
        assert "Traceback" not in log
        (line,) = error_lines(log)
        assert line.endswith(refusal), line
        assert "cannot download" not in log  # refused before the model URI is read


def test_a_port_in_use_is_one_error_line_naming_it(tmp_path):
    joblib.dump(iris_classifier(), tmp_path / "model.joblib")
    taken = socket.socket()
    taken.bind(("0.0.0.0", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        code, log = serve_sklearn(str(tmp_path), "--http-port", str(port))
    finally:
        taken.close()
    assert code == 1, log
    assert "Traceback" not in log
    (line,) = error_lines(log)
    assert line.endswith(
        f"option --http-port='{port}' is not valid: expected a port this process can listen on "
        "(Address already in use)"
    ), line


def test_a_class_that_is_not_there_is_one_error_line_naming_the_folder():
    """seldon-core's way of finding the class (``Name`` from ``Name.py`` in the working
    directory); a typo was importlib's ModuleNotFoundError traceback."""
    result = run_to_exit(
        [*MODELSHELF, "SKLearnServr", "--parameters", "[]"], SERVERS / "sklearnserver"
    )
    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stdout
    (line,) = error_lines(result.stdout)
    folder = SERVERS / "sklearnserver"
    assert line.endswith(
        f"argument class='SKLearnServr' is not valid: expected a module SKLearnServr (a file "
        f"SKLearnServr.py in the working directory {folder}, or installed) defining the class "
        "SKLearnServr (No module named 'SKLearnServr')"
    ), line
