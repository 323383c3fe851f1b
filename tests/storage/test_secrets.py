"""A canary secret in every place a model URI and its credentials can carry one never leaves the
process: not in an endpoint's answer, not in any log line of any process.

The model is served from ``http://reader:CANARY@…/model.joblib?X-Amz-Signature=CANARY&…`` (the
server checks both), with credential variables holding the canary beside it (AWS, rclone S3
and GCS remotes, MLflow). Both front ends start through ``modelshelf run`` (the images' entry
point, whose start line names the command), answer health, metadata, predictions (good and bad)
and metrics; a second model fails to load; ``modelshelf fetch`` and ``modelshelf env`` fail on
a wrong signature and on rclone credentials the store refuses. Every answer and every log line
is searched for the canary.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from faulty import Route, lying_http_server

from microservice import (
    BIN,
    SERVERS,
    Microservice,
    free_ports,
    run_to_exit,
    started,
    wait_until_healthy,
)

CANARY = f"CANARY{uuid.uuid4().hex}"


def credential_env(tmp_path: Path, audited_s3=None) -> dict[str, str]:
    """Credential variables that all hold the canary (as their whole value or inside it)."""
    env = {
        "AWS_SECRET_ACCESS_KEY": f"{CANARY}-aws",
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SESSION_TOKEN": f"{CANARY}-session",
        "AWS_EC2_METADATA_DISABLED": "true",
        "RCLONE_CONFIG_VAULT_TYPE": "s3",
        "RCLONE_CONFIG_VAULT_ACCESS_KEY_ID": audited_s3.access_key if audited_s3 else "AKID",
        "RCLONE_CONFIG_VAULT_SECRET_ACCESS_KEY": f"{CANARY}-rclone",
        "RCLONE_CONFIG_VAULT_ENDPOINT": audited_s3.endpoint if audited_s3 else "127.0.0.1:9",
        "RCLONE_CONFIG_GCSX_TYPE": "google cloud storage",
        "RCLONE_CONFIG_GCSX_SERVICE_ACCOUNT_CREDENTIALS": json.dumps(
            {"type": "service_account", "private_key": f"-----BEGIN KEY-----{CANARY}-gcs"}
        ),
        "MLFLOW_TRACKING_PASSWORD": f"{CANARY}-mlflow",
        "MODELSHELF_MODEL_CACHE": str(tmp_path / "cache"),
    }
    return env


def signed(url: str, path: str) -> str:
    """``url`` + ``path`` with the canary as password and as the query's signature."""
    host = url.removeprefix("http://")
    return (
        f"http://reader:{CANARY}@{host}{path}"
        f"?X-Amz-Signature={CANARY}&X-Amz-Credential={CANARY}-credential&X-Amz-Expires=300"
    )


def assert_no_canary(where: str, text: str) -> None:
    assert CANARY not in text, f"the canary leaked into {where}:\n{text[-3000:]}"


def server_env(
    tmp_path: Path, frontend: str, uri: str, http_port: int, grpc_port: int, metrics_port: int
) -> dict[str, str]:
    """The environment of an SKLearnServer serving ``uri``, with the canary credentials."""
    return {
        **credential_env(tmp_path),
        "MODEL_NAME": "SKLearnServer",
        "MODELSHELF_FRONTEND": frontend,
        "PREDICTIVE_UNIT_PARAMETERS": json.dumps(
            [{"name": "model_uri", "value": uri, "type": "STRING"}]
        ),
        "PREDICTIVE_UNIT_HTTP_SERVICE_PORT": str(http_port),
        "PREDICTIVE_UNIT_GRPC_SERVICE_PORT": str(grpc_port),
        "PREDICTIVE_UNIT_METRICS_SERVICE_PORT": str(metrics_port),
    }


@pytest.fixture(scope="module")
def model_site(sklearn_models):
    routes = {
        "/models/iris/model.joblib": Route((sklearn_models["iris"] / "model.joblib").read_bytes()),
        "/models/broken/model.joblib": Route(b"this is not a pickle " * 100),
    }
    with lying_http_server(routes, password=CANARY) as server:
        yield server


@pytest.mark.parametrize("frontend", ["seldon", "modelshelf"])
def test_a_served_model_leaks_no_secret(frontend, model_site, tmp_path):
    uri = signed(model_site.url, "/models/iris/model.joblib")
    http_port, grpc_port, metrics_port = free_ports(3)
    env = server_env(tmp_path, frontend, uri, http_port, grpc_port, metrics_port)
    answers: dict[str, str] = {}
    with started([str(BIN / "modelshelf"), "run"], SERVERS / "sklearnserver", env) as (
        process,
        log_path,
    ):
        service = Microservice(process, http_port, 0, metrics_port, log_path)
        wait_until_healthy(service, 120)
        for path in ("/health/status", "/health/ping", "/metadata", "/api/v1.0/metadata"):
            answers[f"GET {path}"] = service.get(path).text
        good = {"data": {"ndarray": [[5.1, 3.5, 1.4, 0.2]]}}
        bad_bodies = [
            {"data": {"ndarray": [[1, 2]]}},  # wrong width: the model's own error
            {"data": {"ndarray": "x"}},
            {"meta": "x", "data": {"ndarray": [[1, 2, 3, 4]]}},
        ]
        for index, body in enumerate([good, *bad_bodies]):
            response = service.post("/api/v1.0/predictions", body)
            answers[f"POST predictions #{index} ({response.status_code})"] = response.text
        answers["GET /prometheus"] = service.client.get(
            f"http://127.0.0.1:{metrics_port}/prometheus"
        ).text
        log = service.log()
        service.client.close()
    health = json.loads(answers["GET /health/status"])
    shown = json.dumps(health)
    assert "/models/iris/model.joblib?X-Amz-Signature=<redacted>" in shown, shown  # redacted
    assert "reader" not in shown
    assert "loaded" in log and "GET /predict" not in log  # the log is the server's, complete
    for where, text in answers.items():
        assert_no_canary(where, text)
    assert_no_canary("the log of every process", log)


@pytest.mark.parametrize("frontend", ["seldon", "modelshelf"])
def test_a_model_that_fails_to_load_leaks_no_secret(frontend, model_site, tmp_path):
    uri = signed(model_site.url, "/models/broken/model.joblib")
    env = server_env(tmp_path, frontend, uri, *free_ports(3))
    result = run_to_exit(
        [str(BIN / "modelshelf"), "run"], SERVERS / "sklearnserver", timeout=120, env=env
    )
    assert result.returncode != 0
    assert "cannot load the model from http://<redacted>@127.0.0.1" in result.stdout
    assert "removed the cached download of http://<redacted>@" in result.stdout
    assert_no_canary("the log of a load failure", result.stdout)
    cache = tmp_path / "cache"
    assert not [p for p in cache.iterdir() if p.is_dir()]  # invalidated: the next start fetches


def test_commands_that_fail_leak_no_secret(model_site, audited_s3, tmp_path):
    """``modelshelf fetch`` refused by the server (a wrong signature) and by S3 (the rclone
    remote's secret is wrong), ``modelshelf env`` on the same URI: one line each, no canary."""
    env = {**os.environ, **credential_env(tmp_path, audited_s3)}
    wrong = signed(model_site.url, "/models/iris/model.joblib").replace(
        f"X-Amz-Signature={CANARY}", f"X-Amz-Signature={CANARY}-expired"
    )
    runs = {
        "fetch, wrong signature": [str(BIN / "modelshelf"), "fetch", wrong, str(tmp_path / "a")],
        "fetch, rclone secret refused": [
            str(BIN / "modelshelf"),
            "fetch",
            "vault:some-bucket/model",
            str(tmp_path / "b"),
        ],
        "env, wrong signature": [str(BIN / "modelshelf"), "env", wrong],
    }
    for name, command in runs.items():
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 1, (name, result.stderr)
        assert "Traceback" not in result.stderr, result.stderr
        assert "cannot download" in result.stderr, result.stderr
        assert_no_canary(name, result.stdout + result.stderr)
