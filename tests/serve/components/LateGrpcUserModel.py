"""A user's own MODEL (no modelshelf base class) whose gRPC worker loads ``grpc_load_seconds``
longer than its REST worker: REST answers while the gRPC port does not listen yet."""

import multiprocessing
import time


class LateGrpcUserModel:
    def __init__(self, grpc_load_seconds: float = 3.0) -> None:
        self.grpc_load_seconds = float(grpc_load_seconds)

    def load(self):
        if multiprocessing.current_process().name == "grpc":
            print("LateGrpcUserModel: gRPC worker loading late", flush=True)
            time.sleep(self.grpc_load_seconds)

    def predict(self, X, features_names=None, meta=None):
        return X
