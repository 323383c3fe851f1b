"""Our KServe ServingRuntimes, generated from the registry of servers (``modelshelf.registry``).

``python -m modelshelf.graph.kserve_runtimes manifests/kserve`` writes, per server, a
ClusterServingRuntime (``runtime-modelshelf-<server>.yaml``) and the same runtime as a namespaced
ServingRuntime (``servingruntime-modelshelf-<server>.yaml``); a test checks the committed files
are what this writes, so a server added to the registry with ``kserve_model_formats`` gets its
runtimes from that one entry (issue 18).

Why priority ``PRIORITY`` (5): KServe's admission webhook refuses a runtime whose auto-selected
format, version, protocol and priority equal another runtime's of the same scope. KServe's own
runtimes use 1 (sklearn "1", xgboost "2", lightgbm "4"; later releases 3), MLServer's 2
(sklearn, xgboost, lightgbm "3" and "4") and 1 (mlflow). 5 clashes with none of them and, higher
priority winning, makes ours the runtime an ``InferenceService`` with ``modelFormat: sklearn``
gets once installed; users keep KServe's by naming it in ``runtime:``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from modelshelf import registry

PRIORITY = 5
PROTOCOLS = ("v1", "v2", "grpc-v2")
HTTP_PORT = 8080
GRPC_PORT = 8081
METRICS_PORT = 6000
METRICS_PATH = "/metrics"
#: What every runtime's container gets: KServe's own runtime arguments (the image's entry point,
#: ``modelshelf run``, reads them), the gRPC port for ``grpc-v2``.
ARGS = (
    "--model_name={{.Name}}",
    "--model_dir=/mnt/models",
    f"--http_port={HTTP_PORT}",
    f"--grpc_port={GRPC_PORT}",
)
RUN_AS_USER = 8888  # the images' user


@dataclass(frozen=True)
class RuntimeRow:
    """One server as a KServe runtime: its short name, image and model formats (name, version)."""

    server: str
    image: str
    formats: tuple[tuple[str, str], ...]
    description: str
    #: the server's own variables (``registry.Server.kserve_env``), after the common ones
    env: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str:
        return f"modelshelf-{self.server}"


def row(server: registry.Server) -> RuntimeRow:
    """``server``'s runtime: every format it lists at every version it lists."""
    return RuntimeRow(
        server.name.removesuffix("server"),
        registry.image(server),
        tuple(
            (name, version)
            for name in server.kserve_model_formats
            for version in server.kserve_format_versions
        ),
        server.kserve_description,
        server.kserve_env,
    )


#: One row per registered server that KServe can select by model format.
RUNTIMES: tuple[RuntimeRow, ...] = tuple(
    row(server) for server in registry.SERVERS if server.kserve_model_formats
)


def runtime(row: RuntimeRow, kind: str = "ClusterServingRuntime") -> dict[str, Any]:
    """The (Cluster)ServingRuntime for ``row``."""
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": kind,
        "metadata": {
            "name": row.name,
            "annotations": {"openshift.io/display-name": f"modelshelf {row.server}"},
        },
        "spec": {
            # copied to the predictor pod: Prometheus scrapes our metrics port, not 8080
            "annotations": {
                "prometheus.kserve.io/port": str(METRICS_PORT),
                "prometheus.kserve.io/path": METRICS_PATH,
            },
            "supportedModelFormats": [
                {"name": name, "version": version, "autoSelect": True, "priority": PRIORITY}
                for name, version in row.formats
            ],
            "protocolVersions": list(PROTOCOLS),
            "multiModel": False,
            "containers": [
                {
                    "name": "kserve-container",
                    "image": row.image,
                    "args": list(ARGS),
                    "env": [
                        {
                            "name": "PREDICTIVE_UNIT_METRICS_SERVICE_PORT",
                            "value": str(METRICS_PORT),
                        },
                        {"name": "PREDICTIVE_UNIT_METRICS_ENDPOINT", "value": METRICS_PATH},
                        {"name": "TMPDIR", "value": "/tmp"},
                        *({"name": name, "value": value} for name, value in row.env),
                    ],
                    "ports": [{"containerPort": HTTP_PORT, "protocol": "TCP"}],
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": RUN_AS_USER,
                        "readOnlyRootFilesystem": True,
                        "allowPrivilegeEscalation": False,
                        "privileged": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    # the read-only root: downloads, the env folder and metrics go to /tmp
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                    "resources": {
                        "requests": {"cpu": "1", "memory": "1Gi"},
                        "limits": {"cpu": "1", "memory": "2Gi"},
                    },
                }
            ],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        },
    }


def files(rows: tuple[RuntimeRow, ...] = RUNTIMES) -> dict[str, str]:
    """File name -> YAML text, for every row as a ClusterServingRuntime and a ServingRuntime."""
    out = {}
    for row in rows:
        formats = ", ".join(f"{n}:{v}" for n, v in row.formats)
        for kind, prefix, scope in (
            ("ClusterServingRuntime", "runtime", "every namespace"),
            ("ServingRuntime", "servingruntime", "one namespace (kubectl apply -n NAMESPACE)"),
        ):
            header = (
                f"# Generated by `python -m modelshelf.graph.kserve_runtimes manifests/kserve`: "
                f"do not edit.\n# modelshelf's {row.server} server as a KServe {kind}, for "
                f"{scope}: {row.description}.\n# Formats {formats} "
                f"auto-selected at priority {PRIORITY}; protocols {', '.join(PROTOCOLS)}\n"
                f"# (gRPC on {GRPC_PORT}: an InferenceService asking for grpc-v2 declares it as "
                f"port h2c).\n"
            )
            body = yaml.safe_dump(runtime(row, kind), sort_keys=False, width=100)
            out[f"{prefix}-{row.name}.yaml"] = header + body
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m modelshelf.graph.kserve_runtimes DIR", file=sys.stderr)
        return 2
    folder = Path(argv[0])
    for name, text in files().items():
        (folder / name).write_text(text)
        print(folder / name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
