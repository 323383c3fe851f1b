"""KServe's runtime selection and ServingRuntime admission rules (KServe 0.20), offline.

No schema encodes them; a cluster applies them when an ``InferenceService`` is reconciled and when
a runtime is admitted:

* An InferenceService's ``predictor.model`` (or a framework shortcut such as ``predictor.sklearn``)
  names a format ``name[:version]`` and a protocol (``v1`` when it names none). A runtime
  supports it when one of its ``supportedModelFormats`` has that name (and version, if one is
  asked for) and it lists the protocol (a runtime listing none takes v1 and grpc-v1). Only
  ``autoSelect: true`` entries count, unless the InferenceService names the runtime in
  ``runtime:``; disabled and multi-model runtimes never count.
* Namespaced ServingRuntimes of the InferenceService's namespace come before every
  ClusterServingRuntime; within each group the higher priority (of the format's first entry)
  wins, a runtime with a priority before one without.
* The webhook refuses a runtime where one auto-selected format has two priorities, and one whose
  auto-selected format, version, shared protocol and priority equal another runtime's of the same
  scope (cluster, or the same namespace).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

RUNTIME_KINDS = ("ServingRuntime", "ClusterServingRuntime")
#: Protocol order KServe sorts runtimes by (lowest first).
PROTOCOL_ORDER = {"v1": 0, "v2": 1, "grpc-v1": 2, "grpc-v2": 3}
DEFAULT_NAMESPACE = "default"
#: predictor.<shortcut> -> model format name, as KServe maps the framework fields.
SHORTCUTS = (
    "sklearn",
    "xgboost",
    "lightgbm",
    "tensorflow",
    "pytorch",
    "onnx",
    "pmml",
    "paddle",
    "triton",
    "huggingface",
)


@dataclass(frozen=True)
class Runtime:
    """A (Cluster)ServingRuntime as selection sees it."""

    kind: str
    name: str
    namespace: str | None  # None for a ClusterServingRuntime
    spec: dict[str, Any]
    source: str = ""

    @classmethod
    def from_document(cls, doc: dict[str, Any], source: str = "") -> Runtime:
        metadata = doc.get("metadata") or {}
        namespace = None
        if doc["kind"] == "ServingRuntime":
            namespace = metadata.get("namespace") or DEFAULT_NAMESPACE
        return cls(doc["kind"], metadata["name"], namespace, doc.get("spec") or {}, source)

    @property
    def label(self) -> str:
        where = f" in namespace {self.namespace}" if self.namespace else ""
        return f"{self.kind} {self.name}{where}"

    @property
    def disabled(self) -> bool:
        return bool(self.spec.get("disabled"))

    @property
    def multi_model(self) -> bool:
        return bool(self.spec.get("multiModel"))

    @property
    def protocols(self) -> list[str]:
        return list(self.spec.get("protocolVersions") or [])

    @property
    def formats(self) -> list[dict[str, Any]]:
        return list(self.spec.get("supportedModelFormats") or [])

    def supports_protocol(self, protocol: str) -> bool:
        if not self.protocols:
            return protocol in ("v1", "grpc-v1")
        return protocol in self.protocols

    def supports_format(self, name: str, version: str | None, named: bool) -> bool:
        """Whether a ``name[:version]`` label of this runtime matches (every entry when the
        InferenceService names this runtime, else only auto-selected ones)."""
        for entry in self.formats:
            if not named and entry.get("autoSelect") is not True:
                continue
            if entry.get("name") != name:
                continue
            if version is None or str(entry.get("version")) == version:
                return True
        return False

    def priority(self, name: str) -> int | None:
        for entry in self.formats:
            if entry.get("name") == name:
                return entry.get("priority")
        return None

    def protocol_rank(self) -> int:
        return min((PROTOCOL_ORDER.get(p, 4) for p in self.protocols), default=4)


@dataclass(frozen=True)
class ModelRequest:
    """What an InferenceService's predictor asks a runtime for."""

    isvc: str
    namespace: str
    format_name: str
    format_version: str | None
    protocol: str
    runtime: str | None
    field: str  # spec.predictor.model, spec.predictor.sklearn, ...

    @property
    def format_label(self) -> str:
        if self.format_version is None:
            return self.format_name
        return f"{self.format_name}:{self.format_version}"


def model_request(isvc: dict[str, Any]) -> ModelRequest | None:
    """The predictor's model format, protocol and named runtime; ``None`` for a custom container
    predictor (no runtime is selected for it)."""
    metadata = isvc.get("metadata") or {}
    predictor = (isvc.get("spec") or {}).get("predictor") or {}
    namespace = metadata.get("namespace") or DEFAULT_NAMESPACE
    if "model" in predictor:
        model = predictor["model"]
        model_format = model.get("modelFormat") or {}
        version = model_format.get("version")
        return ModelRequest(
            metadata["name"],
            namespace,
            model_format.get("name", ""),
            None if version is None else str(version),
            model.get("protocolVersion") or "v1",
            model.get("runtime"),
            "spec.predictor.model",
        )
    for shortcut in SHORTCUTS:
        if shortcut in predictor:
            spec = predictor[shortcut] or {}
            return ModelRequest(
                metadata["name"],
                namespace,
                shortcut,
                None,
                spec.get("protocolVersion") or "v1",
                spec.get("runtime"),
                f"spec.predictor.{shortcut}",
            )
    return None


@dataclass(frozen=True)
class Selection:
    """The runtime KServe would pick for one InferenceService, or why none."""

    request: ModelRequest
    runtime: Runtime | None
    reason: str  # why this runtime, or why none

    @property
    def ok(self) -> bool:
        return self.runtime is not None


def select_runtime(request: ModelRequest, runtimes: list[Runtime]) -> Selection:
    """The runtime KServe would give ``request``, from ``runtimes`` (the cluster's)."""
    visible = [
        r for r in runtimes if r.kind == "ClusterServingRuntime" or r.namespace == request.namespace
    ]
    if request.runtime is not None:
        return _named(request, visible)
    candidates = [
        r
        for r in visible
        if not r.disabled
        and not r.multi_model
        and r.supports_format(request.format_name, request.format_version, named=False)
        and r.supports_protocol(request.protocol)
    ]
    if not candidates:
        return Selection(request, None, _why_none(request, visible))
    namespaced = _by_priority([r for r in candidates if r.namespace], request.format_name)
    cluster = _by_priority([r for r in candidates if not r.namespace], request.format_name)
    chosen = (namespaced + cluster)[0]
    priority = chosen.priority(request.format_name)
    others = len(candidates) - 1
    reason = f"format {request.format_label}, protocol {request.protocol}, priority {priority}" + (
        f" (over {others} other supporting runtime{'s' * (others > 1)})" if others else ""
    )
    return Selection(request, chosen, reason)


def _by_priority(runtimes: list[Runtime], format_name: str) -> list[Runtime]:
    ordered = sorted(runtimes, key=lambda r: (r.protocol_rank(), r.name))
    return sorted(
        ordered,
        key=lambda r: (
            r.priority(format_name) is None,
            -(r.priority(format_name) or 0),
        ),
    )


def _named(request: ModelRequest, visible: list[Runtime]) -> Selection:
    # a namespaced runtime of that name hides a cluster one, as KServe looks it up first
    found = sorted(
        (r for r in visible if r.name == request.runtime), key=lambda r: r.namespace is None
    )
    if not found:
        return Selection(
            request,
            None,
            f"{request.field}.runtime: no ServingRuntime or ClusterServingRuntime named "
            f"{request.runtime!r} (have: {', '.join(sorted({r.name for r in visible})) or 'none'})",
        )
    runtime = found[0]
    if runtime.disabled:
        return Selection(request, None, f"{request.field}.runtime: {runtime.label} is disabled")
    if not runtime.supports_format(request.format_name, request.format_version, named=True):
        listed = ", ".join(f"{f.get('name')}:{f.get('version')}" for f in runtime.formats)
        return Selection(
            request,
            None,
            f"{request.field}.runtime: {runtime.label} does not support format "
            f"{request.format_label} (it lists {listed or 'none'})",
        )
    if not runtime.supports_protocol(request.protocol):
        return Selection(
            request,
            None,
            f"{request.field}.runtime: {runtime.label} does not support protocol "
            f"{request.protocol} (it lists {', '.join(runtime.protocols) or 'v1, grpc-v1'})",
        )
    return Selection(request, runtime, f"named in runtime:, protocol {request.protocol}")


def _why_none(request: ModelRequest, visible: list[Runtime]) -> str:
    head = (
        f"{request.field}: no runtime supports format {request.format_label} "
        f"with protocol {request.protocol}"
    )
    if not visible:
        return head + " (no runtimes at all)"
    notes = []
    for r in visible:
        if r.disabled:
            notes.append(f"{r.label} is disabled")
        elif r.multi_model:
            notes.append(f"{r.label} is multi-model")
        elif r.supports_format(request.format_name, request.format_version, named=True):
            if not r.supports_format(request.format_name, request.format_version, named=False):
                notes.append(f"{r.label} has {request.format_label} without autoSelect")
            elif not r.supports_protocol(request.protocol):
                notes.append(
                    f"{r.label} has {request.format_label} but protocols "
                    f"{', '.join(r.protocols) or 'v1, grpc-v1'}"
                )
        elif r.supports_format(request.format_name, None, named=True):
            versions = [
                str(f.get("version")) for f in r.formats if f.get("name") == request.format_name
            ]
            notes.append(f"{r.label} has {request.format_name} versions {', '.join(versions)}")
    formats = sorted({f"{f.get('name')}:{f.get('version')}" for r in visible for f in r.formats})
    detail = "; ".join(notes) if notes else f"formats known: {', '.join(formats)}"
    return f"{head} ({detail})"


# ---------------------------------------------------------------- the admission webhook


def runtime_problems(runtimes: list[Runtime]) -> dict[int, list[str]]:
    """What KServe's webhook refuses, by index into ``runtimes`` (applied in that order)."""
    found: dict[int, list[str]] = {}
    for index, runtime in enumerate(runtimes):
        problems = _priority_same_problems(runtime)
        if not runtime.disabled:
            for other in runtimes[:index]:
                clash = _clash(runtime, other)
                if clash:
                    problems.append(clash)
        if problems:
            found[index] = problems
    return found


def _priority_same_problems(runtime: Runtime) -> list[str]:
    seen: dict[str, Any] = {}
    for i, entry in enumerate(runtime.formats):
        if entry.get("autoSelect") is not True:
            continue
        name = entry.get("name")
        if name in seen:
            if seen[name] is not None and entry.get("priority") not in (None, seen[name]):
                return [
                    f"spec.supportedModelFormats[{i}].priority: different priorities for the "
                    f"auto-selected format {name} ({seen[name]} and {entry.get('priority')}) "
                    "in one runtime"
                ]
        else:
            seen[name] = entry.get("priority")
    return []


def _same_scope(a: Runtime, b: Runtime) -> bool:
    return a.kind == b.kind and a.namespace == b.namespace


def _clash(new: Runtime, existing: Runtime) -> str | None:
    if not _same_scope(new, existing) or new.name == existing.name:
        return None
    if new.multi_model != existing.multi_model or existing.disabled:
        return None
    shared = [p for p in existing.protocols if p in new.protocols]
    if not shared:
        return None
    for mine in new.formats:
        for theirs in existing.formats:
            if mine.get("autoSelect") is not True or theirs.get("autoSelect") is not True:
                continue
            if str(mine.get("name", "")).lower() != str(theirs.get("name", "")).lower():
                continue
            if mine.get("version") != theirs.get("version"):
                continue
            priority = mine.get("priority")
            if priority is not None and priority == theirs.get("priority"):
                return (
                    f"spec.supportedModelFormats: {mine.get('name')}:{mine.get('version')} at "
                    f"priority {priority} for protocol {shared[0]} is also {existing.label}'s: "
                    "KServe's webhook refuses the same auto-selected format, version, protocol "
                    "and priority in two runtimes (choose another priority)"
                )
    return None


# ---------------------------------------------------------------- placeholders

_PLACEHOLDER = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_FIELD = re.compile(r"^\.(Name|Namespace)$")
_MAP_DOT = re.compile(r"^\.(Labels|Annotations)\.([A-Za-z0-9_]+)$")
_MAP_INDEX = re.compile(r'^index\s+\.(Labels|Annotations)\s+"([^"]+)"$')


class PlaceholderError(ValueError):
    """A Go-template placeholder this offline runner does not fill."""


def fill_placeholders(text: str, metadata: dict[str, Any]) -> str:
    """``{{.Name}}``, ``{{.Namespace}}``, ``{{.Labels.x}}``, ``{{.Annotations.x}}`` and
    ``{{index .Labels "x"}}`` filled from an InferenceService's metadata, as KServe fills a
    runtime's args and env (a missing label or annotation becomes "", as Go's template does)."""

    def value(match: re.Match) -> str:
        expression = match.group(1)
        field = _FIELD.match(expression)
        if field:
            if field.group(1) == "Namespace":
                return str(metadata.get("namespace") or DEFAULT_NAMESPACE)
            return str(metadata.get("name", ""))
        keyed = _MAP_DOT.match(expression) or _MAP_INDEX.match(expression)
        if keyed:
            values = metadata.get(keyed.group(1).lower()) or {}
            return str(values.get(keyed.group(2), ""))
        raise PlaceholderError(
            f"{match.group(0)!r}: only {{{{.Name}}}}, {{{{.Namespace}}}}, {{{{.Labels.x}}}} and "
            "{{.Annotations.x}} are filled here"
        )

    return _PLACEHOLDER.sub(value, text)


# ---------------------------------------------------------------- several manifests at once


@dataclass
class KServeReport:
    """Cross-document findings for ``graph validate``: problems and notes by document."""

    problems: dict[tuple[int, int], list[str]]  # (file index, document index) -> problems
    notes: dict[tuple[int, int], list[str]]  # (file index, document index) -> notes


def check_documents(files: list[list[Any]]) -> KServeReport:
    """Apply the webhook's runtime rules to every runtime in ``files`` (in order, as
    ``kubectl apply`` would) and name the runtime each InferenceService would get from them."""
    runtimes: list[Runtime] = []
    places: list[tuple[int, int]] = []
    services: list[tuple[tuple[int, int], dict[str, Any]]] = []
    for f, documents in enumerate(files):
        for d, doc in enumerate(documents):
            if not isinstance(doc, dict):
                continue
            if doc.get("kind") in RUNTIME_KINDS:
                runtimes.append(Runtime.from_document(doc))
                places.append((f, d))
            elif doc.get("kind") == "InferenceService":
                services.append(((f, d), doc))
    report = KServeReport({}, {})
    for index, problems in runtime_problems(runtimes).items():
        report.problems.setdefault(places[index], []).extend(problems)
    for place, doc in services:
        request = model_request(doc)
        if request is None:
            report.notes.setdefault(place, []).append(
                f"{doc['metadata']['name']}: custom container predictor (no runtime is selected)"
            )
            continue
        if not runtimes:
            report.notes.setdefault(place, []).append(
                f"{request.isvc}: format {request.format_label}, protocol {request.protocol}: "
                "runtime not checked (no ServingRuntime or ClusterServingRuntime among the files)"
            )
            continue
        selection = select_runtime(request, runtimes)
        if selection.ok:
            assert selection.runtime is not None
            report.notes.setdefault(place, []).append(
                f"{request.isvc}: runtime {selection.runtime.label} ({selection.reason})"
            )
        else:
            report.problems.setdefault(place, []).append(
                f"{selection.reason}: KServe would not deploy {request.isvc!r}"
            )
    return report
