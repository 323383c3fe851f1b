"""The command line and environment of ``seldon-core-microservice`` 1.18.2, and its class import.

The flags, their environment variables and defaults are seldon-core's (so the operator's
containers and any launcher keep working); ``--service-type`` also takes ``OUTPUT_TRANSFORMER``.
Flags that only tune gunicorn (``--threads``, ``--max-requests``…) are accepted and ignored.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from modelshelf.errors import ConfigurationError, MissingParameterError
from modelshelf.number_settings import whole_env_number
from modelshelf.redaction import redact_parameter_list

SERVICE_TYPES = (
    "MODEL",
    "ROUTER",
    "TRANSFORMER",
    "OUTPUT_TRANSFORMER",
    "COMBINER",
    "OUTLIER_DETECTOR",
)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _env_int(name: str, default: int) -> int:
    """A whole number >= 0 from the environment (seldon-core's settings modelshelf accepts and
    mostly ignores: 0 keeps seldon-core's meaning), by ``modelshelf.number_settings``' rules."""
    return whole_env_number(name, default, "a whole number >= 0", zero=True)


def _env_port(name: str, default: int) -> int:
    return whole_env_number(name, default, "a TCP port number, 1-65535", at_most=65_535)


def _port(seldon_env: str, kserve_env: str, default: int) -> int:
    """A port from Seldon's variable, else KServe images' (``HTTP_PORT``/``GRPC_PORT``)."""
    return _env_port(seldon_env if os.environ.get(seldon_env, "").strip() else kserve_env, default)


#: The worker counts: environment variable, option, default, the least allowed, and what a
#: count means (GRPC_WORKERS=0 is documented: REST only, no gRPC server).
WORKER_COUNTS = {
    "workers": ("GUNICORN_WORKERS", "--workers", 1, 1, "a whole number of REST workers >= 1"),
    "grpc_workers": (
        "GRPC_WORKERS",
        "--grpc-workers",
        1,
        0,
        "a whole number of gRPC workers >= 0 (0: no gRPC server)",
    ),
}


def _env_workers(attribute: str) -> int:
    variable, _option, default, least, expected = WORKER_COUNTS[attribute]
    return whole_env_number(variable, default, expected, zero=least == 0)


def check_worker_counts(args: argparse.Namespace) -> None:
    """A negative (or, for REST, zero) ``--workers`` / ``--grpc-workers`` is refused naming the
    option; it was quietly served as 1 or 0 workers."""
    for attribute, (_variable, option, _default, least, expected) in WORKER_COUNTS.items():
        value = getattr(args, attribute)
        if value < least:
            raise ConfigurationError(option, str(value), expected, source="option")


#: The port options, as ``check_ports`` names them.
PORT_OPTIONS = {
    "http_port": "--http-port",
    "grpc_port": "--grpc-port",
    "metrics_port": "--metrics-port",
}


def check_ports(args: argparse.Namespace) -> None:
    """A port option outside 1-65535, or two ports the same, stops the start naming them; it
    was the socket's ``OverflowError`` / "Address already in use" traceback, after the model
    had loaded. (The environment's ports are checked as they are read, ``_env_port``.)"""
    taken: dict[int, str] = {}
    for attribute, option in PORT_OPTIONS.items():
        value = getattr(args, attribute)
        if not 0 <= value < 65_536:
            expected = "a TCP port number, 1-65535 (0: any free port)"
            raise ConfigurationError(option, str(value), expected, "option")
        if attribute == "grpc_port" and args.grpc_workers <= 0:
            continue  # no gRPC worker binds it
        if value and value in taken:
            raise ConfigurationError(
                option, str(value), f"a port other than {taken[value]}'s", "option"
            )
        taken[value] = option


def env_flag(name: str) -> bool:
    """A flag from the environment as seldon-core reads one: ``1``, ``true`` or ``t`` (any case)
    is true, anything else false. Written here so reading options does not import seldon-core."""
    return os.environ.get(name, "").lower() in ("1", "true", "t")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add seldon-core-microservice's arguments (defaults read from the environment now)."""
    env = os.environ.get
    parser.add_argument("interface_name", help="the user's class: ClassName or module.ClassName")
    parser.add_argument("--service-type", choices=SERVICE_TYPES, default="MODEL")
    parser.add_argument("--persistence", nargs="?", default=0, const=1, type=int)
    parser.add_argument("--parameters", default=env("PREDICTIVE_UNIT_PARAMETERS", "[]"))
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="INFO")
    parser.add_argument(
        "--debug", nargs="?", type=bool, const=True, default=env_flag("SELDON_DEBUG")
    )
    parser.add_argument("--tracing", nargs="?", default=_env_int("TRACING", 0), const=1, type=int)
    parser.add_argument("--workers", type=int, default=_env_workers("workers"))
    parser.add_argument("--threads", type=int, default=_env_int("GUNICORN_THREADS", 1))
    parser.add_argument("--max-requests", type=int, default=_env_int("GUNICORN_MAX_REQUESTS", 0))
    parser.add_argument(
        "--max-requests-jitter", type=int, default=_env_int("GUNICORN_MAX_REQUESTS_JITTER", 0)
    )
    parser.add_argument("--keepalive", type=int, default=_env_int("GUNICORN_KEEPALIVE", 2))
    parser.add_argument("--single-threaded", type=int, default=_env_int("FLASK_SINGLE_THREADED", 0))
    parser.add_argument(
        "--http-port",
        "--http_port",
        type=int,
        default=_port("PREDICTIVE_UNIT_HTTP_SERVICE_PORT", "HTTP_PORT", 9000),
    )
    parser.add_argument(
        "--grpc-port",
        "--grpc_port",
        type=int,
        default=_port("PREDICTIVE_UNIT_GRPC_SERVICE_PORT", "GRPC_PORT", 5000),
    )
    parser.add_argument(
        "--metrics-port", type=int, default=_env_port("PREDICTIVE_UNIT_METRICS_SERVICE_PORT", 6000)
    )
    parser.add_argument("--pidfile", default=None)
    parser.add_argument(
        "--access-log",
        nargs="?",
        type=bool,
        const=True,
        default=env_flag("GUNICORN_ACCESS_LOG"),
    )
    parser.add_argument("--grpc-threads", type=int, default=_env_int("GRPC_THREADS", 1))
    parser.add_argument("--grpc-workers", type=int, default=_env_workers("grpc_workers"))
    # The Open Inference Protocol, KServe V1 and MLflow paths, and KServe runtimes' arguments.
    parser.add_argument(
        "--model-name",
        "--model_name",
        default=env("MODEL_NAME") or None,
        help=(
            "the name V2 / KServe V1 requests use (default: PREDICTIVE_UNIT_ID, else the "
            "model's own name)"
        ),
    )
    parser.add_argument(
        "--model_dir",
        "--model-dir",
        default=None,
        help="the model's folder or URI, as parameter model_uri (a given model_uri wins)",
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="modelshelf serve",
        description="Serve a SeldonComponent class over the Seldon protocol (REST, gRPC, metrics).",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    check_worker_counts(args)
    check_ports(args)
    if args.model_name and args.model_name in (
        args.interface_name,
        args.interface_name.rpartition(".")[2],
    ):
        # MODEL_NAME naming the class is Seldon's s2i meaning (our images set it so), not a
        # name for the model: the model keeps its own.
        args.model_name = None
    if not args.model_name:
        # Under Seldon Core every pod's model is the folder /mnt/models, so its own name would
        # be "models" in each: the predictive unit's name (the operator's and ``graph run``'s
        # PREDICTIVE_UNIT_ID) tells the units apart, as MLServer under Seldon names its model.
        args.model_name = os.environ.get("PREDICTIVE_UNIT_ID") or None
    if args.model_dir:
        args.parameters = with_model_uri(args.parameters, args.model_dir)
    return args


def with_model_uri(parameters_json: str, model_dir: str) -> str:
    """``--parameters`` with ``model_uri`` set to KServe's ``--model_dir`` unless it is given."""
    parameters = json.loads(parameters_json)
    if any(p.get("name") == "model_uri" for p in parameters):
        return parameters_json
    parameters.append({"name": "model_uri", "value": model_dir, "type": "STRING"})
    return json.dumps(parameters)


_CONVERSIONS: dict[str, Any] = {"STRING": str, "INT": int, "FLOAT": float, "DOUBLE": float}
#: What a value of each type must be, for the error that refuses one.
_READS = {"INT": "a whole number", "FLOAT": "a number", "DOUBLE": "a number", "STRING": "text"}
_TRUE = frozenset({"y", "yes", "t", "true", "on", "1"})
_FALSE = frozenset({"n", "no", "f", "false", "off", "0"})


def user_parameters(parameters_json: str) -> dict[str, Any]:
    """``--parameters`` as keyword arguments, typed the way seldon-core's ``parse_parameters``
    types them (without importing ``seldon_core.microservice``: gunicorn, ``pkg_resources``,
    ``distutils`` were a tenth of every cold start). A list that is not JSON, or a value its
    ``type`` cannot read, stops the start with one line naming the parameter, its value and
    the type; seldon-core raised a ``SeldonMicroserviceException`` whose text is empty, so the
    log held a bare traceback naming no parameter."""
    expected = 'a JSON list of {"name": …, "value": …, "type": …} objects'
    try:
        parameters = json.loads(parameters_json)
    except json.JSONDecodeError as exc:
        raise _refused_list(parameters_json, f"{expected} ({exc.msg} at {exc.pos})") from None
    if not isinstance(parameters, list) or not all(isinstance(p, dict) for p in parameters):
        raise _refused_list(parameters_json, expected)
    parsed: dict[str, Any] = {}
    for parameter in parameters:
        name, kind, value = parameter.get("name"), parameter.get("type"), parameter.get("value")
        if type(name) is not str or not name:
            raise _refused_list(parameters_json, expected)
        if kind == "BOOL":
            text = value.lower() if type(value) is str else None
            if text not in _TRUE and text not in _FALSE:
                raise ConfigurationError(name, value, "a BOOL: true or false", "parameter")
            parsed[name] = text in _TRUE
            continue
        convert = _CONVERSIONS.get(kind)  # type: ignore[arg-type]
        if convert is None:
            types = ", ".join([*_CONVERSIONS, "BOOL"])
            raise ConfigurationError(name, value, f"a type of {types}, got {kind!r}", "parameter")
        try:
            parsed[name] = convert(value)
        except (TypeError, ValueError):
            raise ConfigurationError(
                name, value, f"{_READS[kind]} (its type is {kind})", "parameter"
            ) from None
    return parsed


def _refused_list(parameters_json: str, expected: str) -> ConfigurationError:
    """The error for a ``--parameters`` list that cannot be read: it quotes the list, with the
    values of secret parameters (``password``…) redacted."""
    return ConfigurationError(
        "--parameters", redact_parameter_list(parameters_json), expected, "argument"
    )


def build_user_model(user_class: type, parameters: dict[str, Any]) -> Any:
    """The served object, made from the parameters. A parameter the class does not take (a
    typo: ``methd``) or one it needs and did not get (``model_uri``) stops the start with one
    line naming it and the parameters the class takes, instead of ``__init__``'s
    ``TypeError`` traceback; a ``TypeError`` raised inside ``__init__`` keeps its own."""
    try:
        signature = inspect.signature(user_class)
    except (TypeError, ValueError):  # no signature to read: the class says it itself
        return user_class(**parameters)
    takes = [
        p.name
        for p in signature.parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    every = ", ".join(takes) or "none"
    try:
        signature.bind(**parameters)
    except TypeError:
        open_ended = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
        unknown = [] if open_ended else [n for n in parameters if n not in takes]
        if unknown:
            raise ConfigurationError(
                unknown[0],
                parameters[unknown[0]],
                f"a parameter {user_class.__name__} takes ({every})",
                "parameter",
            ) from None
        missing = [
            p.name
            for p in signature.parameters.values()
            if p.default is p.empty
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            and p.name not in parameters
        ]
        raise MissingParameterError(user_class.__name__, missing, every) from None
    return user_class(**parameters)


def import_user_class(interface_name: str) -> type:
    """The class named like seldon-core does: ``Name`` from module ``Name``, or ``module.Name``;
    the working directory is importable."""
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    module_name, _, class_name = interface_name.rpartition(".")
    module_name = module_name or interface_name
    expected = (
        f"a module {module_name} (a file {module_name.replace('.', '/')}.py in the working "
        f"directory {os.getcwd()}, or installed) defining the class {class_name}"
    )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or module_name.split(".")[0] != exc.name.split(".")[0]:
            raise  # a module the class's own code imports: its traceback says which line
        expected += f" ({exc})"
        raise ConfigurationError("class", interface_name, expected, "argument") from None
    found = getattr(module, class_name, None)
    if not isinstance(found, type):
        raise ConfigurationError("class", interface_name, expected, "argument")
    return found
