"""One gRPC worker process: seldon-core's own services (``Model``, ``Generic``, ``Transformer``,
``OutputTransformer``, ``Router``, ``Combiner``, ``Seldon``, reflection) and, for a ``MODEL``, the
Open Inference Protocol's ``inference.GRPCInferenceService`` -- all on one server, one port."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from typing import Any

from seldon_core.metrics import SeldonMetrics

logger = logging.getLogger(__name__)

#: Seconds in-flight calls get to finish after SIGTERM.
GRACE_SECONDS = 5.0


def run_grpc_worker(
    user_model: Any,
    metrics: SeldonMetrics,
    args: argparse.Namespace,
    annotations: dict[str, str],
) -> None:
    """Serve gRPC on ``args.grpc_port`` (SO_REUSEPORT: every gRPC worker binds it) until SIGTERM."""
    from seldon_core.wrapper import get_grpc_server

    from modelshelf.serve.supervisor import load_user_model

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    # Built after the fork: gRPC must not start threads in the parent.
    server = get_grpc_server(
        user_model, metrics, annotations=annotations, num_threads=args.grpc_threads
    )
    load_user_model(user_model)
    if args.service_type == "MODEL":
        from modelshelf.serve.grpc_v2 import add_inference_service
        from modelshelf.serve.inference import InferenceCore

        core = InferenceCore(user_model, args.model_name, seldon_metrics=metrics)
        add_inference_service(server, core)
    address = f"0.0.0.0:{args.grpc_port}"
    if server.add_insecure_port(address) == 0:
        raise OSError(f"gRPC could not bind {address}")
    server.start()
    logger.info("gRPC worker listening on %s", address)
    while not stop.wait(1.0):
        pass
    server.stop(GRACE_SECONDS).wait()
