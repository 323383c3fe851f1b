"""``modelshelf.redaction``: what is hidden, what stays readable, and that errors use it."""

from __future__ import annotations

import json

import pytest

from modelshelf.errors import ConfigurationError, ModelLoadError, StorageError
from modelshelf.redaction import (
    credential_values,
    redact_parameter_list,
    redact_parameters,
    redact_text,
    redact_uri,
    secret_name,
)

SIGNED = (
    "https://reader:pa55word@bucket.s3.amazonaws.com:8443/models/iris/model.joblib"
    "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20250101&X-Amz-Signature=abc123"
)


def test_user_info_query_values_and_fragment_are_hidden_names_stay():
    assert redact_uri(SIGNED) == (
        "https://<redacted>@bucket.s3.amazonaws.com:8443/models/iris/model.joblib"
        "?X-Amz-Algorithm=<redacted>&X-Amz-Credential=<redacted>&X-Amz-Signature=<redacted>"
    )
    assert redact_uri("https://h/m.joblib?sv=1&sig=s3cr3t#access_token=t0k3n") == (
        "https://h/m.joblib?sv=<redacted>&sig=<redacted>#<redacted>"
    )
    assert redact_uri("https://token123@github.com/x") == "https://<redacted>@github.com/x"
    assert redact_uri("https://h/x?opaquesecret") == "https://h/x?<redacted>"


@pytest.mark.parametrize(
    "uri",
    ["s3://bucket/models/iris", "gs://b/k", "s3:bucket/key", "/mnt/models", "http://[::1]:80/m"],
)
def test_uris_without_secrets_are_shown_as_they_are(uri):
    assert redact_uri(uri) == uri


def test_redacting_twice_changes_nothing():
    once = redact_text(f"fetching {SIGNED} now")
    assert redact_text(once) == once
    assert redact_uri(redact_uri(SIGNED)) == redact_uri(SIGNED)


def test_urls_and_secret_parameters_inside_text():
    text = (
        f'--parameters [{{"name": "model_uri", "value": "{SIGNED}"}}] '
        "and a logged path GET /b/k?X-Goog-Signature=deadbeef&x=1."
    )
    shown = redact_text(text)
    for secret in ("pa55word", "abc123", "AKID", "deadbeef"):
        assert secret not in shown
    assert shown.endswith("GET /b/k?X-Goog-Signature=<redacted>&x=1.")
    assert '"value": "https://<redacted>@bucket.s3.amazonaws.com:8443/models' in shown


def test_schemes_named_in_prose_stay_whole():
    text = "expected a local path, file://, s3://, gs:// (or s3:bucket/path)"
    assert redact_text(text, environ={}) == text
    assert redact_uri("s3://", values=[]) == "s3://"


def test_a_query_strings_secret_values_are_hidden_whole():
    """A request's query (the access log): a secret parameter's whole value, quotes included,
    also under a prefixed or percent-encoded name; every other pair as sent."""
    query = (
        "x=1&password=pa's&token=t0k&auth_token=a\"b&client_secret=cs1&tok%65n=enc&id_token="
        "&max_tokens=5&n=json"
    )
    assert redact_parameters(query) == (
        "x=1&password=<redacted>&token=<redacted>&auth_token=<redacted>"
        "&client_secret=<redacted>&tok%65n=<redacted>&id_token=&max_tokens=5&n=json"
    )


def test_api_keys_in_a_query_are_hidden_under_each_of_their_usual_names():
    """``key`` (Google's ``?key=``), ``api_key``, ``apikey``, ``api-key``, ``access_key``,
    ``subscription-key``; ``key`` only as a whole name (``sort_key``, ``monkey`` stay)."""
    query = (
        "key=k1&api_key=k2&apikey=k3&API-KEY=k4&access_key=k5&subscription-key=k6"
        "&sort_key=name&monkey=1"
    )
    assert redact_parameters(query) == (
        "key=<redacted>&api_key=<redacted>&apikey=<redacted>&API-KEY=<redacted>"
        "&access_key=<redacted>&subscription-key=<redacted>&sort_key=name&monkey=1"
    )
    # In text: as a query parameter, not an object's key named in prose.
    logged = "GET /v1/models?key=AIzaSyA1&n=2 failed; key=models/iris.joblib"
    assert redact_text(logged, environ={}) == (
        "GET /v1/models?key=<redacted>&n=2 failed; key=models/iris.joblib"
    )


def test_values_of_credential_variables_are_hidden_wherever_they_appear():
    environ = {
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG",
        "AWS_SESSION_TOKEN": "FwoGZXIvYXdzEJr",
        "RCLONE_CONFIG_MYS3_SECRET_ACCESS_KEY": "rclone-secret-value",
        "RCLONE_CONFIG_GCS_SERVICE_ACCOUNT_CREDENTIALS": json.dumps(
            {"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----MIIEv"}
        ),
        "MLFLOW_TRACKING_PASSWORD": "hunter22",
        # Not secrets: paths, flags, identifiers.
        "GOOGLE_APPLICATION_CREDENTIALS": "/var/secrets/sa.json",
        "AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/token",
        "RCLONE_CONFIG_MYS3_SESSION_TOKEN": "true",
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
    }
    text = (
        "keys wJalrXUtnFEMI/K7MDENG FwoGZXIvYXdzEJr rclone-secret-value hunter22 "
        "-----BEGIN PRIVATE KEY-----MIIEv; files /var/secrets/sa.json /var/run/token; "
        "flag true; id AKIAEXAMPLE"
    )
    assert redact_text(text, environ) == (
        "keys <redacted> <redacted> <redacted> <redacted> <redacted>; "
        "files /var/secrets/sa.json /var/run/token; flag true; id AKIAEXAMPLE"
    )
    assert "AKIAEXAMPLE" not in credential_values(environ)


def test_errors_are_redacted_when_made(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "the-secret-key-value")
    error = StorageError(SIGNED, "signature the-secret-key-value refused")
    assert "pa55word" not in str(error) and "abc123" not in str(error)
    assert "the-secret-key-value" not in str(error) and "the-secret-key-value" not in error.reason
    assert error.uri == redact_uri(SIGNED)
    assert "abc123" not in str(ModelLoadError(SIGNED, "EOF"))
    assert "pa55word" not in str(ConfigurationError("model_uri", SIGNED, "a URI"))


def test_a_signed_query_after_a_local_path_is_hidden(tmp_path):
    """A model_uri that is a local path with a signed query pasted after it (no ``scheme://``):
    the download's error named the path with the signature (user trial)."""
    from modelshelf.storage import download

    missing = f"{tmp_path}/rf?X-Amz-Signature=abc123&X-Amz-Credential=AKIA%2Fs3cret&v=2"
    with pytest.raises(StorageError) as failed:
        download(missing, tmp_path / "out")
    assert "abc123" not in str(failed.value) and "s3cret" not in str(failed.value)
    assert f"{tmp_path}/rf?X-Amz-Signature=<redacted>" in str(failed.value)
    assert redact_uri("/models/iris?v=2") == "/models/iris?v=2"  # other values stay


@pytest.mark.parametrize("kind", [ModelLoadError, StorageError])
def test_an_error_reads_the_credential_variables_once(kind, monkeypatch):
    """Redacting the URI, the reason and then the whole message again scanned the environment
    three times per error; its parts are redacted once, with one scan, and nothing leaks."""
    import modelshelf.errors as errors_module

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG")
    scans = []
    real = errors_module.credential_values

    def counted(environ=None):
        scans.append(1)
        return real(environ)

    monkeypatch.setattr(errors_module, "credential_values", counted)
    error = kind(SIGNED, f"denied with wJalrXUtnFEMI/K7MDENG for {SIGNED}")
    assert len(scans) == 1
    text = str(error)
    assert "wJalrXUtnFEMI" not in text and "pa55word" not in text and "abc123" not in text
    assert text.count("X-Amz-Signature=<redacted>") == 2


@pytest.mark.parametrize(
    "name, secret",
    [
        ("password", True),
        ("db_password", True),
        ("api_token", True),
        ("apikey", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("RCLONE_CONFIG_S3_SECRET_ACCESS_KEY", True),
        ("model_uri", False),
        ("method", False),
        ("GOOGLE_APPLICATION_CREDENTIALS", False),  # a file's path, which helps a reader
        ("MODELSHELF_DOWNLOAD_MIN_SPEED", False),
    ],
)
def test_secret_names(name, secret):
    assert secret_name(name) is secret


def test_a_secret_settings_value_is_never_shown_by_its_error():
    error = ConfigurationError("db_password", "hunter2-plain", "a whole number")
    assert "hunter2" not in str(error)
    assert error.value == "<redacted>"
    assert "'60'" in str(ConfigurationError("timeout", "60", "a number > 0"))


def test_a_parameter_lists_secret_values_are_redacted_the_rest_kept():
    listed = json.dumps(
        [
            {"name": "token", "value": "abc123456", "type": "STRING"},
            {"name": "method", "value": "predict", "type": "STRING"},
        ]
    )
    shown = json.loads(redact_parameter_list(listed))
    assert [entry["value"] for entry in shown] == ["<redacted>", "predict"]
    assert (
        redact_parameter_list("not json https://u:p@host/x") == "not json https://<redacted>@host/x"
    )
