"""The templates as images: each Dockerfile builds FROM the base image and the container answers
its endpoints; the router's state survives a container restart through Redis.

Opt-in, like tests/images: ``MODELSHELF_TEST_IMAGES=1`` (``make test-images``, after ``make
images`` built ``localhost/modelshelf/base:dev``; ``MODELSHELF_BASE_IMAGE`` names another).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import uuid
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from microservice import CLIENT_LIMITS, REPO, free_port, seldon_parameters
from redisserver import running_redis

if os.environ.get("MODELSHELF_TEST_IMAGES") != "1":
    pytest.skip("image tests run with make test-images", allow_module_level=True)

ENGINE = os.environ.get("CONTAINER_ENGINE", "podman")
BASE_IMAGE = os.environ.get("MODELSHELF_BASE_IMAGE", "localhost/modelshelf/base:dev")
TEMPLATES = REPO / "templates"


def engine(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [ENGINE, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{ENGINE} {' '.join(args)}:\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def built() -> dict[str, str]:
    """Every template's image, built from its own folder as the README says."""
    engine("image", "exists", BASE_IMAGE)
    tags = {}
    for folder in sorted(p for p in TEMPLATES.iterdir() if p.is_dir()):
        tag = f"localhost/modelshelf-templates/{folder.name}:test"
        engine(
            "build",
            "--layers",
            "--pull=never",
            "--build-arg",
            f"BASE_IMAGE={BASE_IMAGE}",
            "-t",
            tag,
            str(folder),
        )
        tags[folder.name] = tag
    return tags


@contextlib.contextmanager
def container(
    tag: str, flags: list[str], http_port: int, ready_path: str, args: tuple[str, ...] = ()
) -> Iterator[httpx.Client]:
    """The container on the host's network, a client once ``ready_path`` answers 200; stopped and
    removed after."""
    name = f"modelshelf-template-{uuid.uuid4().hex[:8]}"
    engine("run", "-d", "--name", name, "--network", "host", *flags, tag, *args)
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{http_port}", timeout=30, limits=CLIENT_LIMITS
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if client.get(ready_path).status_code == 200:
                    break
            if time.monotonic() > deadline:
                logs = subprocess.run([ENGINE, "logs", name], capture_output=True, text=True)
                raise TimeoutError(f"{tag} not ready:\n{logs.stdout[-2000:]}{logs.stderr[-2000:]}")
            time.sleep(0.3)
        yield client
    finally:
        client.close()
        subprocess.run([ENGINE, "stop", "-t", "10", name], capture_output=True, check=False)
        subprocess.run([ENGINE, "rm", "-f", name], capture_output=True, check=False)


@contextlib.contextmanager
def running(tag: str, parameters: str = "[]", env: dict | None = None) -> Iterator[httpx.Client]:
    """The container on free ports given as the operator gives them."""
    http_port = free_port()
    variables = {
        "PREDICTIVE_UNIT_HTTP_SERVICE_PORT": str(http_port),
        "PREDICTIVE_UNIT_GRPC_SERVICE_PORT": str(free_port()),
        "PREDICTIVE_UNIT_METRICS_SERVICE_PORT": str(free_port()),
        "PREDICTIVE_UNIT_PARAMETERS": parameters,
        **(env or {}),
    }
    flags = [item for key, value in variables.items() for item in ("-e", f"{key}={value}")]
    with container(tag, flags, http_port, "/health/ping") as client:
        yield client


def ndarray(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.array(response.json()["data"]["ndarray"])


def test_stateless_templates_answer_their_endpoints(built):
    with running(built["model"], seldon_parameters(weight=2.0)) as model:
        found = ndarray(model.post("/predict", json={"data": {"ndarray": [[1.0, 2.0]]}}))
        np.testing.assert_array_equal(found, [[6.0]])
    with running(built["transformer"], seldon_parameters(offset=1.0, scale=2.0)) as transformer:
        found = ndarray(transformer.post("/transform-input", json={"data": {"ndarray": [[3.0]]}}))
        np.testing.assert_array_equal(found, [[1.0]])
    with running(built["combiner"]) as combiner:
        messages = [{"data": {"ndarray": [[1.0]]}}, {"data": {"ndarray": [[3.0]]}}]
        found = ndarray(combiner.post("/aggregate", json={"seldonMessages": messages}))
        np.testing.assert_array_equal(found, [[2.0]])
    with running(built["outlier-detector"]) as detector:
        response = detector.post("/transform-input", json={"data": {"ndarray": [[0.0], [9.0]]}})
        np.testing.assert_array_equal(ndarray(response), [[0.0], [9.0]])
        assert response.json()["meta"]["tags"]["outlierScore"] == [0.0, 9.0]


def test_router_image_remembers_feedback_across_a_restart(built):
    params = seldon_parameters(n_branches=2, epsilon=0.0)
    request = {"data": {"ndarray": [[1.0, 2.0]]}}
    reward_branch_1 = {"response": {"meta": {"routing": {"router": 1}}}, "reward": 1.0}
    with running_redis() as redis_server:
        env = {**redis_server.env, "PREDICTIVE_UNIT_ID": "router", "PERSISTENCE_PERIOD": "0.2"}
        with running(built["router"], params, env) as router:
            assert ndarray(router.post("/route", json=request)).item() == 0
            assert router.post("/send-feedback", json=reward_branch_1).status_code == 200
            assert ndarray(router.post("/route", json=request)).item() == 1
            key = "modelshelf:state:local:default:router"
            deadline = time.monotonic() + 10
            while redis_server.client().get(key) is None and time.monotonic() < deadline:
                time.sleep(0.1)
        with running(built["router"], params, env) as router:
            assert ndarray(router.post("/route", json=request)).item() == 1


def test_kserve_model_image_serves_its_example_as_kserve_runs_it(built):
    """KServe's variables and arguments, a read-only root filesystem, a non-root user; the
    example model the image trained at build time in /mnt/models; V1 and V2 answers."""
    http_port, grpc_port, metrics_port = (free_port() for _ in range(3))
    flags = [
        "--read-only", "--tmpfs", "/tmp",
        "-e", "MODEL_NAME=iris", "-e", f"GRPC_PORT={grpc_port}",
        "-e", f"PREDICTIVE_UNIT_METRICS_SERVICE_PORT={metrics_port}",
    ]  # fmt: skip
    args = (f"--http_port={http_port}",)
    with container(built["kserve-model"], flags, http_port, "/v2/health/ready", args) as client:
        rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
        v1 = client.post("/v1/models/iris:predict", json={"instances": rows})
        assert v1.status_code == 200, v1.text
        predictions = np.array(v1.json()["predictions"])
        assert predictions.shape == (2, 3) and predictions.argmax(axis=1).tolist() == [0, 2]
        body = {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP64", "data": rows}]}
        v2 = client.post("/v2/models/iris/infer", json=body)
        assert v2.status_code == 200, v2.text
        np.testing.assert_array_equal(
            np.array(v2.json()["outputs"][0]["data"]).reshape(2, 3), predictions
        )
