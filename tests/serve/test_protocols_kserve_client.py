"""KServe's own Python client (``InferenceRESTClient``, the bench's kserve venv, made if
missing) against ``modelshelf serve``: V1 and V2, JSON and binary, health and readiness. It runs
in that venv, as a user's program would, and prints what it got."""

from __future__ import annotations

import json
import subprocess
import textwrap

import joblib
import numpy as np
import pytest
from frontends import MODELSHELF, running, sklearn_launch
from peer_servers import peer_bin

from models import IRIS_X

ROWS = IRIS_X[::25]

CLIENT = textwrap.dedent(
    """
    import asyncio, json, sys

    import httpx
    import numpy as np
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    url, rows = sys.argv[1], np.array(json.loads(sys.argv[2]))


    async def main():
        found = {}
        v1 = InferenceRESTClient(RESTConfig(protocol="v1", retries=0))
        found["v1 live"] = await v1.is_server_live(url)
        found["v1 ready"] = await v1.is_model_ready(url, "flowers")
        try:
            await v1.is_model_ready(url, "roses")
        except httpx.HTTPStatusError as exc:  # KServe's own server answers 404 too
            found["v1 other"] = [exc.response.status_code, str(exc)]
        answer = await v1.infer(url, {"instances": rows.tolist()}, model_name="flowers")
        found["v1 predictions"] = answer["predictions"]
        v2 = InferenceRESTClient(RESTConfig(protocol="v2", retries=0))
        found["v2 live"] = await v2.is_server_live(url)
        found["v2 server ready"] = await v2.is_server_ready(url)
        found["v2 ready"] = await v2.is_model_ready(url, "flowers")
        for binary in (False, True):
            tensor = InferInput("input-0", list(rows.shape), "FP64")
            tensor.set_data_from_numpy(rows, binary_data=binary)
            request = InferRequest(model_name="flowers", infer_inputs=[tensor])
            answer = await v2.infer(url, request, model_name="flowers")
            output = answer.outputs[0]
            found[f"v2 binary={binary}"] = [output.name, output.as_numpy().tolist()]
        await v1.close()
        await v2.close()
        print(json.dumps(found))


    asyncio.run(main())
    """
)


@pytest.fixture(scope="module")
def iris(sklearn_models):
    with running(sklearn_launch(sklearn_models["iris"], "flowers"), [MODELSHELF]) as (service,):
        yield service, joblib.load(sklearn_models["iris"] / "model.joblib")


def test_kserves_client_v1_and_v2(iris):
    service, model = iris
    python = peer_bin("kserve") / "python"
    done = subprocess.run(
        [str(python), "-c", CLIENT, service.url, json.dumps(ROWS.tolist())],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    expected = model.predict_proba(ROWS)
    assert found["v1 live"] and found["v1 ready"]
    status, message = found["v1 other"]
    assert status == 404 and "roses" in message  # the client shows our error's text
    assert found["v2 live"] and found["v2 server ready"] and found["v2 ready"]
    np.testing.assert_allclose(found["v1 predictions"], expected, rtol=1e-12)
    for binary in (False, True):
        name, values = found[f"v2 binary={binary}"]
        assert name == "predict_proba"
        np.testing.assert_allclose(values, expected, rtol=1e-12)
