"""KServe: our runtimes as generated, their selection beside KServe's and MLServer's runtimes, and
the selection and webhook rules on runtimes that clash, lack a format or a protocol."""

from __future__ import annotations

import copy
import subprocess

import pytest

from microservice import BIN, REPO
from modelshelf.graph import crd, kserve, kserve_runtimes
from modelshelf.graph.manifest import document_problems

KSERVE = REPO / "manifests" / "kserve"
OUR_RUNTIME_FILES = sorted(KSERVE.glob("runtime-*.yaml"))
EXAMPLES = sorted(
    p for p in KSERVE.glob("*.yaml") if crd.load_file(p)[0]["kind"] == "InferenceService"
)


def runtime_doc(
    name: str,
    formats: list[tuple[str, str | None, int | None, bool]],
    protocols: list[str] | None = ("v1", "v2"),
    kind: str = "ClusterServingRuntime",
    namespace: str | None = None,
    **spec: object,
) -> dict:
    """A runtime document: formats as (name, version, priority, autoSelect)."""
    entries = []
    for fmt, version, priority, auto in formats:
        entry: dict = {"name": fmt, "autoSelect": auto}
        if version is not None:
            entry["version"] = version
        if priority is not None:
            entry["priority"] = priority
        entries.append(entry)
    metadata: dict = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    body: dict = {
        "supportedModelFormats": entries,
        "containers": [{"name": "kserve-container", "image": f"example/{name}:1"}],
        **spec,
    }
    if protocols is not None:
        body["protocolVersions"] = list(protocols)
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": kind,
        "metadata": metadata,
        "spec": body,
    }


#: KServe 0.20's own runtimes and MLServer's, as config/runtimes lists them (facts, for clashes).
PEERS = [
    runtime_doc("kserve-sklearnserver", [("sklearn", "1", 1, True)], ["v1", "v2"]),
    runtime_doc("kserve-xgbserver", [("xgboost", "2", 1, True)], ["v1", "v2"]),
    runtime_doc("kserve-lgbserver", [("lightgbm", "4", 1, True)], ["v1", "v2"]),
    runtime_doc(
        "kserve-mlserver",
        [
            ("sklearn", "0", 2, True),
            ("sklearn", "1", 2, True),
            ("xgboost", "1", 2, True),
            ("xgboost", "2", 2, True),
            ("lightgbm", "3", 2, True),
            ("lightgbm", "4", 2, True),
            ("mlflow", "1", 1, True),
            ("mlflow", "2", 1, True),
        ],
        ["v2"],
    ),
]


def runtimes(*docs: dict) -> list[kserve.Runtime]:
    return [kserve.Runtime.from_document(d) for d in docs]


def isvc(
    name: str = "m",
    fmt: str = "sklearn",
    version: str | None = None,
    protocol: str | None = None,
    runtime: str | None = None,
    namespace: str | None = None,
) -> dict:
    model: dict = {"modelFormat": {"name": fmt}, "storageUri": "s3://b/m"}
    if version is not None:
        model["modelFormat"]["version"] = version
    if protocol is not None:
        model["protocolVersion"] = protocol
    if runtime is not None:
        model["runtime"] = runtime
    metadata: dict = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": metadata,
        "spec": {"predictor": {"model": model}},
    }


def select(service: dict, *docs: dict) -> kserve.Selection:
    request = kserve.model_request(service)
    assert request is not None
    return kserve.select_runtime(request, runtimes(*docs))


# ---------------------------------------------------------------- our manifests


def test_committed_runtimes_are_what_the_table_generates():
    generated = kserve_runtimes.files()
    committed = {p.name: p.read_text() for p in KSERVE.glob("*runtime-modelshelf-*.yaml")}
    assert committed == generated, (
        "run: python -m modelshelf.graph.kserve_runtimes manifests/kserve"
    )
    assert len(generated) == 2 * len(kserve_runtimes.RUNTIMES)


@pytest.mark.parametrize("path", OUR_RUNTIME_FILES, ids=lambda p: p.name)
def test_our_runtime_is_what_kserve_expects(path):
    (doc,) = crd.load_file(path)
    assert document_problems(doc) == []
    spec = doc["spec"]
    assert spec["protocolVersions"] == ["v1", "v2", "grpc-v2"]
    (container,) = spec["containers"]
    assert container["name"] == "kserve-container"
    assert container["args"][:3] == [
        "--model_name={{.Name}}",
        "--model_dir=/mnt/models",
        "--http_port=8080",
    ]
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True and security["readOnlyRootFilesystem"] is True
    assert spec["annotations"]["prometheus.kserve.io/port"] == "6000"
    env = {v["name"]: v["value"] for v in container["env"]}
    assert env["PREDICTIVE_UNIT_METRICS_SERVICE_PORT"] == "6000"
    assert {f["priority"] for f in spec["supportedModelFormats"]} == {kserve_runtimes.PRIORITY}


def test_our_runtimes_clash_with_neither_kserves_nor_mlservers():
    ours = [crd.load_file(p)[0] for p in OUR_RUNTIME_FILES]
    assert kserve.runtime_problems(runtimes(*PEERS, *ours)) == {}
    namespaced = [crd.load_file(p)[0] for p in sorted(KSERVE.glob("servingruntime-*.yaml"))]
    assert kserve.runtime_problems(runtimes(*PEERS, *ours, *namespaced)) == {}


EXPECTED = {
    "sklearn-iris": "modelshelf-sklearn",
    "sklearn-iris-v2": "modelshelf-sklearn",
    "sklearn-iris-grpc": "modelshelf-sklearn",
    "sklearn-iris-autoscaling": "modelshelf-sklearn",
    "sklearn-iris-transformer": "modelshelf-sklearn",
    "xgboost-iris": "modelshelf-xgboost",
    "xgboost-iris-v2": "modelshelf-xgboost",
    "mlflow-iris": "modelshelf-mlflow",
    "lightgbm-iris": "modelshelf-lightgbm",
    "sklearn-iris-custom": None,
}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_gets_our_runtime_among_the_peers(path):
    (doc,) = crd.load_file(path)
    assert document_problems(doc) == []
    request = kserve.model_request(doc)
    expected = EXPECTED[doc["metadata"]["name"]]
    if expected is None:
        assert request is None
        return
    cluster = runtimes(*PEERS, *(crd.load_file(p)[0] for p in OUR_RUNTIME_FILES))
    selection = kserve.select_runtime(request, cluster)
    assert selection.ok, selection.reason
    assert (selection.runtime.kind, selection.runtime.name) == ("ClusterServingRuntime", expected)


def test_the_examples_cover_every_protocol_both_ways_a_transformer_and_autoscaling():
    docs = [crd.load_file(p)[0] for p in EXAMPLES]
    requests = [kserve.model_request(d) for d in docs]
    protocols = {(r.protocol, r.runtime is not None) for r in requests if r}
    assert {"v1", "v2", "grpc-v2"} == {p for p, _named in protocols}
    assert {True, False} == {named for _p, named in protocols}
    assert any("transformer" in d["spec"] for d in docs)
    scaled = [d["spec"]["predictor"] for d in docs if "scaleMetric" in d["spec"]["predictor"]]
    assert scaled and {"minReplicas", "maxReplicas", "scaleTarget"} <= set(scaled[0])
    grpc = [d for d in docs if (kserve.model_request(d) or None) and "grpc" in str(d)]
    ports = grpc[0]["spec"]["predictor"]["model"]["ports"]
    assert ports[0]["name"] == "h2c"  # Knative routes gRPC to the port named h2c


# ---------------------------------------------------------------- selection rules


def test_higher_priority_wins_and_namespaced_runtimes_come_first():
    low = runtime_doc("low", [("sklearn", "1", 1, True)])
    high = runtime_doc("high", [("sklearn", "1", 7, True)])
    assert select(isvc(), low, high).runtime.name == "high"
    local = runtime_doc("local", [("sklearn", "1", 1, True)], kind="ServingRuntime")
    assert select(isvc(), low, high, local).runtime.name == "local"
    # a namespaced runtime of another namespace is not visible
    other = runtime_doc(
        "other", [("sklearn", "1", 9, True)], kind="ServingRuntime", namespace="team-b"
    )
    assert select(isvc(), low, high, other).runtime.name == "high"
    assert select(isvc(namespace="team-b"), low, high, other).runtime.name == "other"


def test_a_runtime_with_a_priority_beats_one_without():
    none = runtime_doc("a-none", [("sklearn", "1", None, True)])
    some = runtime_doc("z-some", [("sklearn", "1", 1, True)])
    assert select(isvc(), none, some).runtime.name == "z-some"


def test_missing_format_and_version_say_what_the_runtimes_have():
    runtime = runtime_doc("rt", [("sklearn", "1", 1, True)])
    selection = select(isvc(fmt="lightgbm"), runtime)
    assert not selection.ok
    assert "no runtime supports format lightgbm with protocol v1" in selection.reason
    assert "sklearn:1" in selection.reason
    selection = select(isvc(version="0"), runtime)
    assert not selection.ok and "rt has sklearn versions 1" in selection.reason
    assert select(isvc(version="1"), runtime).ok


def test_protocol_mismatch_and_the_v1_default():
    v2_only = runtime_doc("v2only", [("sklearn", "1", 1, True)], ["v2"])
    selection = select(isvc(), v2_only)  # no protocolVersion: matched as v1
    assert not selection.ok
    assert "protocol v1" in selection.reason and "but protocols v2" in selection.reason
    assert select(isvc(protocol="v2"), v2_only).ok
    listing_none = runtime_doc("plain", [("sklearn", "1", 1, True)], protocols=None)
    assert select(isvc(), listing_none).ok  # no protocolVersions: v1 and grpc-v1
    assert not select(isvc(protocol="v2"), listing_none).ok


def test_auto_select_counts_only_unless_the_runtime_is_named():
    manual = runtime_doc("manual", [("sklearn", "1", 1, False)])
    selection = select(isvc(), manual)
    assert not selection.ok and "without autoSelect" in selection.reason
    assert select(isvc(runtime="manual"), manual).runtime.name == "manual"


def test_named_runtime_must_exist_support_the_format_and_protocol():
    rt = runtime_doc("rt", [("xgboost", "2", 1, True)], ["v1"])
    assert "no ServingRuntime or ClusterServingRuntime named 'nope'" in (
        select(isvc(fmt="xgboost", runtime="nope"), rt).reason
    )
    assert "does not support format sklearn" in select(isvc(runtime="rt"), rt).reason
    assert "does not support protocol v2" in (
        select(isvc(fmt="xgboost", protocol="v2", runtime="rt"), rt).reason
    )
    disabled = runtime_doc("off", [("xgboost", "2", 1, True)], ["v1"], disabled=True)
    assert "is disabled" in select(isvc(fmt="xgboost", runtime="off"), disabled).reason


def test_framework_shortcut_is_matched_as_its_format():
    service = isvc()
    service["spec"]["predictor"] = {"sklearn": {"storageUri": "s3://b/m"}}
    (ours,) = crd.load_file(KSERVE / "runtime-modelshelf-sklearn.yaml")
    selection = select(service, ours)
    assert selection.ok and selection.request.field == "spec.predictor.sklearn"


# ---------------------------------------------------------------- the webhook


def test_webhook_refuses_the_same_format_version_protocol_and_priority():
    kserves = runtime_doc("kserve-sklearnserver", [("sklearn", "1", 1, True)], ["v1", "v2"])
    clash = runtime_doc("mine", [("sklearn", "1", 1, True)], ["v2"])
    found = kserve.runtime_problems(runtimes(kserves, clash))
    assert list(found) == [1]
    assert "sklearn:1 at priority 1 for protocol v2" in found[1][0]
    assert "kserve-sklearnserver" in found[1][0]
    # not a clash: another priority, another version, no shared protocol, not auto-selected,
    # another scope (namespaced vs cluster), a disabled existing runtime
    for other in (
        runtime_doc("mine", [("sklearn", "1", 2, True)]),
        runtime_doc("mine", [("sklearn", "0", 1, True)]),
        runtime_doc("mine", [("sklearn", "1", 1, True)], ["grpc-v2"]),
        runtime_doc("mine", [("sklearn", "1", 1, False)]),
        runtime_doc("mine", [("sklearn", "1", 1, True)], kind="ServingRuntime"),
    ):
        assert kserve.runtime_problems(runtimes(kserves, other)) == {}, other
    off = copy.deepcopy(kserves)
    off["spec"]["disabled"] = True
    assert kserve.runtime_problems(runtimes(off, clash)) == {}


def test_webhook_refuses_two_priorities_for_one_format_in_a_runtime():
    mixed = runtime_doc("mixed", [("xgboost", "1", 1, True), ("xgboost", "2", 3, True)])
    (problem,) = kserve.runtime_problems(runtimes(mixed))[0]
    assert "different priorities for the auto-selected format xgboost (1 and 3)" in problem


def test_placeholders_are_filled_from_the_inferenceservice():
    metadata = {
        "name": "iris",
        "namespace": "team-a",
        "labels": {"modelClass": "x.Y"},
        "annotations": {"tier": "gold"},
    }
    fill = kserve.fill_placeholders
    assert fill("--model_name={{.Name}}", metadata) == "--model_name=iris"
    assert fill("{{ .Namespace }}/{{.Labels.modelClass}}", metadata) == "team-a/x.Y"
    assert fill('{{index .Annotations "tier"}}{{.Labels.missing}}', metadata) == "gold"
    assert fill("{{.Namespace}}", {"name": "n"}) == "default"
    with pytest.raises(kserve.PlaceholderError, match="Spec"):
        fill("{{.Spec.Foo}}", metadata)


def test_cli_names_the_runtime_and_fails_on_a_clash(tmp_path):
    clash = tmp_path / "clash.yaml"
    doc = runtime_doc("my-sklearn", [("sklearn", "1", kserve_runtimes.PRIORITY, True)])
    clash.write_text(crd.yaml.safe_dump(doc))
    files = [*OUR_RUNTIME_FILES, KSERVE / "sklearn-iris.yaml"]
    result = subprocess.run(
        [str(BIN / "modelshelf"), "graph", "validate", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "sklearn-iris: runtime ClusterServingRuntime modelshelf-sklearn (format sklearn" in (
        result.stdout
    )
    result = subprocess.run(
        [str(BIN / "modelshelf"), "graph", "validate", *map(str, files), str(clash)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert f"{clash}: INVALID" in result.stdout
    assert "ClusterServingRuntime modelshelf-sklearn's" in result.stdout
    lonely = subprocess.run(
        [
            str(BIN / "modelshelf"),
            "graph",
            "validate",
            str(KSERVE / "xgboost-iris.yaml"),
            str(OUR_RUNTIME_FILES[0]),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert lonely.returncode == 1
    assert "no ServingRuntime or ClusterServingRuntime named 'modelshelf-xgboost'" in lonely.stdout
