"""Every manifest in manifests/ against the real CRD schemas and the operator's rules, and the
validator itself against manifests the API server or the operator would refuse."""

from __future__ import annotations

import base64
import copy
import json
import subprocess
from pathlib import Path

import pytest

from microservice import BIN, REPO
from modelshelf.graph import crd
from modelshelf.graph.manifest import (
    MODELSHELF_SERVERS,
    ManifestError,
    document_problems,
    read_predictor,
)

MANIFESTS = REPO / "manifests"
SELDON_FILES = sorted((MANIFESTS / "seldon").glob("*.yaml"))
KSERVE_FILES = sorted((MANIFESTS / "kserve").glob("*.yaml"))


@pytest.mark.parametrize("path", SELDON_FILES + KSERVE_FILES, ids=lambda p: p.name)
def test_every_manifest_validates(path: Path):
    documents = crd.load_file(path)
    assert documents, path
    for doc in documents:
        assert document_problems(doc) == [], path


def test_manifests_cover_every_server_and_the_graph():
    kinds = {}
    for path in SELDON_FILES:
        for doc in crd.load_file(path):
            kinds.setdefault(doc["kind"], []).append(doc)
    implementations = set()
    for doc in kinds["SeldonDeployment"]:
        predictor = read_predictor([doc], doc["metadata"]["name"])
        implementations |= {n.implementation for n in predictor.nodes()}
        for node in predictor.nodes():
            assert node.image.startswith("modelshelf/"), (node.name, node.image)
    assert set(MODELSHELF_SERVERS) <= implementations
    graph = read_predictor(crd.load_file(MANIFESTS / "seldon" / "scaler-graph.yaml"), "graph")
    assert [(n.name, n.type) for n in graph.nodes()] == [
        ("scaler-in", "TRANSFORMER"),
        ("scaler-out", "OUTPUT_TRANSFORMER"),
        ("classifier", "MODEL"),
    ]


def test_mlflow_from_s3_uses_our_initializer_and_the_secret():
    (doc,) = crd.load_file(MANIFESTS / "seldon" / "mlflow-s3.yaml")
    graph = doc["spec"]["predictors"][0]["graph"]
    assert graph["implementation"] == "MLFLOW_SERVER"
    assert graph["modelUri"].startswith("s3://")
    assert graph["storageInitializerImage"] == "modelshelf/storage-initializer:0.1.0"
    (secret,) = crd.load_file(MANIFESTS / "seldon" / "models-s3-credentials-secret.yaml")
    assert graph["envSecretRefName"] == secret["metadata"]["name"]
    decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert set(decoded) == {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ENDPOINT_URL",
        "USE_SSL",
    }
    assert decoded["USE_SSL"] == "false"
    assert decoded["AWS_ENDPOINT_URL"].startswith("http://")
    text = (MANIFESTS / "seldon" / "mlflow-s3.yaml").read_text()
    assert "privileged: true" not in text and "runAsUser: 0" not in text


def test_seldon_config_points_prepackaged_servers_at_our_images():
    (config,) = crd.load_file(MANIFESTS / "seldon" / "seldon-config-predictor-servers-patch.yaml")
    servers = json.loads(config["data"]["predictor_servers"])
    for implementation, (_folder, image) in MODELSHELF_SERVERS.items():
        seldon = servers[implementation]["protocols"]["seldon"]
        assert f"{seldon['image']}:{seldon['defaultImageVersion']}" == image
        assert "v2" in servers[implementation]["protocols"]  # MLServer entries kept
    # a merge patch replaces the whole value: every upstream implementation must still be there
    assert {"TENSORFLOW_SERVER", "TRITON_SERVER", "HUGGINGFACE_SERVER", "TEMPO_SERVER"} <= set(
        servers
    )
    initializer = json.loads(config["data"]["storageInitializer"])
    assert initializer["image"] == "modelshelf/storage-initializer:0.1.0"


# ---------------------------------------------------------------- the validator refuses


@pytest.fixture
def iris_deployment() -> dict:
    (doc,) = crd.load_file(MANIFESTS / "seldon" / "sklearn-iris.yaml")
    return copy.deepcopy(doc)


def graph_of(doc: dict) -> dict:
    return doc["spec"]["predictors"][0]["graph"]


SCHEMA_BREAKS = [
    (
        "misspelled field",
        lambda d: graph_of(d).update(modelUrl=graph_of(d).pop("modelUri")),
        "spec.predictors[0].graph: Additional properties are not allowed ('modelUrl' was "
        "unexpected)",
    ),
    (
        "unquoted parameter value",
        lambda d: graph_of(d)["parameters"].append({"name": "n", "type": "INT", "value": 3}),
        "spec.predictors[0].graph.parameters[1].value: 3 is not of type 'string'",
    ),
    (
        "float quantity",
        lambda d: d["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"][0][
            "resources"
        ]["requests"].update(cpu=0.5),
        "spec.predictors[0].componentSpecs[0].spec.containers[0].resources.requests.cpu: "
        "0.5 is not of type integer or string",
    ),
    (
        "replicas as a string",
        lambda d: d["spec"]["predictors"][0].update(replicas="two"),
        "spec.predictors[0].replicas: 'two' is not of type 'integer'",
    ),
    (
        "int32 overflow",
        lambda d: d["spec"]["predictors"][0].update(replicas=2**31),
        "spec.predictors[0].replicas: 2147483648 is out of range for int32",
    ),
    (
        "child without name",
        lambda d: graph_of(d).update(children=[{"type": "MODEL"}]),
        "spec.predictors[0].graph.children[0]: 'name' is a required property",
    ),
    (
        "duplicate container port",
        lambda d: d["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"][0].update(
            ports=[{"containerPort": 9000}, {"containerPort": 9000, "protocol": "TCP"}]
        ),
        "containers[0].ports: duplicate entry {'containerPort': 9000, 'protocol': 'TCP'}",
    ),
    (
        "unserved version",
        lambda d: d.update(apiVersion="machinelearning.seldon.io/v2"),
        "'v2' not served",
    ),
    ("bad name", lambda d: d["metadata"].update(name="Iris_Model"), "metadata.name: 'Iris_Model'"),
]

OPERATOR_BREAKS = [
    (
        "unknown implementation",
        lambda d: graph_of(d).update(implementation="SKLEARN_SEVER"),
        "spec.predictors[0].graph.implementation: 'SKLEARN_SEVER' is not one of SKLEARN_SERVER",
    ),
    (
        "unknown type",
        lambda d: graph_of(d).update(
            children=[
                {
                    "name": "next",
                    "type": "MODLE",
                    "implementation": "SKLEARN_SERVER",
                    "modelUri": "s3://b/m",
                }
            ]
        ),
        "spec.predictors[0].graph.children[0].type: 'MODLE' is not one of MODEL",
    ),
    (
        "parameter type JSON",
        lambda d: graph_of(d)["parameters"].append({"name": "p", "type": "JSON", "value": "{}"}),
        "spec.predictors[0].graph.parameters[1].type: 'JSON' is not one of INT, FLOAT",
    ),
    (
        "INT that is not an integer",
        lambda d: graph_of(d)["parameters"].append({"name": "n", "type": "INT", "value": "3.0"}),
        "spec.predictors[0].graph.parameters[1].value: '3.0' is not a valid INT",
    ),
    (
        "prepackaged server without modelUri",
        lambda d: graph_of(d).pop("modelUri"),
        "spec.predictors[0].graph.modelUri: required for implementation SKLEARN_SERVER",
    ),
    (
        "node without implementation or container",
        lambda d: graph_of(d).update(children=[{"name": "custom", "type": "TRANSFORMER"}]),
        "spec.predictors[0].graph.children[0].name: no implementation, so a container named "
        "'custom' is required",
    ),
]


@pytest.mark.parametrize(
    ("case", "change", "message"),
    SCHEMA_BREAKS + OPERATOR_BREAKS,
    ids=[c[0] for c in SCHEMA_BREAKS + OPERATOR_BREAKS],
)
def test_broken_manifest_is_refused_at_the_field(iris_deployment, case, change, message):
    change(iris_deployment)
    found = document_problems(iris_deployment)
    assert any(message in p for p in found), found
    with pytest.raises(ManifestError) as raised:
        read_predictor([iris_deployment], "broken.yaml")
    assert message in str(raised.value)


def test_nulls_are_pruned_and_dates_stay_strings():
    (doc,) = crd.load_documents(
        """
apiVersion: machinelearning.seldon.io/v1
kind: SeldonDeployment
metadata:
  name: dated
  annotations:
    released: 2024-01-01
spec:
  replicas:
  predictors:
    - name: default
      graph: {name: m, implementation: SKLEARN_SERVER, modelUri: "s3://b/m"}
"""
    )
    assert doc["metadata"]["annotations"]["released"] == "2024-01-01"
    assert document_problems(doc) == []


def test_cli_validate_reports_the_field_and_fails(tmp_path, iris_deployment):
    graph_of(iris_deployment)["implementation"] = "SKLEARN_SEVER"
    broken = tmp_path / "broken.yaml"
    broken.write_text(json.dumps(iris_deployment))  # JSON is YAML
    good = MANIFESTS / "seldon" / "scaler-graph.yaml"
    result = subprocess.run(
        [str(BIN / "modelshelf"), "graph", "validate", str(good), str(broken)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{good}: valid (SeldonDeployment)" in result.stdout
    assert f"{broken}: INVALID" in result.stdout
    assert "spec.predictors[0].graph.implementation: 'SKLEARN_SEVER'" in result.stdout
