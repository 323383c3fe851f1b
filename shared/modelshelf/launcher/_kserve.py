"""What KServe gives a runtime's container, read into the Seldon environment the launcher knows.

A ServingRuntime passes ``--model_name={{.Name}} --model_dir=/mnt/models --http_port=8080``
(``--grpc_port`` for gRPC) after the image's entry point, and KServe images read ``HTTP_PORT`` /
``GRPC_PORT``; a custom container gets ``STORAGE_URI`` (its model in ``/mnt/models`` once the
storage initializer ran). So the same image serves under Seldon (``PREDICTIVE_UNIT_*``) and KServe:

* ``--http_port`` / ``--grpc_port`` (else ``HTTP_PORT`` / ``GRPC_PORT``, when Seldon's variable is
  unset) become ``PREDICTIVE_UNIT_HTTP_SERVICE_PORT`` / ``…_GRPC_SERVICE_PORT``;
* ``--model_dir`` (else ``STORAGE_URI``: ``/mnt/models`` when filled, else the URI itself, which
  modelshelf's storage downloads) becomes the ``model_uri`` parameter, replacing the images'
  default ``/mnt/models`` but never a ``model_uri`` the user set elsewhere;
* ``--model_name`` is the name V2 and KServe V1 requests use (``modelshelf serve --model-name``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from modelshelf.model_files import MODEL_MOUNT, storage_uri_location

_PORTS = (
    ("http_port", "HTTP_PORT", "PREDICTIVE_UNIT_HTTP_SERVICE_PORT"),
    ("grpc_port", "GRPC_PORT", "PREDICTIVE_UNIT_GRPC_SERVICE_PORT"),
)


@dataclass(frozen=True)
class KServeArguments:
    """The environment with KServe's arguments folded in, and what is left for the front end."""

    environ: dict[str, str]
    frontend_args: tuple[str, ...]


KSERVE_FLAGS = ("model_name", "model_dir", "http_port", "grpc_port")


def add_kserve_arguments(parser: argparse.ArgumentParser) -> None:
    """KServe's runtime arguments, as ``--model_name`` or ``--model-name``."""
    group = parser.add_argument_group("KServe (a ServingRuntime's args)")
    for flag in KSERVE_FLAGS:
        group.add_argument(f"--{flag}", f"--{flag.replace('_', '-')}", dest=f"kserve_{flag}")


def read_kserve_arguments(
    args: argparse.Namespace,
    environ: Mapping[str, str],
    frontend_args: Sequence[str] = (),
    mount: Path = Path(MODEL_MOUNT),
) -> KServeArguments:
    """Fold KServe's arguments (``add_kserve_arguments``) and variables into Seldon's."""
    env = dict(environ)
    for attribute, kserve_env, seldon_env in _PORTS:
        value = getattr(args, f"kserve_{attribute}", None) or (
            env.get(kserve_env) if seldon_env not in env else None
        )
        if value:
            env[seldon_env] = str(value)
    model_dir = getattr(args, "kserve_model_dir", None) or storage_uri_location(
        env.get("STORAGE_URI"), mount
    )
    if model_dir:
        env["PREDICTIVE_UNIT_PARAMETERS"] = _with_model_uri(
            env.get("PREDICTIVE_UNIT_PARAMETERS", ""), model_dir
        )
    frontend = tuple(frontend_args)
    model_name = getattr(args, "kserve_model_name", None)
    # seldon-core-microservice (MODELSHELF_FRONTEND=seldon) has no model name: only V1/V2 use it
    if model_name and env.get("MODELSHELF_FRONTEND", "").strip().lower() != "seldon":
        frontend = ("--model-name", model_name, *frontend)
    return KServeArguments(env, frontend)


def _with_model_uri(parameters_json: str, model_dir: str) -> str:
    """``model_uri`` set to ``model_dir`` where it is missing or the images' default mount."""
    parameters = json.loads(parameters_json) if parameters_json.strip() else []
    if not isinstance(parameters, list):
        return parameters_json  # _values.unit_parameters reports it
    kept = [p for p in parameters if not (isinstance(p, dict) and p.get("name") == "model_uri")]
    given = [p for p in parameters if isinstance(p, dict) and p.get("name") == "model_uri"]
    if given and given[0].get("value") not in (MODEL_MOUNT, MODEL_MOUNT + "/"):
        return parameters_json
    kept.append({"name": "model_uri", "value": model_dir, "type": "STRING"})
    return json.dumps(kept)
