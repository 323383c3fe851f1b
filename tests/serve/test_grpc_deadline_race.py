"""A queued (batched) gRPC call whose deadline passes while its model call runs: once the
answer is computed it is sent, not DEADLINE_EXCEEDED. The deadline's timer and the answer
became due in the same loop pass, and the timer ran first. Raw HTTP/2, as a client that keeps
no deadline of its own (a proxy) would send it; grpcio's client gives up at its own deadline."""

from __future__ import annotations

import numpy as np
from frontends import COMPONENTS, MODELSHELF, Launch, running
from test_grpc_transport import MODEL_INFER, RawConnection
from tritonclient.grpc import service_pb2

from microservice import seldon_parameters
from modelshelf.serve.http2 import frames as f

IRIS_ROW = [5.1, 3.5, 1.4, 0.2]


def test_an_answer_ready_when_its_deadline_passed_is_sent(sklearn_models):
    # A batch wait queues the call; its two rows fill the batch (2 at most), so the flush is
    # scheduled at once, not by a timer. The deadline (400 ms) passes during the model's 1 s;
    # the answer is due in the loop pass after the flush, where the expired timer ran first.
    params = seldon_parameters(model_uri=sklearn_models["iris"], sleep_seconds=1.0, fast_path=False)
    launch = Launch(
        "SlowSKLearnServer", COMPONENTS, params, grpc=True, extra_args=("--model-name", "iris")
    )
    env = {"MODELSHELF_MAX_BATCH_TIME_MS": "100", "MODELSHELF_MAX_BATCH_SIZE": "2"}
    request = service_pb2.ModelInferRequest(model_name="iris")
    request.inputs.add(name="x", datatype="FP64", shape=[2, 4])
    request.raw_input_contents.append(np.array([IRIS_ROW, IRIS_ROW], "<f8").tobytes())
    message = request.SerializeToString()
    with running(launch, [MODELSHELF], env=env, timeout=120) as (service,):
        raw = RawConnection(service)
        try:
            raw.send(
                raw.headers(1, MODEL_INFER, extra=[(b"grpc-timeout", b"400m")]),
                f.frame(
                    f.DATA, f.END_STREAM, 1, b"\x00" + len(message).to_bytes(4, "big") + message
                ),
            )
            assert raw.grpc_status(1) == "0"
        finally:
            raw.close()
        assert "Traceback" not in service.log()
