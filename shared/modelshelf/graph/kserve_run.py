"""An InferenceService run on this machine the way KServe runs it.

* The runtime is the one KServe would select (``graph.kserve``) from the manifest's runtimes, any
  ``--runtimes`` files and modelshelf's own ClusterServingRuntimes (``graph.kserve_runtimes``).
* ``storageUri`` is fetched first, as the storage initializer does: in its own process
  (``python -m modelshelf.graph.fetch``) whose environment holds the storage secret
  (``serving.kserve.io/storageSecretName``: its data, and its ``serving.kserve.io/s3-*``
  annotations as KServe turns them into ``S3_ENDPOINT``, ``S3_USE_HTTPS``…). The folder stands in
  for ``/mnt/models``.
* The runtime's container is what its image runs: for modelshelf's images, ``modelshelf run`` in
  the server's folder, with the runtime's args and env (placeholders filled from the
  InferenceService's metadata; ``--model_dir`` the fetched folder), the predictor's own args and
  env after them, ``INFERENCE_SERVICE_NAME``, and free loopback ports for 8080/8081/metrics.
* A transformer container runs its ``command`` in the folder ``--container-dir transformer=DIR``
  names (or ``modelshelf run`` for our images), with the arguments KServe adds
  (``--model_name``, ``--predictor_host`` = the predictor's address, ``--http_port``,
  ``--protocol``).
"""

from __future__ import annotations

import base64
import collections
import os
import re
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from modelshelf.graph import kserve, kserve_runtimes
from modelshelf.graph.manifest import (
    MODEL_MOUNT,
    MODELSHELF_IMAGE_NAMES,
    MODELSHELF_IMAGES,
    ManifestError,
)
from modelshelf.graph.ports import free_ports
from modelshelf.graph.processes import (
    ChildProcesses,
    first_exited,
    log_tail_buffer,
    modelshelf_run,
)
from modelshelf.graph.supervisor import default_servers_dir, image_repository
from modelshelf.supervision import Child

STORAGE_SECRET_ANNOTATION = "serving.kserve.io/storageSecretName"
#: A storage secret's annotations -> the variables KServe gives the storage initializer.
S3_ANNOTATIONS = {
    "serving.kserve.io/s3-endpoint": "S3_ENDPOINT",
    "serving.kserve.io/s3-usehttps": "S3_USE_HTTPS",
    "serving.kserve.io/s3-verifyssl": "S3_VERIFY_SSL",
    "serving.kserve.io/s3-region": "AWS_DEFAULT_REGION",
}
_PORT_ARG = re.compile(r"^--(http|grpc)_port(=.*)?$")


@dataclass
class Component:
    """One container of the InferenceService (predictor or transformer) as a local process."""

    role: str  # "predictor" | "transformer"
    command: list[str]
    cwd: Path
    env: dict[str, str]
    http_port: int
    grpc_port: int
    process: Child | None = None
    log_tail: collections.deque = field(default_factory=log_tail_buffer)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.http_port}"


def kserve_secrets(documents: list[Any]) -> dict[str, dict[str, str]]:
    """Secrets by name as the storage initializer's environment: data decoded, and the
    ``serving.kserve.io/s3-*`` annotations as KServe's variables."""
    found: dict[str, dict[str, str]] = {}
    for doc in documents:
        if not isinstance(doc, dict) or doc.get("kind") != "Secret":
            continue
        values = {k: base64.b64decode(v).decode() for k, v in (doc.get("data") or {}).items()}
        values.update({k: str(v) for k, v in (doc.get("stringData") or {}).items()})
        for annotation, variable in S3_ANNOTATIONS.items():
            value = ((doc.get("metadata") or {}).get("annotations") or {}).get(annotation)
            if value is not None:
                values.setdefault(variable, str(value))
        found[doc["metadata"]["name"]] = values
    return found


def our_runtimes() -> list[kserve.Runtime]:
    """modelshelf's ClusterServingRuntimes, as ``manifests/kserve`` installs them."""
    return [
        kserve.Runtime.from_document(kserve_runtimes.runtime(row))
        for row in kserve_runtimes.RUNTIMES
    ]


class InferenceServiceRun(ChildProcesses):
    """Plans, fetches, starts, watches and stops one InferenceService's components."""

    def __init__(
        self,
        isvc: dict[str, Any],
        runtimes: list[kserve.Runtime],
        secrets: dict[str, dict[str, str]],
        model_uri: str | None = None,
        container_dirs: dict[str, Path] | None = None,
        servers_dir: Path | None = None,
        log_stream: TextIO | None = None,
    ) -> None:
        self.isvc = isvc
        self.metadata = isvc["metadata"]
        self.name = self.metadata["name"]
        self.namespace = self.metadata.get("namespace") or kserve.DEFAULT_NAMESPACE
        self.secrets = secrets
        self.container_dirs = container_dirs or {}
        self.servers_dir = servers_dir or default_servers_dir()
        super().__init__(log_stream)
        predictor = isvc["spec"]["predictor"]
        self.request = kserve.model_request(isvc)
        if self.request is None:
            raise ManifestError(
                self.name,
                ["spec.predictor: a custom container predictor; graph run runs runtimes' models"],
            )
        selection = kserve.select_runtime(self.request, runtimes)
        if not selection.ok:
            raise ManifestError(self.name, [selection.reason])
        self.runtime = selection.runtime
        self.selection = selection
        self.model_spec = predictor.get("model") or predictor.get(self.request.format_name) or {}
        self.model_uri = model_uri or self.model_spec.get("storageUri")
        self.components: list[Component] = []

    # ---------------------------------------------------------------- planning

    def prepare(self) -> None:
        """Fetch the model, then plan the predictor and (if any) the transformer."""
        model_dir = self._fetch(self.model_uri) if self.model_uri else None
        predictor = self._predictor(model_dir)
        self.components = [predictor]
        transformer = (self.isvc["spec"].get("transformer") or {}).get("containers")
        if transformer:
            self.components.insert(0, self._transformer(transformer[0], predictor))

    def _fetch(self, uri: str) -> str:
        return self._fetch_in_own_process(
            "storage-initializer", uri, self._storage_secret, f"could not fetch storageUri {uri}"
        )

    def _storage_secret(self) -> dict[str, str]:
        """The data of the secret the ``storageSecretName`` annotation names (none: empty)."""
        secret_name = (self.metadata.get("annotations") or {}).get(STORAGE_SECRET_ANNOTATION)
        secret = {}
        if secret_name:
            if secret_name not in self.secrets:
                raise ManifestError(
                    self.name,
                    [
                        f"metadata.annotations.{STORAGE_SECRET_ANNOTATION}: secret "
                        f"{secret_name!r} was not given (--secret FILE)"
                    ],
                )
            secret = self.secrets[secret_name]
        return secret

    def _fill(self, text: str) -> str:
        return kserve.fill_placeholders(text, self.metadata)

    def _container_env(
        self, variables: list[dict[str, Any]], metrics_port: int, **kserve_env: str
    ) -> dict[str, str]:
        """This environment with the container's ``env`` values (placeholders filled), what
        KServe's pod adds (``kserve_env``, ``INFERENCE_SERVICE_NAME``), the metrics port, and this
        Python's scripts first on ``PATH``."""
        env = dict(os.environ)
        for variable in variables:
            if "value" in variable:
                env[variable["name"]] = self._fill(str(variable["value"]))
        env.update(
            {
                "INFERENCE_SERVICE_NAME": self.name,
                **kserve_env,
                "PREDICTIVE_UNIT_METRICS_SERVICE_PORT": str(metrics_port),
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            }
        )
        return env

    def _predictor(self, model_dir: str | None) -> Component:
        assert self.runtime is not None
        (container,) = [
            c for c in self.runtime.spec["containers"] if c.get("name") == "kserve-container"
        ] or self.runtime.spec["containers"][:1]
        http_port, grpc_port, metrics_port = free_ports(3)
        args = [self._fill(a) for a in container.get("args") or []]
        args += [self._fill(str(a)) for a in self.model_spec.get("args") or []]
        args = [_local_arg(a, model_dir, http_port, grpc_port) for a in args]
        env = self._container_env(
            (container.get("env") or []) + (self.model_spec.get("env") or []),
            metrics_port,
            HTTP_PORT=str(http_port),
            GRPC_PORT=str(grpc_port),
        )
        for variable in ("PREDICTIVE_UNIT_HTTP_SERVICE_PORT", "PREDICTIVE_UNIT_GRPC_SERVICE_PORT"):
            env.pop(variable, None)  # KServe's pod has none: the ports come from the args
        if not any(a.startswith("--http_port") for a in args):
            args.append(f"--http_port={http_port}")
        if not any(a.startswith("--grpc_port") for a in args):
            args.append(f"--grpc_port={grpc_port}")
        image = str(container.get("image", ""))
        folder = MODELSHELF_IMAGES.get(image_repository(image))
        if folder is None:
            raise ManifestError(
                self.name,
                [
                    f"{self.runtime.label}: image {image!r} is not a modelshelf server image "
                    f"({MODELSHELF_IMAGE_NAMES})"
                ],
            )
        server_dir = self.servers_dir / folder
        classes = sorted(p.stem for p in server_dir.glob("[A-Z]*.py"))
        if len(classes) != 1:
            raise ManifestError(
                self.name, [f"{server_dir}: expected one <ClassName>.py (set --servers-dir)"]
            )
        env["MODEL_NAME"] = classes[0]  # the image's ENV: the class its entry point serves
        command = modelshelf_run(server_dir)
        return Component("predictor", command + args, server_dir, env, http_port, grpc_port)

    def _transformer(self, container: dict[str, Any], predictor: Component) -> Component:
        http_port, grpc_port, metrics_port = free_ports(3)
        image = str(container.get("image", ""))
        folder = MODELSHELF_IMAGES.get(image_repository(image))
        if folder is not None:
            cwd = self.servers_dir / folder
            command = modelshelf_run(cwd)
        else:
            if "transformer" not in self.container_dirs or not container.get("command"):
                raise ManifestError(
                    self.name,
                    [
                        "spec.transformer.containers[0]: image "
                        f"{image!r} is not ours: give its folder with --container-dir "
                        "transformer=DIR, and its command in the manifest"
                    ],
                )
            cwd = self.container_dirs["transformer"]
            command = [self._fill(str(c)) for c in container["command"]]
            if command[0] in ("python", "python3"):
                command[0] = sys.executable
        args = [self._fill(str(a)) for a in container.get("args") or []]
        # what KServe adds to a transformer's container
        args += [
            f"--model_name={self.name}",
            f"--predictor_host={predictor.host}",
            f"--http_port={http_port}",
            f"--grpc_port={grpc_port}",
            f"--protocol={self.request.protocol if self.request.protocol == 'v2' else 'v1'}",
        ]
        env = self._container_env(container.get("env") or [], metrics_port)
        return Component("transformer", command + args, cwd, env, http_port, grpc_port)

    # ---------------------------------------------------------------- processes

    def start(self) -> None:
        for component in self.components:
            component.process = self._spawn(
                component.role,
                component.command,
                component.cwd,
                component.env,
                component.log_tail,
            )
            self._log(
                component.role,
                f"started on http {component.http_port}, grpc {component.grpc_port}, "
                f"pid {component.process.pid}",
            )

    def ready(self) -> bool:
        """Every component answers ``/v2/health/ready`` with 200."""
        return all(_ready(c.host) for c in self.components)

    def wait_ready(self, timeout: float = 180) -> None:
        self._wait_ready(
            self.components, lambda component: _ready(component.host), timeout, "ready"
        )

    def exited(self) -> Component | None:
        return first_exited(self.components)


def _local_arg(arg: str, model_dir: str | None, http_port: int, grpc_port: int) -> str:
    """A runtime argument as it must be here: the fetched folder for ``/mnt/models``, free ports
    for KServe's fixed 8080/8081."""
    match = _PORT_ARG.match(arg)
    if match:
        return f"--{match.group(1)}_port={http_port if match.group(1) == 'http' else grpc_port}"
    if model_dir and MODEL_MOUNT in arg:
        return arg.replace(MODEL_MOUNT, model_dir)
    return arg


def _ready(host: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}/v2/health/ready", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False
