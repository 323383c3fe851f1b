"""Several MLFlowServers in one server process (one MLflow import for the whole corpus): a
request's ``meta.tags.model`` picks the model; everything else is MLFlowServer's own."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from modelshelf.errors import BadRequestError
from modelshelf.frameworks.mlflow import MLFlowServer


class MLflowCorpus:
    model_error_handler = MLFlowServer.model_error_handler

    def __init__(self, root: str) -> None:
        folders = sorted(p for p in Path(root).iterdir() if (p / "MLmodel").is_file())
        self.servers = {p.name: MLFlowServer(str(p)) for p in folders}
        self._last = threading.local()

    def load(self) -> None:
        for server in self.servers.values():
            server.load()

    def health_status(self) -> dict[str, Any]:
        return {name: server.health_status() for name, server in self.servers.items()}

    def predict(self, X: Any, features_names: Any = None, meta: Any = None) -> Any:
        name = ((meta or {}).get("tags") or {}).get("model")
        if name not in self.servers:
            raise BadRequestError(f"meta.tags.model must be one of {sorted(self.servers)}")
        self._last.server = self.servers[name]
        return self._last.server.predict(X, features_names, meta)

    def class_names(self) -> Any:
        return self._last.server.class_names()
