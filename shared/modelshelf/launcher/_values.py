"""Reading one of Seldon's environment variables: its value, or a ``ConfigurationError`` that
names the variable and what was expected (so a typo stops the container with its name instead
of a traceback in the front end)."""

from __future__ import annotations

import json
from collections.abc import Mapping

from modelshelf.errors import ConfigurationError
from modelshelf.launcher._programs import modelshelf_serve_available

API_TYPES = ("REST", "GRPC")
FRONTENDS = ("modelshelf", "seldon")

#: Ports Seldon Core's operator assigns first (seldon-core's own wrapper defaults gRPC to 5000).
DEFAULT_PORTS = {
    "PREDICTIVE_UNIT_HTTP_SERVICE_PORT": 9000,
    "PREDICTIVE_UNIT_GRPC_SERVICE_PORT": 9500,
    "PREDICTIVE_UNIT_METRICS_SERVICE_PORT": 6000,
}
DEFAULT_STOP_SECONDS = 9.0
#: Every value read here comes from the environment: errors name it so.
SOURCE = "environment variable"


def api_types(value: str) -> tuple[str, ...]:
    """API_TYPE as Seldon's s2i images take it (REST, GRPC, or both); both are always served."""
    found = tuple(part.strip().upper() for part in value.split(",") if part.strip())
    if not found:
        return API_TYPES
    unknown = [part for part in found if part not in API_TYPES]
    if unknown:
        raise ConfigurationError("API_TYPE", value, "REST, GRPC or REST,GRPC", SOURCE)
    return found


def flag(name: str, value: str) -> bool:
    """``0`` / ``false`` / empty, or ``1`` / ``true``."""
    text = value.strip().lower()
    if text in ("", "0", "false"):
        return False
    if text in ("1", "true"):
        return True
    raise ConfigurationError(name, value, "0 or 1", SOURCE)


def unit_parameters(value: str) -> str:
    """PREDICTIVE_UNIT_PARAMETERS: a JSON list of {name, value, type}; checked here so a typo
    stops the container with the variable's name instead of a traceback in the front end."""
    text = value.strip() or "[]"
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(
            "PREDICTIVE_UNIT_PARAMETERS", value, f"a JSON list ({exc.msg} at {exc.pos})", SOURCE
        ) from None
    if not isinstance(parsed, list) or not all(
        isinstance(item, dict) and "name" in item and "value" in item for item in parsed
    ):
        raise ConfigurationError(
            "PREDICTIVE_UNIT_PARAMETERS",
            value,
            'a JSON list of {"name": …, "value": …, "type": …} objects',
            SOURCE,
        )
    return text


def port(environ: Mapping[str, str], name: str) -> int:
    """A TCP port, or the one Seldon's operator would assign (``DEFAULT_PORTS``)."""
    value = environ.get(name, "").strip()
    if not value:
        return DEFAULT_PORTS[name]
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ConfigurationError(name, value, "a TCP port number, 1-65535", SOURCE)
    return int(value)


def stop_seconds(value: str) -> float:
    """MODELSHELF_STOP_SECONDS: how long a stop may take before SIGKILL (up to an hour)."""
    if not value.strip():
        return DEFAULT_STOP_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 3600:
        raise ConfigurationError("MODELSHELF_STOP_SECONDS", value, "seconds, more than 0", SOURCE)
    return seconds


def frontend(value: str) -> str:
    """``modelshelf`` (``modelshelf serve``) when installed, else ``seldon``."""
    text = value.strip().lower()
    if text in ("", "auto"):
        return "modelshelf" if modelshelf_serve_available() else "seldon"
    if text not in FRONTENDS:
        raise ConfigurationError("MODELSHELF_FRONTEND", value, "modelshelf, seldon or auto", SOURCE)
    if text == "modelshelf" and not modelshelf_serve_available():
        raise ConfigurationError(
            "MODELSHELF_FRONTEND", value, "seldon: modelshelf serve is not installed here", SOURCE
        )
    return text
