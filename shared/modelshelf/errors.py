"""Typed errors: each names what was wrong (URI, parameter, field, value) and what was expected.

Request errors subclass seldon-core's ``SeldonMicroserviceException`` so that the Seldon
wrapper (and our own front end) turn them into an HTTP status and a ``{"status": {...}}`` body
without help.
Start-up errors deliberately do *not* derive from ``AttributeError`` or ``NotImplementedError``:
seldon-core's wrapper mistakes those for "this component has no load method" and carries on.
"""

from __future__ import annotations

from seldon_core.flask_utils import SeldonMicroserviceException


class ModelshelfError(Exception):
    """Base of every error modelshelf raises on purpose."""


class ConfigurationError(ModelshelfError):
    """A parameter or environment variable has a value the server cannot work with."""

    def __init__(self, parameter: str, value: object, expected: str) -> None:
        self.parameter = parameter
        self.value = value
        self.expected = expected
        super().__init__(f"parameter {parameter}={value!r} is not valid: expected {expected}")


class ModelLoadError(ModelshelfError):
    """The model could not be found or loaded; the process must stop with this cause."""

    def __init__(self, uri: str, reason: str) -> None:
        self.uri = uri
        self.reason = reason
        super().__init__(f"cannot load the model from {uri}: {reason}")


class ModelNotFoundError(ModelLoadError):
    """No model file, or more than one candidate, in the model folder."""


class StorageError(ModelshelfError):
    """A model URI could not be downloaded: says which URI and what to check."""

    def __init__(self, uri: str, reason: str) -> None:
        self.uri = uri
        self.reason = reason
        super().__init__(f"cannot download {uri}: {reason}")


class StorageNotFoundError(StorageError):
    """The bucket, object or prefix a URI names does not exist."""


class StorageAccessError(StorageError):
    """The storage refused the credentials (or their absence): access denied, bad signature."""


class StorageUnreachableError(StorageError):
    """The storage endpoint did not answer (after bounded retries) or its TLS failed."""


class UnsafeArchiveError(StorageError):
    """An archive entry would land outside the destination (absolute path, ``..``, link)."""


class BadRequestError(SeldonMicroserviceException):
    """The request's payload does not fit the model: HTTP 400 with what was expected."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status_code=400, reason="MICROSERVICE_BAD_DATA")

    def __str__(self) -> str:
        return self.message


class ServerFaultError(SeldonMicroserviceException):
    """The model failed on a valid request (a bug or a broken model): HTTP 500 with the cause."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status_code=500, reason="MICROSERVICE_INTERNAL_ERROR")

    def __str__(self) -> str:
        return self.message


class ModelNotReadyError(SeldonMicroserviceException):
    """A request reached a worker whose model is not loaded (yet): HTTP 503."""

    def __init__(self, message: str = "the model is not loaded yet") -> None:
        super().__init__(message, status_code=503, reason="MICROSERVICE_NOT_READY")

    def __str__(self) -> str:
        return self.message
