"""Typed errors: each names what was wrong (URI, parameter, field, value) and what was expected.

Start-up errors deliberately do *not* derive from ``AttributeError`` or ``NotImplementedError``:
seldon-core's wrapper mistakes those for "this component has no load method" and carries on.

The request errors (``BadRequestError``, ``ServerFaultError``, ``ModelNotReadyError``) live in
``modelshelf.request_errors``, on seldon-core's exception class, which brings Flask with it
(~0.3 s of CPU). They can be imported from here all the same, but are loaded only on first use,
so the storage initializer (``modelshelf fetch``) and the command line never load seldon-core.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelshelf.redaction import credential_values, redact_text, redact_uri, shown_setting

if TYPE_CHECKING:
    from modelshelf.request_errors import BadRequestError, ModelNotReadyError, ServerFaultError

__all__ = [
    "BadRequestError",
    "ConfigurationError",
    "MissingParameterError",
    "ModelLoadError",
    "ModelNotFoundError",
    "ModelNotReadyError",
    "ModelshelfError",
    "ServerFaultError",
    "SettingError",
    "StorageAccessError",
    "StorageError",
    "StorageNotFoundError",
    "StorageUnreachableError",
    "UnsafeArchiveError",
]

_REQUEST_ERRORS = frozenset({"BadRequestError", "ServerFaultError", "ModelNotReadyError"})


def __getattr__(name: str) -> type[Exception]:
    """The request errors, imported from ``modelshelf.request_errors`` when first asked for."""
    if name in _REQUEST_ERRORS:
        from modelshelf import request_errors

        return getattr(request_errors, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class ModelshelfError(Exception):
    """Base of every error modelshelf raises on purpose.

    Its message is redacted (``modelshelf.redaction.redact_text``) when the error is made: a URI
    or a credential value in it never reaches a log, a response or a traceback. A subclass that
    redacted the parts of its message itself passes ``redacted=True`` (once is enough).
    """

    def __init__(self, *args: object, redacted: bool = False) -> None:
        if not redacted:
            args = tuple(redact_text(arg) if isinstance(arg, str) else arg for arg in args)
        super().__init__(*args)


class ConfigurationError(ModelshelfError):
    """A parameter or environment variable has a value the server cannot work with; ``source``
    says which kind the message names (``parameter``, ``environment variable``)."""

    def __init__(
        self, parameter: str, value: object, expected: str, source: str = "parameter"
    ) -> None:
        self.parameter = parameter
        value = shown_setting(parameter, value)  # a password parameter, a *_TOKEN variable
        self.value = redact_text(value) if isinstance(value, str) else value
        self.expected = expected
        self.source = source
        super().__init__(f"{source} {parameter}={self.value!r} is not valid: expected {expected}")


class SettingError(ConfigurationError):
    """A number setting (``modelshelf.number_settings``) that is not a number the server can use:
    names where it came from (an environment variable or a parameter), its value and what was
    expected."""


class MissingParameterError(ModelshelfError):
    """A parameter the served class needs is not among ``--parameters`` (or
    ``PREDICTIVE_UNIT_PARAMETERS``, the graph's ``parameters``)."""

    def __init__(self, class_name: str, missing: list[str], takes: str) -> None:
        self.missing = missing
        super().__init__(
            f"parameter {', '.join(missing) or '?'} is missing: {class_name} needs it (it takes "
            f"{takes}); give it in --parameters, PREDICTIVE_UNIT_PARAMETERS or the graph's "
            "parameters"
        )


class ModelLoadError(ModelshelfError):
    """The model could not be found or loaded; the process must stop with this cause."""

    def __init__(self, uri: str, reason: str) -> None:
        values = credential_values()
        self.uri = redact_uri(uri, values)
        self.reason = redact_text(reason, values=values)
        super().__init__(f"cannot load the model from {self.uri}: {self.reason}", redacted=True)


class ModelNotFoundError(ModelLoadError):
    """No model file, or more than one candidate, in the model folder."""


class StorageError(ModelshelfError):
    """A model URI could not be downloaded: says which URI and what to check."""

    def __init__(self, uri: str, reason: str) -> None:
        values = credential_values()
        self.uri = redact_uri(uri, values)
        self.reason = redact_text(reason, values=values)
        super().__init__(f"cannot download {self.uri}: {self.reason}", redacted=True)


class StorageNotFoundError(StorageError):
    """The bucket, object or prefix a URI names does not exist."""


class StorageAccessError(StorageError):
    """The storage refused the credentials (or their absence): access denied, bad signature."""


class StorageUnreachableError(StorageError):
    """The storage endpoint did not answer (after bounded retries) or its TLS failed."""


class UnsafeArchiveError(StorageError):
    """An archive entry would land outside the destination (absolute path, ``..``, link)."""
