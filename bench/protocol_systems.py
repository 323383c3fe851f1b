"""Our servers on `modelshelf serve` answering the other REST protocols, 1 worker: V2 REST (JSON
and binary), KServe V1 and MLflow's ``/invocations``, on the same models and requests as the peers
that speak them (MLServer, KServe's ModelServer, ``mlflow models serve``). Each is compared with
our own Seldon-protocol path on the same server (``reference``), the issue's 10 % budget."""

from __future__ import annotations

from bench.config import REPO
from bench.systems import System, _all_of, _modelshelf_has, _seldon, _server_module, _uri

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

_SERVERS = {
    "sklearn": ("sklearnserver", "SKLearnServer"),
    "xgboost": ("xgboostserver", "XGBoostServer"),
    "mlflow": ("mlflowserver", "MLFlowServer"),
}


def protocol_systems(serve: list[str]) -> list[System]:
    found = []
    for name, label, family, payload, path in ROWS:
        folder, cls = _SERVERS[family]
        seldon = _seldon(serve, cls, _uri(family), 1)
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
                available=_all_of(_server_module(folder, cls), lambda: _modelshelf_has("serve")),
                reference=f"serve-{family}-w1",
            )
        )
    return found
