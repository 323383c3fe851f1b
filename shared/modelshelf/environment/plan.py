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
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

#: Distributions the server runs on; they and their dependencies are never replaced.
SERVER_ROOTS = ("modelshelf", "seldon-core", "mlflow", "mlflow-skinny")
#: modelshelf extras the MLflow server uses (their packages count as the server's own).
SERVER_EXTRAS = ("mlflow", "s3", "gcs")

SATISFIED, INSTALL, CONFLICT, IGNORED = "satisfied", "install", "conflict", "ignored"

#: Distributions that install the same importable package under different names: a requirement
#: on one is met by another that is installed, and one of a group is never installed beside
#: another (both would write the same folder). When a model asks for several of a group, the
#: first listed here is the one installed (``xgboost-cpu``: no 300 MB of CUDA libraries).
EQUIVALENTS = (
    ("xgboost-cpu", "xgboost"),
    ("mlflow-skinny", "mlflow"),
    ("scikit-learn", "sklearn"),
    ("tensorflow-cpu", "tensorflow"),
    ("psycopg2-binary", "psycopg2"),
    (
        "opencv-python-headless",
        "opencv-python",
        "opencv-contrib-python-headless",
        "opencv-contrib-python",
    ),
)
_GROUP = {name: group for group in EQUIVALENTS for name in group}
#: PyPI names that are placeholders for another distribution (``pip install sklearn`` fails): a
#: requirement on the key is a requirement on the value, at any version.
PLACEHOLDERS = {"sklearn": "scikit-learn"}


@dataclass(frozen=True)
class Decision:
    """What happens to one requirement, and why (one line of the report)."""

    requirement: str
    action: str
    detail: str
    #: the line given to the installer when it is not ``requirement`` (a placeholder's real
    #: name, or the name of the equivalent already in the env folder)
    install: str | None = None


@dataclass
class InstallPlan:
    decisions: list[Decision] = field(default_factory=list)
    python_warning: str | None = None
    #: protected distribution (canonical name) -> installed version.
    protected: dict[str, str] = field(default_factory=dict)
    #: every distribution of the server (canonical name) -> version, pinned while resolving:
    #: none of them is ever installed again into the env folder.
    server: dict[str, str] = field(default_factory=dict)

    def of(self, action: str) -> list[Decision]:
        return [d for d in self.decisions if d.action == action]

    @property
    def to_install(self) -> list[str]:
        return [d.install or d.requirement for d in self.of(INSTALL)]


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
    conda_unmapped: Sequence[str] = (),
) -> InstallPlan:
    """Decide, for each requirement, whether it is satisfied, to install, a conflict, or ignored.
    ``conda_unmapped`` are conda packages not known to be on PyPI: met by what is installed,
    else ignored, never installed."""
    base = list(base_paths if base_paths is not None else sys.path)
    base = [p for p in base if Path(p) != env_dir]
    server_dists = distributions(base)
    installed = {**server_dists, **distributions([str(env_dir)])}
    plan = InstallPlan(python_warning=_python_warning(python_version))
    lines = list(dict.fromkeys(requirements))
    unmapped = [line for line in dict.fromkeys(conda_unmapped) if line not in lines]
    asked = [(line, True) for line in lines] + [(line, False) for line in unmapped]
    decisions = [_decide(line, installed, server_dists, {}, pypi) for line, pypi in asked]
    if any(d.action in (INSTALL, CONFLICT) for d in decisions):
        # The server's own packages matter only for what is not met already; walking their
        # dependency closure is most of an idempotent run's time, so it is skipped then.
        plan.protected = server_packages(server_dists)
        plan.server = {name: d.version for name, d in server_dists.items() if d.version}
        decisions = [
            _decide(line, installed, server_dists, plan.protected, pypi) for line, pypi in asked
        ]
    plan.decisions = _one_of_each_group(decisions)
    return plan


def _decide(
    line: str,
    installed: dict[str, importlib.metadata.Distribution],
    server: dict[str, importlib.metadata.Distribution],
    protected: dict[str, str],
    pypi: bool = True,
) -> Decision:
    try:
        req = Requirement(line)
    except InvalidRequirement:
        return Decision(line, INSTALL, "not a name and version (passed to the installer as is)")
    if req.marker is not None and not req.marker.evaluate():
        return Decision(line, IGNORED, f"marker {req.marker} does not apply here")
    asked = canonicalize_name(req.name)
    placeholder = PLACEHOLDERS.get(asked)
    if placeholder is not None:
        req = _renamed(req, placeholder, keep_version=False)
    key = _installed_as(canonicalize_name(req.name), installed)
    if key is None:
        if not pypi:
            return Decision(
                line,
                IGNORED,
                "conda package not known to be on PyPI under this name: not installed from "
                "PyPI (a placeholder or someone else's package there)",
            )
        if placeholder is not None:
            return Decision(line, INSTALL, f"not installed; {asked} is {placeholder}", str(req))
        return Decision(line, INSTALL, "not installed")
    dist = installed[key]
    have = dist.version
    label = f"{_name(dist, key)} {have}"
    if key != asked:
        label += f" (the same package as {asked})"
    if req.url is None and _contains(req, have):
        return Decision(line, SATISFIED, f"{label} installed")
    if req.url is not None:
        return Decision(line, SATISFIED, f"{label} installed (URL not fetched)")
    if key in protected:
        return Decision(
            line,
            CONFLICT,
            f"the server runs on {label}; kept (MODELSHELF_ENV_STRICT=1 makes this fatal)",
        )
    if key in server:
        return Decision(
            line,
            CONFLICT,
            f"the server has {label}; kept: what the server has is never installed again into "
            "the env folder (MODELSHELF_ENV_STRICT=1 makes this fatal)",
        )
    install = str(_renamed(req, key)) if key != canonicalize_name(req.name) else None
    if placeholder is not None and install is None:
        install = str(req)
    return Decision(
        line, INSTALL, f"{label} in the env folder; the model's version replaces it", install
    )


def same_package(name: str) -> tuple[str, ...]:
    """The canonical names of the distributions that install the same package as ``name``
    (``name`` first)."""
    key = canonicalize_name(name)
    return (key, *(other for other in _GROUP.get(key, ()) if other != key))


def _installed_as(key: str, installed: dict[str, importlib.metadata.Distribution]) -> str | None:
    """``key`` when installed, else the first installed distribution of the same package."""
    if key in installed:
        return key
    return next((other for other in _GROUP.get(key, ()) if other in installed), None)


def _name(dist: importlib.metadata.Distribution, key: str) -> str:
    return key if getattr(dist, "_normalized_name", None) else (dist.metadata["Name"] or key)


def _renamed(req: Requirement, name: str, keep_version: bool = True) -> Requirement:
    """``req`` asking for distribution ``name`` instead (extras and marker kept)."""
    renamed = Requirement(str(req))
    renamed.name = name
    if not keep_version:
        renamed.specifier = SpecifierSet()
        renamed.url = None
    return renamed


def _one_of_each_group(decisions: list[Decision]) -> list[Decision]:
    """Of several equivalent distributions to install, only the group's preferred one is: the
    others are met by it (both would write the same package folder)."""
    chosen: dict[tuple[str, ...], Decision] = {}
    for decision in decisions:
        group = _group_of(decision)
        if decision.action != INSTALL or group is None:
            continue
        best = chosen.get(group)
        if best is None or _rank(decision, group) < _rank(best, group):
            chosen[group] = decision
    out = []
    for decision in decisions:
        group = _group_of(decision)
        best = chosen.get(group) if group is not None else None
        if decision.action == INSTALL and best is not None and best is not decision:
            shown = best.install or best.requirement
            decision = Decision(
                decision.requirement, SATISFIED, f"by {shown}, installed instead (the same package)"
            )
        out.append(decision)
    return out


def _installed_name(decision: Decision) -> str | None:
    try:
        return canonicalize_name(Requirement(decision.install or decision.requirement).name)
    except InvalidRequirement:
        return None


def _group_of(decision: Decision) -> tuple[str, ...] | None:
    return _GROUP.get(_installed_name(decision) or "")


def _rank(decision: Decision, group: tuple[str, ...]) -> int:
    return group.index(_installed_name(decision) or "")


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
