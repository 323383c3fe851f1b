"""Validate Kubernetes manifests against the CRD schemas shipped in ``graph/schemas/``.

A plain JSON-Schema check of a CRD's ``openAPIV3Schema`` is laxer than the API server. The schema
is converted once per kind so that it also rejects what kube-apiserver rejects under strict field
validation (kubectl's default since 1.25): unknown fields, floats where int-or-string is expected,
int32/int64 overflow, duplicates in ``x-kubernetes-list-type`` set/map lists. Nulls are dropped
before validating, as the API server prunes them. YAML is read without turning dates into
``date`` objects (sigs.k8s.io/yaml keeps them strings).
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"

#: kind -> (group, CRD file in SCHEMA_DIR)
CRD_FILES: dict[str, tuple[str, str]] = {
    "SeldonDeployment": ("machinelearning.seldon.io", "seldondeployment-v1.18.2.crd.yaml"),
    "InferenceService": ("serving.kserve.io", "kserve-inferenceservice-v0.20.0.crd.yaml"),
    "ServingRuntime": ("serving.kserve.io", "kserve-servingruntime-v0.20.0.crd.yaml"),
    "ClusterServingRuntime": ("serving.kserve.io", "kserve-clusterservingruntime-v0.20.0.crd.yaml"),
}

_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


class _KubernetesYamlLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe loader that keeps ``2024-01-01`` a string, as Kubernetes' YAML decoder does."""


_KubernetesYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_documents(text: str) -> list[Any]:
    """Every non-empty YAML document in ``text`` (dates stay strings)."""
    return [doc for doc in yaml.load_all(text, Loader=_KubernetesYamlLoader) if doc is not None]


def load_file(path: str | Path) -> list[Any]:
    """The documents of a manifest file."""
    return load_documents(Path(path).read_text())


def field_path(parts: Any) -> str:
    """``['spec', 'predictors', 0, 'graph']`` as ``spec.predictors[0].graph``."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "<root>"


# ---------------------------------------------------------------- schema conversion


def _strict(node: Any, memo: dict[int, Any]) -> Any:
    """A Draft 4 schema that behaves like kube-apiserver's structural-schema validation."""
    if not isinstance(node, dict):
        return node
    if id(node) in memo:  # the Seldon CRD aliases one schema for three versions
        return memo[id(node)]
    out: dict[str, Any] = {}
    memo[id(node)] = out
    for key, value in node.items():
        if key in ("description", "default", "example", "x-kubernetes-map-type"):
            continue
        if key == "properties":
            out[key] = {name: _strict(sub, memo) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not"):
            out[key] = _strict(value, memo)
        elif key in ("anyOf", "allOf", "oneOf"):
            out[key] = [_strict(sub, memo) for sub in value]
        else:
            out[key] = value
    if node.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
    if "properties" in node and "additionalProperties" not in node and not preserve:
        out["additionalProperties"] = False
    if node.get("x-kubernetes-list-type") == "map":
        item_props = (node.get("items") or {}).get("properties", {})
        out["x-list-map-defaults"] = {
            key: item_props.get(key, {}).get("default")
            for key in node.get("x-kubernetes-list-map-keys", [])
        }
    return out


def _check_list_type(validator: Any, list_type: str, instance: Any, schema: dict) -> Iterator[Any]:
    if not isinstance(instance, list) or list_type not in ("set", "map"):
        return
    seen: dict[Any, int] = {}
    for index, item in enumerate(instance):
        if list_type == "set":
            key: Any = repr(item)
            shown: Any = item
        else:
            if not isinstance(item, dict):
                continue
            defaults = schema.get("x-list-map-defaults", {})
            shown = {k: item.get(k, defaults[k]) for k in defaults}
            key = repr(sorted(shown.items(), key=lambda kv: kv[0]))
        if key in seen:
            yield jsonschema.ValidationError(
                f"duplicate entry {shown!r} (items {seen[key]} and {index}; list-type={list_type})"
            )
        else:
            seen[key] = index


_format_checker = jsonschema.FormatChecker(())
for _name, (_low, _high) in _INT_RANGES.items():

    def _in_range(value: Any, low: int = _low, high: int = _high) -> bool:
        return not isinstance(value, int) or isinstance(value, bool) or low <= value <= high

    _format_checker.checks(_name)(_in_range)

_StrictValidator = jsonschema.validators.extend(
    jsonschema.Draft4Validator, {"x-kubernetes-list-type": _check_list_type}
)


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _message(error: jsonschema.ValidationError) -> str:
    if error.validator == "anyOf":
        kinds = [s.get("type") for s in error.validator_value if isinstance(s, dict)]
        if kinds and all(isinstance(k, str) for k in kinds):
            return f"{error.instance!r} is not of type {' or '.join(kinds)}"
    if error.validator == "format" and error.validator_value in _INT_RANGES:
        low, high = _INT_RANGES[error.validator_value]
        return f"{error.instance!r} is out of range for {error.validator_value} [{low}, {high}]"
    return error.message


# ---------------------------------------------------------------- CRDs


@dataclass(frozen=True)
class CRD:
    """One CustomResourceDefinition: its group, kind and a strict validator per served version."""

    group: str
    kind: str
    validators: dict[str, Any]

    @classmethod
    def from_file(cls, path: str | Path) -> CRD:
        (definition,) = load_file(path)
        spec = definition["spec"]
        memo: dict[int, Any] = {}
        validators = {}
        for version in spec["versions"]:
            if not version.get("served", False):
                continue
            schema = _strict(version["schema"]["openAPIV3Schema"], memo)
            validators[version["name"]] = _StrictValidator(schema, format_checker=_format_checker)
        return cls(spec["group"], spec["names"]["kind"], validators)

    def errors(self, obj: Any) -> list[str]:
        """Messages such as ``spec.predictors[0]: 'graph' is a required property``; [] if valid."""
        if not isinstance(obj, dict):
            return [f"<root>: expected a mapping (a Kubernetes object), got {type(obj).__name__}"]
        group, _, version = str(obj.get("apiVersion", "")).rpartition("/")
        problems = []
        if obj.get("kind") != self.kind:
            problems.append(f"kind: {obj.get('kind')!r} is not {self.kind!r}")
        if group != self.group:
            problems.append(
                f"apiVersion: {obj.get('apiVersion')!r} is not in group {self.group!r} "
                f"(expected {self.group}/{sorted(self.validators)[0]})"
            )
        validator = self.validators.get(version)
        if validator is None:
            problems.append(
                f"apiVersion: version {version!r} not served (served: {sorted(self.validators)})"
            )
        problems.extend(_metadata_errors(obj.get("metadata")))
        if problems:
            return problems
        found = sorted(
            validator.iter_errors(_without_nulls(obj)), key=lambda e: [str(p) for p in e.path]
        )
        return [f"{field_path(e.absolute_path)}: {_message(e)}" for e in found]


def _metadata_errors(metadata: Any) -> list[str]:
    if not isinstance(metadata, dict):
        return ["metadata: required, with a name"]
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        return ["metadata.name: required (a DNS-1123 subdomain such as 'iris-classifier')"]
    if len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name):
        return [
            f"metadata.name: {name!r} is not a DNS-1123 subdomain "
            "(lower-case letters, digits, '-' and '.', starting and ending alphanumeric)"
        ]
    return []


@functools.cache
def crd_for_kind(kind: str) -> CRD:
    """The CRD for ``kind``, parsed once per process (the InferenceService one takes ~1.5 s)."""
    _group, filename = CRD_FILES[kind]
    return CRD.from_file(SCHEMA_DIR / filename)


def validate_object(obj: Any) -> list[str]:
    """Schema errors of one Kubernetes object: CRD kinds strictly, Secrets/ConfigMaps basically."""
    kind = obj.get("kind") if isinstance(obj, dict) else None
    if kind in CRD_FILES:
        return crd_for_kind(kind).errors(obj)
    if kind == "Secret":
        return _secret_errors(obj)
    if kind == "ConfigMap":
        return _configmap_errors(obj)
    return [f"kind: {kind!r} is not one this project validates ({', '.join(KNOWN_KINDS)})"]


def _core_errors(obj: dict, allowed: set[str]) -> list[str]:
    problems = []
    if obj.get("apiVersion") != "v1":
        problems.append(f"apiVersion: {obj.get('apiVersion')!r} must be 'v1' for a {obj['kind']}")
    problems.extend(_metadata_errors(obj.get("metadata")))
    for key in obj:
        if key not in allowed:
            problems.append(
                f"<root>: unknown field {key!r} (allowed: {', '.join(sorted(allowed))})"
            )
    return problems


def _string_map_errors(obj: dict, key: str) -> list[str]:
    values = obj.get(key)
    if values is None:
        return []
    if not isinstance(values, dict):
        return [f"{key}: must be a mapping of strings"]
    return [
        f"{key}.{k}: {v!r} is not of type 'string'"
        for k, v in values.items()
        if not isinstance(v, str)
    ]


def _secret_errors(obj: dict) -> list[str]:
    allowed = {"apiVersion", "kind", "metadata", "data", "stringData", "type", "immutable"}
    problems = _core_errors(obj, allowed) + _string_map_errors(obj, "stringData")
    problems += _string_map_errors(obj, "data")
    for name, value in (obj.get("data") or {}).items():
        if isinstance(value, str):
            try:
                base64.b64decode(value, validate=True)
            except binascii.Error:
                problems.append(
                    f"data.{name}: not base64 (encode with `printf %s VALUE | base64 -w0`, "
                    "or put plain text under stringData)"
                )
    return problems


def _configmap_errors(obj: dict) -> list[str]:
    allowed = {"apiVersion", "kind", "metadata", "data", "binaryData", "immutable"}
    return _core_errors(obj, allowed) + _string_map_errors(obj, "data")


KNOWN_KINDS = (*CRD_FILES, "Secret", "ConfigMap")
