"""The framework's ceiling: a Seldon model whose predict returns its input unchanged.

Served by ``seldon-core-microservice IdentityModel`` from this folder, it costs only what the
front end costs (HTTP, protocol, metrics), so a real server can be compared against it.
"""

from typing import Any


class IdentityModel:
    def predict(self, X: Any, features_names: Any = None, meta: Any = None) -> Any:
        return X
