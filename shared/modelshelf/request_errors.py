"""Errors a request gets: each becomes an HTTP status and a Seldon ``{"status": {...}}`` body.

They subclass seldon-core's ``SeldonMicroserviceException`` so that seldon-core's own wrapper
(and our front end) answer with their status without help. Importing that class imports Flask,
which is why ``modelshelf.errors`` loads this module only when one of these is first used.
"""

from __future__ import annotations

from collections.abc import Sequence

from seldon_core.flask_utils import SeldonMicroserviceException


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


class RequestRefusedError(SeldonMicroserviceException):
    """A request refused before any model code runs: an unknown path (404), a method the path
    does not take (405), a body over ``MODELSHELF_MAX_BODY_BYTES`` (413)."""

    def __init__(
        self, message: str, status_code: int, reason: str, allow: Sequence[str] = ()
    ) -> None:
        super().__init__(message, status_code=status_code, reason=reason)
        #: For a 405: the methods the path takes (the ``Allow`` header).
        self.allow = tuple(allow)

    def __str__(self) -> str:
        return self.message
