"""SKLearnServer whose gRPC worker loads ``grpc_load_seconds`` longer than its REST worker: REST
answers while the server is not ready yet (the gRPC port does not listen), as during any start."""

import multiprocessing
import time

from modelshelf.frameworks.sklearn import SKLearnServer


class LateGrpcSKLearnServer(SKLearnServer):
    def __init__(self, model_uri: str, grpc_load_seconds: float = 3.0, **kwargs) -> None:
        super().__init__(model_uri, **kwargs)
        self.grpc_load_seconds = float(grpc_load_seconds)

    def load(self) -> None:
        if multiprocessing.current_process().name == "grpc":
            print("LateGrpcSKLearnServer: gRPC worker loading late", flush=True)
            time.sleep(self.grpc_load_seconds)
        super().load()
