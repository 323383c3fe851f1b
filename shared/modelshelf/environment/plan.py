"""The install plan: each of the model's requirements against what the running interpreter has.

Satisfied requirements are skipped; missing or unsatisfied ones are installed into the separate
environment folder; the server's own packages (seldon-core, mlflow, modelshelf and everything they
depend on) are never changed: a model that asks for another version of one gets a ``conflict`` line.
"""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

#: Distributions the server runs on; they and their dependencies are never replaced.
SERVER_ROOTS = ("modelshelf", "seldon-core", "mlflow", "mlflow-skinny")
#: modelshelf extras the MLflow server uses (their packages count as the server's own).
SERVER_EXTRAS = ("mlflow", "s3", "gcs")

SATISFIED, INSTALL, CONFLICT, IGNORED = "satisfied", "install", "conflict", "ignored"

#: A model's requirement on the key is met by the value when only the value is installed: the
#: MLflow image ships mlflow-skinny (same package and versions, without the tracking server's
#: dependencies), while every model logged with full mlflow lists ``mlflow==X``.
SERVED_BY = {"mlflow": "mlflow-skinny"}


@dataclass(frozen=True)
class Decision:
    """What happens to one requirement, and why (one line of the report)."""

    requirement: str
    action: str
    detail: str


@dataclass
class InstallPlan:
    decisions: list[Decision] = field(default_factory=list)
    python_warning: str | None = None
    #: protected distribution (canonical name) -> installed version, pinned while resolving.
    protected: dict[str, str] = field(default_factory=dict)

    def of(self, action: str) -> list[Decision]:
        return [d for d in self.decisions if d.action == action]

    @property
    def to_install(self) -> list[str]:
        return [d.requirement for d in self.of(INSTALL)]


def distributions(paths: Sequence[str]) -> dict[str, importlib.metadata.Distribution]:
    """Canonical name -> distribution on ``paths``; the first wins, as it would on ``sys.path``.
    Names come from the ``.dist-info`` folder names where possible: parsing every METADATA file
    would cost most of an idempotent run."""
    found: dict[str, importlib.metadata.Distribution] = {}
    for dist in importlib.metadata.distributions(path=list(paths)):
        name = getattr(dist, "_normalized_name", None) or dist.metadata["Name"]
        if name:
            found.setdefault(canonicalize_name(name), dist)
    return found


def server_packages(dists: dict[str, importlib.metadata.Distribution]) -> dict[str, str]:
    """The server's own distributions: the roots and everything they need, with versions."""
    protected: dict[str, str] = {}
    queue: list[tuple[str, tuple[str, ...]]] = [
        (root, SERVER_EXTRAS if root == "modelshelf" else ()) for root in SERVER_ROOTS
    ]
    while queue:
        name, extras = queue.pop()
        key = canonicalize_name(name)
        dist = dists.get(key)
        if dist is None or (key in protected and not extras):
            continue
        metadata = dist.metadata  # parsed once: version and requirements
        protected[key] = metadata["Version"]
        for line in metadata.get_all("Requires-Dist") or []:
            try:
                req = Requirement(line)
            except InvalidRequirement:
                continue
            if _applies(req, extras):
                queue.append((req.name, tuple(req.extras)))
    return protected


def _applies(req: Requirement, extras: Iterable[str]) -> bool:
    if req.marker is None:
        return True
    env = default_environment()
    return any(req.marker.evaluate({**env, "extra": e}) for e in ("", *extras))


def make_plan(
    requirements: Sequence[str],
    python_version: str | None,
    env_dir: Path,
    base_paths: Sequence[str] | None = None,
) -> InstallPlan:
    """Decide, for each requirement, whether it is satisfied, to install, a conflict, or ignored."""
    base = list(base_paths if base_paths is not None else sys.path)
    base = [p for p in base if Path(p) != env_dir]
    server_dists = distributions(base)
    installed = {**server_dists, **distributions([str(env_dir)])}
    plan = InstallPlan(python_warning=_python_warning(python_version))
    lines = list(dict.fromkeys(requirements))
    satisfied = [_satisfied(line, installed) for line in lines]
    if not all(satisfied):
        # The server's own packages matter only for what is not met already; walking their
        # dependency closure is most of an idempotent run's time, so it is skipped then.
        plan.protected = server_packages(server_dists)
    for line, decision in zip(lines, satisfied, strict=True):
        plan.decisions.append(decision or _decide(line, installed, plan.protected))
    return plan


def _satisfied(line: str, installed: dict[str, importlib.metadata.Distribution]) -> Decision | None:
    """The decision for a requirement that needs nothing (met, or a marker that does not apply);
    ``None`` when it must be installed or is a conflict."""
    decision = _decide(line, installed, {})
    return decision if decision.action in (SATISFIED, IGNORED) else None


def _decide(
    line: str, installed: dict[str, importlib.metadata.Distribution], protected: dict[str, str]
) -> Decision:
    try:
        req = Requirement(line)
    except InvalidRequirement:
        return Decision(line, INSTALL, "not a name and version (passed to the installer as is)")
    if req.marker is not None and not req.marker.evaluate():
        return Decision(line, IGNORED, f"marker {req.marker} does not apply here")
    key = canonicalize_name(req.name)
    if key not in installed and SERVED_BY.get(key) in installed:
        key = SERVED_BY[key]
    dist = installed.get(key)
    have = dist.version if dist is not None else None
    if have is not None and req.url is None and _contains(req, have):
        return Decision(line, SATISFIED, f"{req.name} {have} installed")
    if have is not None and req.url is not None:
        return Decision(line, SATISFIED, f"{req.name} {have} installed (URL not fetched)")
    if key in protected:
        return Decision(
            line,
            CONFLICT,
            f"the server runs on {req.name} {protected[key]}; kept (MODELSHELF_ENV_STRICT=1 "
            "makes this fatal)",
        )
    if have is not None:
        return Decision(
            line,
            INSTALL,
            f"{req.name} {have} installed; the model's version goes in the env folder",
        )
    return Decision(line, INSTALL, "not installed")


def _contains(req: Requirement, version: str) -> bool:
    try:
        return req.specifier.contains(Version(version), prereleases=True)
    except InvalidVersion:
        return False


def _python_warning(wanted: str | None) -> str | None:
    if not wanted:
        return None
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    parts = wanted.strip().lstrip("=<>!~ ").split(".")
    if len(parts) < 2 or f"{parts[0]}.{parts[1]}" == running:
        return None
    return (
        f"the model was built with Python {wanted}; the server runs Python "
        f"{sys.version.split()[0]}: packages with compiled code may not have wheels for it, and "
        "pickles may not load"
    )
