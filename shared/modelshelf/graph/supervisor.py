"""One server process per graph node, set up as the Seldon operator sets up the node's container.

For each node the operator would run a container with our image; here it is what the image runs:
its entry point ``modelshelf run`` in the server's folder under ``servers/`` (``MODEL_NAME`` the
server class, ``SERVICE_TYPE`` the node's type), with the environment the operator injects:
``PREDICTIVE_UNIT_PARAMETERS`` (for a prepackaged server, the graph's parameters plus
``model_uri`` pointing at the downloaded model), ``PREDICTIVE_UNIT_ID``, ``PREDICTIVE_UNIT_IMAGE``,
``PREDICTOR_ID``, ``SELDON_DEPLOYMENT_ID`` and the HTTP/gRPC/metrics ports (free loopback ports
instead of 9000+/9500+/6000+).

A ``modelUri`` is fetched first, as the storage-initializer init container does: in a separate
process (``python -m modelshelf.graph.fetch``, into modelshelf's download cache) whose environment
holds the ``envSecretRefName`` secret, so credentials reach the download and not the server.
Local paths are used in place.

``stop`` asks each node's entry point to stop (SIGTERM, as the kubelet does), which stops its
front end gracefully; whatever is left after the grace period is killed.
"""

from __future__ import annotations

import base64
import collections
import json
import logging
import os
import re
import socket
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from modelshelf.graph.manifest import (
    MODEL_MOUNT,
    MODELSHELF_IMAGE_NAMES,
    MODELSHELF_IMAGES,
    MODELSHELF_SERVERS,
    GraphNode,
    ManifestError,
    Predictor,
    parameters_json,
)
from modelshelf.graph.ports import free_ports
from modelshelf.graph.processes import (
    ChildProcesses,
    first_exited,
    log_tail_buffer,
    modelshelf_run,
)
from modelshelf.supervision import Child

logger = logging.getLogger(__name__)

#: SERVICE_TYPE for a node's entry point (``modelshelf run`` maps it for seldon-core-microservice).
SERVICE_TYPES = {
    "MODEL": "MODEL",
    "TRANSFORMER": "TRANSFORMER",
    "OUTPUT_TRANSFORMER": "OUTPUT_TRANSFORMER",
    "ROUTER": "ROUTER",
    "COMBINER": "COMBINER",
    "UNKNOWN_TYPE": "MODEL",
}


def default_servers_dir() -> Path:
    """``servers/`` of the source tree this package runs from, else of the working directory."""
    for base in (Path(__file__).resolve().parents[3], Path.cwd()):
        if (base / "servers").is_dir():
            return base / "servers"
    return Path.cwd() / "servers"


def secrets_from_documents(documents: list[Any]) -> dict[str, dict[str, str]]:
    """Secrets (``data`` base64-decoded, ``stringData`` as is) by name, from manifest documents."""
    found: dict[str, dict[str, str]] = {}
    for doc in documents:
        if not isinstance(doc, dict) or doc.get("kind") != "Secret":
            continue
        values = {
            k: base64.b64decode(v).decode("utf-8") for k, v in (doc.get("data") or {}).items()
        }
        values.update({k: str(v) for k, v in (doc.get("stringData") or {}).items()})
        found[doc["metadata"]["name"]] = values
    return found


@dataclass
class NodeLaunch:
    """How one node runs: which server, from where, with which environment and ports."""

    node: GraphNode
    server_dir: Path
    server_class: str
    http_port: int
    grpc_port: int
    metrics_port: int
    env: dict[str, str] = field(default_factory=dict)
    process: Child | None = None
    log_tail: collections.deque = field(default_factory=log_tail_buffer)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def command(self) -> list[str]:
        """The image's entry point, ``modelshelf run``, from this Python."""
        return modelshelf_run(self.server_dir)


class GraphSupervisor(ChildProcesses):
    """Plans, starts, watches and stops the processes of one predictor graph."""

    def __init__(
        self,
        predictor: Predictor,
        servers_dir: Path | None = None,
        secrets: dict[str, dict[str, str]] | None = None,
        model_uris: dict[str, str] | None = None,
        log_stream: TextIO | None = None,
    ) -> None:
        self.predictor = predictor
        self.servers_dir = servers_dir or default_servers_dir()
        self.secrets = secrets or {}
        self.model_uris = model_uris or {}
        super().__init__(log_stream)
        unknown = sorted(set(self.model_uris) - {n.name for n in predictor.nodes()})
        if unknown:
            raise ManifestError(
                "--model-uri",
                [f"no graph node named {name!r} (nodes: {self._node_names()})" for name in unknown],
            )
        nodes = predictor.nodes()
        ports = free_ports(3 * len(nodes))  # outside the ephemeral range: see graph.ports
        self.launches = [self._plan(node, ports[3 * i : 3 * i + 3]) for i, node in enumerate(nodes)]

    def _node_names(self) -> list[str]:
        return [n.name for n in self.predictor.nodes()]

    # ---------------------------------------------------------------- planning

    def _plan(self, node: GraphNode, ports: list[int]) -> NodeLaunch:
        folder_name = self._server_folder(node)
        server_dir = self.servers_dir / folder_name
        classes = (
            sorted(p.stem for p in server_dir.glob("[A-Z]*.py")) if server_dir.is_dir() else []
        )
        if len(classes) != 1:
            raise ManifestError(
                node.path,
                [
                    f"{node.path}: node {node.name!r} needs the server in {server_dir} "
                    f"(one <ClassName>.py), found {classes or 'no such folder'}; "
                    "set --servers-dir to the project's servers/ folder"
                ],
            )
        return NodeLaunch(node, server_dir, classes[0], *ports)

    def _server_folder(self, node: GraphNode) -> str:
        if node.implementation in MODELSHELF_SERVERS:
            return MODELSHELF_SERVERS[node.implementation][0]
        runnable = ", ".join(MODELSHELF_SERVERS)
        if node.implementation != "UNKNOWN_IMPLEMENTATION":
            raise ManifestError(
                node.path,
                [
                    f"{node.path}.implementation: {node.implementation!r} cannot run here: "
                    f"modelshelf runs {runnable}, or a container with a modelshelf image "
                    f"({MODELSHELF_IMAGE_NAMES})"
                ],
            )
        repository = image_repository(node.image)
        if repository not in MODELSHELF_IMAGES:
            raise ManifestError(
                node.path,
                [
                    f"{node.path}.name: container {node.name!r} has image {node.image!r}, which "
                    f"is not a modelshelf server image "
                    f"({MODELSHELF_IMAGE_NAMES}); "
                    f"modelshelf can run only those, or implementation {runnable}"
                ],
            )
        return MODELSHELF_IMAGES[repository]

    # ---------------------------------------------------------------- models

    def fetch_models(self) -> None:
        """Download each node's ``modelUri`` the way its storage initializer would."""
        for launch in self.launches:
            node = launch.node
            uri = node.model_uri
            if node.name in self.model_uris and (node.model_uri or node.is_prepackaged):
                uri = self.model_uris[node.name]
            model_dir = self._fetch(node, uri) if uri else None
            launch.env = self._environment(launch, model_dir)

    def _fetch(self, node: GraphNode, uri: str) -> str:
        return self._fetch_in_own_process(
            node.name,
            uri,
            lambda: self._secret(node.env_secret_ref_name, f"{node.path}"),
            f"could not fetch modelUri {uri} (as its storage initializer would)",
        )

    def _secret(self, name: str | None, path: str) -> dict[str, str]:
        if not name:
            return {}
        if name not in self.secrets:
            logger.warning(
                "%s names secret %r, which was not given (--secret FILE or a Secret document in "
                "the manifest); using this shell's environment instead",
                path,
                name,
            )
            return {}
        return self.secrets[name]

    def _environment(self, launch: NodeLaunch, model_dir: str | None) -> dict[str, str]:
        node = launch.node
        env = dict(os.environ)
        container = node.container or {}
        for source in container.get("envFrom") or []:
            secret = (source.get("secretRef") or {}).get("name")
            env.update(self._secret(secret, f"{node.path} container envFrom"))
        for variable in container.get("env") or []:
            if "value" in variable:
                env[variable["name"]] = str(variable["value"])
            else:
                logger.warning(
                    "%s: env %s uses valueFrom, not supported here; left out",
                    node.path,
                    variable["name"],
                )
        parameters = [dict(p) for p in node.parameters]
        for parameter in parameters:
            value = parameter["value"]
            if model_dir and (value == MODEL_MOUNT or value.startswith(MODEL_MOUNT + "/")):
                parameter["value"] = model_dir + value[len(MODEL_MOUNT) :]
        if node.is_prepackaged:
            parameters = [p for p in parameters if p["name"] != "model_uri"]
            parameters.append({"name": "model_uri", "value": model_dir or "", "type": "STRING"})
        elif node.name in self.model_uris and not node.model_uri:
            parameters = [p for p in parameters if p["name"] != "model_uri"]
            parameters.append(
                {"name": "model_uri", "value": self.model_uris[node.name], "type": "STRING"}
            )
        operator_env = {
            "PREDICTIVE_UNIT_PARAMETERS": parameters_json(parameters),
            "PREDICTIVE_UNIT_ID": node.name,
            "PREDICTIVE_UNIT_IMAGE": node.image,
            "PREDICTOR_ID": self.predictor.name,
            "PREDICTOR_LABELS": json.dumps(self.predictor.labels),
            "SELDON_DEPLOYMENT_ID": self.predictor.deployment,
            "PREDICTIVE_UNIT_SERVICE_PORT": str(launch.http_port),
            "PREDICTIVE_UNIT_HTTP_SERVICE_PORT": str(launch.http_port),
            "PREDICTIVE_UNIT_GRPC_SERVICE_PORT": str(launch.grpc_port),
            "PREDICTIVE_UNIT_METRICS_SERVICE_PORT": str(launch.metrics_port),
            "PREDICTIVE_UNIT_METRICS_ENDPOINT": "/prometheus",
            "SELDON_EXECUTOR_ENABLED": "true",
            "MODEL_NAME": launch.server_class,  # the image's ENV
            "SERVICE_TYPE": SERVICE_TYPES[node.type],
        }
        user_parameters = any(
            v["name"] == "PREDICTIVE_UNIT_PARAMETERS" for v in container.get("env") or []
        )
        if user_parameters and not node.is_prepackaged and node.name not in self.model_uris:
            operator_env.pop("PREDICTIVE_UNIT_PARAMETERS")  # the operator keeps the user's
        env.update(operator_env)
        path = env.get("PATH", "")
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{path}"
        return env

    # ---------------------------------------------------------------- processes

    def start(self) -> None:
        """Start every node's server (all at once: they load their models in parallel)."""
        for launch in self.launches:
            if not launch.env:
                launch.env = self._environment(launch, None)
            launch.process = self._spawn(
                launch.node.name, launch.command(), launch.server_dir, launch.env, launch.log_tail
            )
            self._log(
                launch.node.name,
                f"started {launch.server_class} as {launch.node.type} on http {launch.http_port}, "
                f"grpc {launch.grpc_port}, metrics {launch.metrics_port}, pid {launch.process.pid}",
            )

    def wait_ready(self, timeout: float = 120) -> None:
        """Until every node answers ``/health/status`` with 200 and accepts gRPC connections."""
        self._wait_ready(
            self.launches,
            lambda launch: _healthy(launch.url) and _accepts(launch.grpc_port),
            timeout,
            "healthy",
        )

    def exited(self) -> NodeLaunch | None:
        """The first node whose process has stopped, if any."""
        return first_exited(self.launches)


def image_repository(image: str) -> str:
    """``registry:5000/modelshelf/sklearnserver:0.1.0@sha256:…`` -> ``sklearnserver``."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return re.sub(r":[^:]*$", "", last)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health/status", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0
