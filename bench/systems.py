"""Every system the harness can measure, each a small declarative entry.

A ``System`` says how to start one server (command, folder, environment), where to POST, which
wire format it speaks, and which of our servers it is compared with. Adding a system is adding
an entry to ``all_systems``; one whose code or venv is missing is reported "not available".
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from bench.config import BENCH, REPO, VENV_BIN
from bench.models import Models


@dataclass(frozen=True)
class Ports:
    http: int
    grpc: int
    metrics: int


@dataclass(frozen=True)
class System:
    name: str  # what BENCH_SYSTEMS matches, e.g. "sklearn-w1"
    label: str  # the report's row title
    family: str  # sklearn | xgboost | mlflow | identity: which model it serves
    role: str  # ours | ceiling | peer
    workers: int
    payload: str  # a bench.models.PAYLOAD_KINDS entry
    path: str  # the prediction endpoint (transport "grpc": the model's name)
    command: Callable[[Ports, Models, Path], list[str]]  # (ports, models, work folder)
    cwd: Path = REPO
    env: dict[str, str] = field(default_factory=dict)
    path_dirs: tuple[Path, ...] = (VENV_BIN,)  # put first on PATH
    peer_env: str | None = None  # bench.peers venv it needs
    available: Callable[[], str | None] = lambda: None  # None, or why it cannot run
    reference: str = ""  # the system of ours it is compared with (same model, same workers)
    transport: str = "http"  # "grpc": V2 gRPC on the gRPC port, loaded by bench.grpc_load

    def process_env(self) -> dict[str, str]:
        env = {**os.environ, **self.env}
        env["PATH"] = os.pathsep.join([*map(str, self.path_dirs), env.get("PATH", "")])
        return env


def rows_in_answer(payload: str, answer: dict) -> int:
    """How many rows a server's answer carries, read the way its protocol writes them."""
    if payload == "seldon":
        data = answer["data"]
        if "ndarray" in data:
            return len(data["ndarray"])
        return int(data["tensor"]["shape"][0])
    if payload in ("v2", "v2-proba", "v2-binary-proba"):
        return int(answer["outputs"][0]["shape"][0])
    return len(answer["predictions"])


def answer_check(payload: str, rows: int) -> Callable[[dict], str | None]:
    def check(answer: dict) -> str | None:
        try:
            found = rows_in_answer(payload, answer)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            return f"unreadable answer ({type(exc).__name__}: {exc})"
        return None if found == rows else f"expected {rows} rows, got {found}"

    return check


# ------------------------------------------------------------------------- availability


def server_module(folder: str, cls: str) -> Callable[[], str | None]:
    def check() -> str | None:
        if not (REPO / "servers" / folder / f"{cls}.py").exists():
            return f"servers/{folder}/{cls}.py does not exist yet"
        return None

    return check


@cache
def modelshelf_has(command: str) -> str | None:
    done = subprocess.run(
        [str(VENV_BIN / "modelshelf"), command, "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    return None if done.returncode == 0 else f"`modelshelf {command}` does not exist yet"


def all_of(*checks: Callable[[], str | None]) -> Callable[[], str | None]:
    def check() -> str | None:
        for one in checks:
            reason = one()
            if reason:
                return reason
        return None

    return check


# ------------------------------------------------------------------------- commands


def seldon_command(
    launcher: list[str], cls: str, params: Callable[[Models], list[dict]], workers: int
) -> Callable[[Ports, Models, Path], list[str]]:
    def command(ports: Ports, models: Models, work: Path) -> list[str]:
        return [
            *launcher,
            cls,
            "--service-type",
            "MODEL",
            "--parameters",
            json.dumps(params(models)),
            "--http-port",
            str(ports.http),
            "--grpc-port",
            str(ports.grpc),
            "--metrics-port",
            str(ports.metrics),
            "--workers",
            str(workers),
        ]

    return command


def uri_parameters(attribute: str) -> Callable[[Models], list[dict]]:
    return lambda models: [
        {"name": "model_uri", "value": str(getattr(models, attribute)), "type": "STRING"}
    ]


def _mlserver(
    implementation: str, model_file: str, family: str, workers: int
) -> Callable[[Ports, Models, Path], list[str]]:
    def command(ports: Ports, models: Models, work: Path) -> list[str]:
        return mlserver_command(
            work / f"mlserver-{family}-pw{workers}",
            ports,
            "iris",
            implementation,
            getattr(models, family) / model_file,
            workers,
        )

    return command


def mlserver_command(
    folder: Path, ports: Ports, name: str, implementation: str, uri: Path, workers: int
) -> list[str]:
    """MLServer's settings for one model written into ``folder``, and the command serving it."""
    folder.mkdir(parents=True, exist_ok=True)
    settings = {
        "http_port": ports.http,
        "grpc_port": ports.grpc,
        "metrics_port": ports.metrics,
        "parallel_workers": workers,
        "host": "127.0.0.1",
    }
    model_settings = {
        "name": name,
        "implementation": implementation,
        "parameters": {"uri": str(uri)},
    }
    (folder / "settings.json").write_text(json.dumps(settings))
    (folder / "model-settings.json").write_text(json.dumps(model_settings))
    return [str(peer_bin("mlserver") / "mlserver"), "start", str(folder)]


def kserve_command(workers: int) -> Callable[[Ports, Models, Path], list[str]]:
    def command(ports: Ports, models: Models, work: Path) -> list[str]:
        return [
            str(peer_bin("kserve") / "python"),
            str(BENCH / "peercode" / "kserve_sklearn.py"),
            "--model_dir",
            str(models.sklearn),
            "--model_name",
            "iris",
            "--http_port",
            str(ports.http),
            "--grpc_port",
            str(ports.grpc),
            "--workers",
            str(workers),
        ]

    return command


def _mlflow_serve(workers: int) -> Callable[[Ports, Models, Path], list[str]]:
    def command(ports: Ports, models: Models, work: Path) -> list[str]:
        return [
            str(peer_bin("mlflow") / "mlflow"),
            "models",
            "serve",
            "-m",
            str(models.mlflow),
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(ports.http),
            "-w",
            str(workers),
        ]

    return command


def _before_run_then_seldon(attribute: str) -> Callable[[Ports, Models, Path], list[str]]:
    """``./before-run`` (the environment builder, offline, into a new empty environment folder,
    with the models' wheels folder) and then the MLflow server: start-up as a pod does it."""

    def command(ports: Ports, models: Models, work: Path) -> list[str]:
        params = uri_parameters(attribute)(models)
        seldon = seldon_command(
            [str(VENV_BIN / "seldon-core-microservice")],
            "MLFlowServer",
            uri_parameters(attribute),
            1,
        )
        script = (
            f"export PREDICTIVE_UNIT_PARAMETERS={shlex.quote(json.dumps(params))}\n"
            f'export MODELSHELF_ENV_DIR="$(mktemp -d {shlex.quote(str(work))}/env-XXXXXX)"\n'
            f"export MODELSHELF_WHEELS_DIR={shlex.quote(str(models.wheels))}\n"
            "export MODELSHELF_ENV_OFFLINE=1\n"
            "./before-run\n"
            "exec " + " ".join(map(shlex.quote, seldon(ports, models, work)))
        )
        return ["sh", "-e", "-c", script]

    return command


def _v2_grpc_systems(serve: list[str]) -> list[System]:
    """V2 gRPC (ModelInfer), 1 worker: ours on `modelshelf serve` and MLServer's, same requests
    (raw FP64 input; sklearn asks for predict_proba), loaded by bench.grpc_load."""
    found = []
    for family, folder, cls, payload, implementation, model_file in (
        ("sklearn", "sklearnserver", "SKLearnServer", "v2-proba", "mlserver_sklearn.SKLearnModel",
         "model.joblib"),
        ("xgboost", "xgboostserver", "XGBoostServer", "v2", "mlserver_xgboost.XGBoostModel",
         "model.json"),
    ):  # fmt: skip
        ours = f"serve-{family}-grpc-w1"
        found.append(
            System(
                ours,
                f"**ours: {cls}, `modelshelf serve`, V2 gRPC**, 1 worker",
                family,
                "ours",
                1,
                payload,
                family,  # the model's name: its folder's
                seldon_command(serve, cls, uri_parameters(family), 1),
                cwd=REPO / "servers" / folder,
                available=all_of(server_module(folder, cls), lambda: modelshelf_has("serve")),
                reference=ours,
                transport="grpc",
            )
        )
        found.append(
            System(
                f"mlserver-{family}-grpc-pw1",
                f"MLServer 1.7.1 {family}, V2 gRPC, parallel_workers=1",
                family,
                "peer",
                1,
                payload,
                "iris",
                _mlserver(implementation, model_file, family, 1),
                path_dirs=(peer_bin("mlserver"),),
                peer_env="mlserver",
                reference=ours,
                transport="grpc",
            )
        )
    return found


PEERS_DIR = BENCH / "peers"


def peer_bin(name: str) -> Path:
    return PEERS_DIR / name / "bin"


# ------------------------------------------------------------------------- the list


def worker_counts() -> list[int]:
    """1 worker, and one per core when there is more than one core."""
    cores = os.cpu_count() or 1
    return [1] if cores == 1 else [1, cores]


#: Our servers by model family: (servers/ folder, class).
OUR_SERVERS = {
    "sklearn": ("sklearnserver", "SKLearnServer"),
    "xgboost": ("xgboostserver", "XGBoostServer"),
    "mlflow": ("mlflowserver", "MLFlowServer"),
}


def all_systems() -> list[System]:
    seldon = [str(VENV_BIN / "seldon-core-microservice")]
    serve = [str(VENV_BIN / "modelshelf"), "serve"]
    found: list[System] = []
    for w in worker_counts():
        found.append(
            System(
                f"identity-w{w}",
                f"identity model (ceiling), seldon-core-microservice, {w} worker(s)",
                "identity",
                "ceiling",
                w,
                "seldon",
                "/api/v1.0/predictions",
                seldon_command(seldon, "IdentityModel", lambda m: [], w),
                cwd=BENCH / "identity",
                reference=f"sklearn-w{w}",
            )
        )
        for family, (folder, cls) in OUR_SERVERS.items():
            found.append(
                System(
                    f"{family}-w{w}",
                    f"**ours: {cls}**, seldon-core-microservice, {w} worker(s)",
                    family,
                    "ours",
                    w,
                    "seldon",
                    "/api/v1.0/predictions",
                    seldon_command(seldon, cls, uri_parameters(family), w),
                    cwd=REPO / "servers" / folder,
                    available=server_module(folder, cls),
                    reference=f"{family}-w{w}",
                )
            )
        if w == 1:
            for name, attribute, what in (
                ("mlflow-env-w1", "mlflow", "everything installed"),
                ("mlflow-env-extra-w1", "mlflow_extra", "one package from the wheels folder"),
            ):
                found.append(
                    System(
                        name,
                        f"**ours: `before-run` ({what}) + MLFlowServer**, seldon-core-microservice,"
                        " 1 worker",
                        "mlflow",
                        "ours",
                        1,
                        "seldon",
                        "/api/v1.0/predictions",
                        _before_run_then_seldon(attribute),
                        cwd=REPO / "servers" / "mlflowserver",
                        available=all_of(
                            server_module("mlflowserver", "MLFlowServer"),
                            lambda: modelshelf_has("env"),
                        ),
                        reference="mlflow-w1",
                    )
                )
        for family, (folder, cls) in OUR_SERVERS.items():
            if w > 1 and family != "sklearn":
                continue  # the front end's scaling shows on one model; keeps make bench short
            found.append(
                System(
                    f"serve-{family}-w{w}",
                    f"**ours: {cls}, `modelshelf serve`**, {w} worker(s)",
                    family,
                    "ours",
                    w,
                    "seldon",
                    "/api/v1.0/predictions",
                    seldon_command(serve, cls, uri_parameters(family), w),
                    cwd=REPO / "servers" / folder,
                    available=all_of(server_module(folder, cls), lambda: modelshelf_has("serve")),
                    reference=f"{family}-w{w}",
                )
            )
        found.append(
            System(
                f"mlserver-sklearn-pw{w}",
                f"MLServer 1.7.1 sklearn (predict_proba), parallel_workers={w}",
                "sklearn",
                "peer",
                w,
                "v2-proba",
                "/v2/models/iris/infer",
                _mlserver("mlserver_sklearn.SKLearnModel", "model.joblib", "sklearn", w),
                path_dirs=(peer_bin("mlserver"),),
                peer_env="mlserver",
                reference=f"sklearn-w{w}",
            )
        )
        found.append(
            System(
                f"mlserver-xgboost-pw{w}",
                f"MLServer 1.7.1 xgboost, parallel_workers={w}",
                "xgboost",
                "peer",
                w,
                "v2",
                "/v2/models/iris/infer",
                _mlserver("mlserver_xgboost.XGBoostModel", "model.json", "xgboost", w),
                path_dirs=(peer_bin("mlserver"),),
                peer_env="mlserver",
                reference=f"xgboost-w{w}",
            )
        )
        if w > 1:
            found.append(
                System(
                    f"mlserver-xgboost-pw{w}-omp1",
                    f"MLServer 1.7.1 xgboost, parallel_workers={w}, OMP_NUM_THREADS=1",
                    "xgboost",
                    "peer",
                    w,
                    "v2",
                    "/v2/models/iris/infer",
                    _mlserver("mlserver_xgboost.XGBoostModel", "model.json", "xgboost", w),
                    env={"OMP_NUM_THREADS": "1"},
                    path_dirs=(peer_bin("mlserver"),),
                    peer_env="mlserver",
                    reference=f"xgboost-w{w}",
                )
            )
        if w == 1:
            from bench.protocol_systems import protocol_systems  # it imports this module

            found += _v2_grpc_systems(serve)
            found += protocol_systems(serve)
        found.append(
            System(
                f"kserve-sklearn-w{w}",
                f"KServe ModelServer + minimal sklearn Model (predict_proba), {w} worker(s)",
                "sklearn",
                "peer",
                w,
                "kserve-v1",
                "/v1/models/iris:predict",
                kserve_command(w),
                path_dirs=(peer_bin("kserve"),),
                peer_env="kserve",
                reference=f"sklearn-w{w}",
            )
        )
        found.append(
            System(
                f"mlflow-serve-w{w}",
                f"`mlflow models serve` (predict), {w} worker(s)",
                "mlflow",
                "peer",
                w,
                "mlflow",
                "/invocations",
                _mlflow_serve(w),
                path_dirs=(peer_bin("mlflow"),),
                peer_env="mlflow",
                reference=f"mlflow-w{w}",
            )
        )
    return found
