"""A SeldonDeployment's predictor graph, read and checked the way the operator checks it.

The CRD schema (``crd``) leaves most values free strings: ``type: MODLE`` or
``implementation: SKLEARN_SEVER`` pass it, and only the operator's admission webhook (or a pod
that never starts) says otherwise. ``read_predictor`` applies those webhook rules too, and the
operator's defaulting (a prepackaged server is always a MODEL), and reports every problem with the
field it is about, e.g. ``spec.predictors[0].graph.children[0].implementation``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from modelshelf import registry
from modelshelf.errors import ModelshelfError
from modelshelf.graph import crd
from modelshelf.model_files import MODEL_MOUNT as MODEL_MOUNT  # the storage initializer's mount

NODE_TYPES = ("MODEL", "TRANSFORMER", "OUTPUT_TRANSFORMER", "ROUTER", "COMBINER", "UNKNOWN_TYPE")
NODE_METHODS = ("TRANSFORM_INPUT", "TRANSFORM_OUTPUT", "ROUTE", "AGGREGATE", "SEND_FEEDBACK")
#: The only parameter types seldon-core 1.18.2 parses (there is no JSON type).
PARAMETER_TYPES = ("INT", "FLOAT", "DOUBLE", "STRING", "BOOL")
PROTOCOLS = ("seldon", "tensorflow", "kfserving", "v2")
TRANSPORTS = ("rest", "grpc")

#: Prepackaged implementations modelshelf serves: implementation -> (servers/ folder, image),
#: from the registry (as ``manifests/seldon/seldon-config-predictor-servers-patch.yaml``).
MODELSHELF_SERVERS: dict[str, tuple[str, str]] = {
    server.seldon_implementation: (server.name, registry.image(server))
    for server in registry.SERVERS
}
#: Our images' repository names -> servers/ folder (a node without implementation names one).
MODELSHELF_IMAGES: dict[str, str] = {
    **{server.name: server.name for server in registry.SERVERS},
    **registry.VARIANTS,
}
#: Those images as an error message lists them.
MODELSHELF_IMAGE_NAMES = ", ".join(f"modelshelf/{i}" for i in MODELSHELF_IMAGES)
OTHER_PREPACKAGED = ("TENSORFLOW_SERVER", "TRITON_SERVER", "HUGGINGFACE_SERVER", "TEMPO_SERVER")
BUILT_IN = ("SIMPLE_MODEL", "SIMPLE_ROUTER", "RANDOM_ABTEST", "AVERAGE_COMBINER")
IMPLEMENTATIONS = (*MODELSHELF_SERVERS, *OTHER_PREPACKAGED, *BUILT_IN, "UNKNOWN_IMPLEMENTATION")


class ManifestError(ModelshelfError):
    """A manifest the API server or the Seldon operator would refuse; one line per field."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{source} is not a valid manifest:\n{lines}")


@dataclass
class GraphNode:
    """One predictive unit, with what the operator would derive for its container."""

    name: str
    path: str  # e.g. spec.predictors[0].graph.children[0]
    type: str
    methods: list[str]
    implementation: str
    model_uri: str | None
    parameters: list[dict[str, str]]
    env_secret_ref_name: str | None
    container: dict[str, Any] | None
    children: list[GraphNode] = field(default_factory=list)

    @property
    def image(self) -> str:
        """The container image: the user's, else seldon-config's for a prepackaged server."""
        if self.container and self.container.get("image"):
            return str(self.container["image"])
        if self.implementation in MODELSHELF_SERVERS:
            return MODELSHELF_SERVERS[self.implementation][1]
        return ""

    @property
    def is_prepackaged(self) -> bool:
        return self.implementation in MODELSHELF_SERVERS or self.implementation in OTHER_PREPACKAGED

    def walk(self) -> Iterator[GraphNode]:
        """This node and every node below it, parents first."""
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass
class Predictor:
    """The predictor ``graph run`` runs: its graph and the deployment it belongs to."""

    deployment: str
    name: str
    path: str
    labels: dict[str, str]
    graph: GraphNode
    #: ``metadata.namespace``; ``None`` when the manifest leaves it to ``kubectl apply -n``.
    namespace: str | None = None

    def nodes(self) -> list[GraphNode]:
        return list(self.graph.walk())


def read_predictor(
    documents: list[Any], source: str, predictor_name: str | None = None
) -> Predictor:
    """The named (or only / first) predictor of the SeldonDeployment in ``documents``."""
    deployments = [
        (i, d)
        for i, d in enumerate(documents)
        if isinstance(d, dict) and d.get("kind") == "SeldonDeployment"
    ]
    if len(deployments) != 1:
        raise ManifestError(
            source, [f"expected one SeldonDeployment document, found {len(deployments)}"]
        )
    _index, deployment = deployments[0]
    problems = document_problems(deployment)
    if problems:
        raise ManifestError(source, problems)
    predictors = deployment["spec"]["predictors"]
    names = [p["name"] for p in predictors]
    if predictor_name is None:
        index = 0
    elif predictor_name in names:
        index = names.index(predictor_name)
    else:
        raise ManifestError(
            source, [f"spec.predictors: no predictor named {predictor_name!r} (have {names})"]
        )
    spec = predictors[index]
    path = f"spec.predictors[{index}]"
    containers = _containers(spec)
    return Predictor(
        deployment=deployment["metadata"]["name"],
        name=spec["name"],
        path=path,
        labels={str(k): str(v) for k, v in (spec.get("labels") or {}).items()},
        graph=_node(spec["graph"], f"{path}.graph", containers),
        namespace=deployment["metadata"].get("namespace") or None,
    )


def document_problems(doc: Any) -> list[str]:
    """Everything the API server would refuse in one document; for a SeldonDeployment that
    passes the schema, also what the operator's admission webhook would refuse."""
    problems = crd.validate_object(doc)
    if not problems and doc.get("kind") == "SeldonDeployment":
        problems = deployment_problems(doc)
    return problems


def deployment_problems(deployment: dict[str, Any]) -> list[str]:
    """What the operator's admission webhook would refuse in a schema-valid SeldonDeployment."""
    spec = deployment["spec"]
    problems = []
    if spec.get("protocol", "seldon") not in PROTOCOLS:
        problems.append(_not_one_of("spec.protocol", spec["protocol"], PROTOCOLS))
    if spec.get("transport", "rest") not in TRANSPORTS:
        problems.append(_not_one_of("spec.transport", spec["transport"], TRANSPORTS))
    predictors = spec["predictors"]
    if not predictors:
        problems.append("spec.predictors: at least one predictor is required")
    seen: set[str] = set()
    for index, predictor in enumerate(predictors):
        path = f"spec.predictors[{index}]"
        if predictor["name"] in seen:
            problems.append(f"{path}.name: {predictor['name']!r} is used by another predictor")
        seen.add(predictor["name"])
        containers = _containers(predictor)
        node_names: set[str] = set()
        problems.extend(_node_problems(predictor["graph"], f"{path}.graph", containers, node_names))
    return problems


def _node_problems(
    unit: dict[str, Any], path: str, containers: dict[str, dict], seen: set[str]
) -> list[str]:
    problems = []
    name = unit["name"]
    if name in seen:
        problems.append(f"{path}.name: {name!r} names another node of this graph too")
    seen.add(name)
    implementation = unit.get("implementation")
    if implementation is not None and implementation not in IMPLEMENTATIONS:
        problems.append(_not_one_of(f"{path}.implementation", implementation, IMPLEMENTATIONS))
    if "type" in unit and unit["type"] not in NODE_TYPES:
        problems.append(_not_one_of(f"{path}.type", unit["type"], NODE_TYPES))
    for i, method in enumerate(unit.get("methods") or []):
        if method not in NODE_METHODS:
            problems.append(_not_one_of(f"{path}.methods[{i}]", method, NODE_METHODS))
    if unit.get("type") == "UNKNOWN_TYPE" and not unit.get("methods"):
        problems.append(f"{path}.methods: required when type is UNKNOWN_TYPE")
    if implementation in (None, "UNKNOWN_IMPLEMENTATION") and name not in containers:
        problems.append(
            f"{path}.name: no implementation, so a container named {name!r} is required in "
            f"componentSpecs (containers: {sorted(containers)})"
        )
    prepackaged = implementation in MODELSHELF_SERVERS or implementation in OTHER_PREPACKAGED
    if prepackaged and implementation != "HUGGINGFACE_SERVER" and not unit.get("modelUri"):
        problems.append(f"{path}.modelUri: required for implementation {implementation}")
    for i, parameter in enumerate(unit.get("parameters") or []):
        problems.extend(_parameter_problems(parameter, f"{path}.parameters[{i}]"))
    for i, child in enumerate(unit.get("children") or []):
        problems.extend(_node_problems(child, f"{path}.children[{i}]", containers, seen))
    return problems


def _parameter_problems(parameter: dict[str, str], path: str) -> list[str]:
    kind, value = parameter["type"], parameter["value"]
    if kind not in PARAMETER_TYPES:
        return [_not_one_of(f"{path}.type", kind, PARAMETER_TYPES)]
    try:
        if kind == "INT":
            int(value)
        elif kind in ("FLOAT", "DOUBLE"):
            float(value)
        elif kind == "BOOL" and value.lower() not in _BOOL_WORDS:
            raise ValueError(value)
    except ValueError:
        expected = "true or false" if kind == "BOOL" else f"a {kind.lower()} written as a string"
        return [f"{path}.value: {value!r} is not a valid {kind}: expected {expected}"]
    return []


_BOOL_WORDS = ("true", "false", "1", "0", "yes", "no", "on", "off", "y", "n", "t", "f")


def _not_one_of(path: str, value: Any, allowed: tuple[str, ...]) -> str:
    return f"{path}: {value!r} is not one of {', '.join(allowed)}"


def _containers(predictor: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for component in predictor.get("componentSpecs") or []:
        for container in (component.get("spec") or {}).get("containers") or []:
            found.setdefault(container["name"], container)
    return found


def _node(unit: dict[str, Any], path: str, containers: dict[str, dict]) -> GraphNode:
    implementation = unit.get("implementation") or "UNKNOWN_IMPLEMENTATION"
    node_type = unit.get("type")
    if implementation in MODELSHELF_SERVERS or implementation in OTHER_PREPACKAGED:
        node_type = "MODEL"  # the operator's defaulting does the same
    elif node_type is None:
        node_type = "UNKNOWN_TYPE" if unit.get("methods") else "MODEL"
    return GraphNode(
        name=unit["name"],
        path=path,
        type=node_type,
        methods=list(unit.get("methods") or []),
        implementation=implementation,
        model_uri=unit.get("modelUri"),
        parameters=[dict(p) for p in unit.get("parameters") or []],
        env_secret_ref_name=unit.get("envSecretRefName"),
        container=containers.get(unit["name"]),
        children=[
            _node(child, f"{path}.children[{i}]", containers)
            for i, child in enumerate(unit.get("children") or [])
        ],
    )


def parameters_json(parameters: list[dict[str, str]]) -> str:
    """``PREDICTIVE_UNIT_PARAMETERS`` as the operator writes it."""
    return json.dumps([{k: p[k] for k in ("name", "value", "type")} for p in parameters])
