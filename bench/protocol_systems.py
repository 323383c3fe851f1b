"""Our servers on `modelshelf serve` answering the other REST protocols, 1 worker: V2 REST (JSON
and binary), KServe V1 and MLflow's ``/invocations``, on the same models and requests as the peers
that speak them (MLServer, KServe's ModelServer, ``mlflow models serve``). Each is compared with
our own Seldon-protocol path on the same server (``reference``), the issue's 10 % budget.

Also the gRPC rows beside ``systems``' V2 gRPC ones: KServe's ModelServer answering V2 gRPC on
its gRPC port, and our Seldon protocol over gRPC (``Model/Predict``), V2 gRPC's own reference."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from bench.config import REPO
from bench.grpc_load import SELDON_KIND
from bench.systems import (
    OUR_SERVERS,
    System,
    all_of,
    kserve_command,
    modelshelf_has,
    peer_bin,
    seldon_command,
    server_module,
    uri_parameters,
)

#: (name, label, family, payload, path): served as "iris", the peers' name.
ROWS = (
    ("serve-sklearn-v2-w1", "SKLearnServer, V2 REST JSON (predict_proba)", "sklearn",
     "v2-proba", "/v2/models/iris/infer"),
    ("serve-sklearn-v2bin-w1", "SKLearnServer, V2 REST binary (predict_proba)", "sklearn",
     "v2-binary-proba", "/v2/models/iris/infer"),
    ("serve-sklearn-v1-w1", "SKLearnServer, KServe V1", "sklearn", "kserve-v1",
     "/v1/models/iris:predict"),
    ("serve-xgboost-v2-w1", "XGBoostServer, V2 REST JSON", "xgboost", "v2",
     "/v2/models/iris/infer"),
    ("serve-mlflow-invocations-w1", "MLFlowServer, MLflow /invocations", "mlflow", "mlflow",
     "/invocations"),
)  # fmt: skip


def protocol_systems(serve: list[str]) -> list[System]:
    found = []
    for name, label, family, payload, path in ROWS:
        folder, cls = OUR_SERVERS[family]
        seldon = seldon_command(serve, cls, uri_parameters(family), 1)
        found.append(
            System(
                name,
                f"**ours: {label}, `modelshelf serve`**, 1 worker",
                family,
                "ours",
                1,
                payload,
                path,
                lambda ports, models, work, seldon=seldon: [
                    *seldon(ports, models, work),
                    "--model-name",
                    "iris",
                ],
                cwd=REPO / "servers" / folder,
                available=all_of(server_module(folder, cls), lambda: modelshelf_has("serve")),
                reference=f"serve-{family}-w1",
            )
        )
    found += _uvicorn_systems(serve, found[:2])
    for family in ("sklearn", "xgboost"):  # our own Seldon protocol over gRPC, same servers
        folder, cls = OUR_SERVERS[family]
        found.append(
            System(
                f"serve-{family}-seldon-grpc-w1",
                f"**ours: {cls}, `modelshelf serve`, Seldon gRPC** (data.tensor), 1 worker",
                family,
                "ours",
                1,
                SELDON_KIND,
                family,
                seldon_command(serve, cls, uri_parameters(family), 1),
                cwd=REPO / "servers" / folder,
                available=all_of(server_module(folder, cls), lambda: modelshelf_has("serve")),
                reference=f"serve-{family}-grpc-w1",
                transport="grpc",
            )
        )
    found.append(
        System(
            "kserve-sklearn-grpc-w1",
            "KServe ModelServer + minimal sklearn Model (predict_proba), V2 gRPC, 1 worker",
            "sklearn",
            "peer",
            1,
            "v2",  # no output asked for: the class answers predict_proba, as over REST
            "iris",
            kserve_command(1),
            path_dirs=(peer_bin("kserve"),),
            peer_env="kserve",
            reference="serve-sklearn-grpc-w1",
            transport="grpc",
        )
    )
    return found


#: Issue 16's targets: (our row, compared with, goal). Our own Seldon path on the same server:
#: within 10 %; the peers speaking the protocol: 3 times their rate.
TARGETS = (
    ("serve-sklearn-v2-w1", "serve-sklearn-w1", 0.9),
    ("serve-sklearn-v2bin-w1", "serve-sklearn-w1", 0.9),
    ("serve-xgboost-v2-w1", "serve-xgboost-w1", 0.9),
    ("serve-mlflow-invocations-w1", "serve-mlflow-w1", 0.9),
    ("serve-sklearn-v2-w1", "mlserver-sklearn-pw1", 3.0),
    ("serve-sklearn-v2-w1", "kserve-sklearn-w1", 3.0),
    ("serve-sklearn-v2bin-w1", "mlserver-sklearn-pw1", 3.0),
    ("serve-sklearn-v2bin-w1", "kserve-sklearn-w1", 3.0),
    ("serve-xgboost-v2-w1", "mlserver-xgboost-pw1", 3.0),
    ("serve-mlflow-invocations-w1", "mlflow-serve-w1", 3.0),
    # V2 gRPC: the peers serving it on their gRPC port, and our Seldon protocol over gRPC.
    ("serve-sklearn-grpc-w1", "mlserver-sklearn-grpc-pw1", 3.0),
    ("serve-sklearn-grpc-w1", "kserve-sklearn-grpc-w1", 3.0),
    ("serve-xgboost-grpc-w1", "mlserver-xgboost-grpc-pw1", 3.0),
    ("serve-sklearn-grpc-w1", "serve-sklearn-seldon-grpc-w1", 0.9),
    ("serve-xgboost-grpc-w1", "serve-xgboost-seldon-grpc-w1", 0.9),
)


def protocol_targets(add: Callable[..., None], ratio: Callable[..., float | None]) -> None:
    """Adds issue 16's REST targets through ``report.targets``' ``add`` and ``ratio``."""
    for ours, other, goal in TARGETS:
        for load in ("single", "batch"):
            what = f"`{ours}` ÷ `{other}`, {'single row' if load == 'single' else load}"
            add(16, what, ratio(ours, other, load), "≥", goal)


def _uvicorn_systems(serve: list[str], v2_rows: list[System]) -> list[System]:
    """The sklearn Seldon and V2 REST rows again on uvicorn (``MODELSHELF_HTTP_SERVER=uvicorn``,
    the front end before modelshelf's own HTTP/1.1 server): what the server itself is worth."""
    folder, cls = OUR_SERVERS["sklearn"]
    uvicorn = {"MODELSHELF_HTTP_SERVER": "uvicorn"}
    seldon = System(
        "serve-sklearn-uvicorn-w1",
        f"ours: {cls}, `modelshelf serve` on uvicorn, 1 worker",
        "sklearn",
        "ours",
        1,
        "seldon",
        "/api/v1.0/predictions",
        seldon_command(serve, cls, uri_parameters("sklearn"), 1),
        cwd=REPO / "servers" / folder,
        env=uvicorn,
        available=all_of(server_module(folder, cls), lambda: modelshelf_has("serve")),
        reference="serve-sklearn-w1",
    )
    return [seldon] + [
        replace(
            row,
            name=row.name.replace("-w1", "-uvicorn-w1"),
            label=row.label.replace("**", "").replace(
                "`modelshelf serve`", "`modelshelf serve` on uvicorn"
            ),
            env=uvicorn,
            reference=row.name,
        )
        for row in v2_rows
    ]
