"""The environment builder run before an MLflow server starts (``before-run``,
``modelshelf env``).

It reads what the model needs (``modelshelf.environment.sources``), decides what is missing
(``plan``), installs only that into a separate writable folder (``installers``; or builds a conda
environment, ``conda``), and prints a short report. The server then calls ``activate()`` to put
that folder first on its import path. The server's own packages are never changed, so the image can
stay read-only and run as non-root.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from modelshelf.environment.errors import EnvironmentBuildError, EnvironmentSpecError
from modelshelf.environment.installers import (
    TRUE_WORDS,
    Resolved,
    install,
    installer_options,
    resolve,
)
from modelshelf.environment.plan import (
    CONFLICT,
    IGNORED,
    INSTALL,
    SATISFIED,
    InstallPlan,
    make_plan,
)
from modelshelf.environment.sources import ModelRequirements, read_model_requirements

__all__ = [
    "FAILURE_MARK",
    "EnvironmentBuildError",
    "EnvironmentSpecError",
    "Report",
    "Settings",
    "activate",
    "build",
    "check_before_run",
    "record_before_run",
    "unmet_requirements",
]

#: The file in the environment folder that says ``before-run`` did not succeed (its error), so
#: that a server started anyway refuses to load instead of reporting ready and failing each
#: prediction with an import error.
FAILURE_MARK = "before-run-failed"

_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Settings:
    """The builder's knobs, from the container's environment variables."""

    env_dir: Path
    wheels_dir: Path
    strict: bool = False
    offline: bool = False
    installer: str = "auto"  #: auto (uv when present), pip, uv
    manager: str = "pip"  #: pip, or conda for the conda variant
    model_indexes: bool = True  #: the index options a model's requirement files carry are used
    allow_sdist: bool = False  #: source distributions may be built (else wheels only)

    @classmethod
    def from_environ(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        manager = env.get("MODELSHELF_ENV_MANAGER", "pip").strip().lower() or "pip"
        if manager not in ("pip", "conda"):
            raise EnvironmentBuildError(
                [], f"MODELSHELF_ENV_MANAGER={manager!r}: expected pip or conda"
            )
        return cls(
            env_dir=default_env_dir(env),
            wheels_dir=Path(env.get("MODELSHELF_WHEELS_DIR", "/whl")),
            strict=env.get("MODELSHELF_ENV_STRICT", "").strip().lower() in TRUE_WORDS,
            offline=env.get("MODELSHELF_ENV_OFFLINE", "").strip().lower() in TRUE_WORDS,
            installer=env.get("MODELSHELF_ENV_INSTALLER", "auto").strip().lower() or "auto",
            manager=manager,
            model_indexes=env.get("MODELSHELF_ENV_MODEL_INDEXES", "").strip().lower() not in _FALSE,
            allow_sdist=env.get("MODELSHELF_ENV_ALLOW_SDIST", "").strip().lower() in TRUE_WORDS,
        )


def default_env_dir(environ: dict[str, str] | os._Environ[str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    configured = env.get("MODELSHELF_ENV_DIR")
    return Path(configured) if configured else Path(tempfile.gettempdir()) / "modelshelf-env"


@dataclass
class Report:
    """What the builder found and did; ``lines()`` is what ``before-run`` prints."""

    model_dir: Path
    requirements: ModelRequirements
    plan: InstallPlan
    env_dir: Path
    installer: str = ""
    installed: list[Resolved] = field(default_factory=list)
    seconds: float = 0.0
    conda_prefix: Path | None = None
    dropped_options: tuple[str, ...] = ()  #: the model's index options left out

    def lines(self) -> list[str]:
        req = self.requirements
        out = [f"model environment of {self.model_dir} (from {req.source})"]
        if self.plan.python_warning:
            out.append(f"  WARNING: {self.plan.python_warning}")
        for decision in self.plan.of(SATISFIED):
            out.append(f"  satisfied  {decision.requirement}  ({decision.detail})")
        for item in self.installed:
            out.append(f"  installed  {item.pin}  (into {self.env_dir}, by {self.installer})")
        for decision in self.plan.of(CONFLICT):
            out.append(f"  conflict   {decision.requirement}  ({decision.detail})")
        for decision in self.plan.of(IGNORED):
            out.append(f"  ignored    {decision.requirement}  ({decision.detail})")
        for package in req.conda_only:
            out.append(f"  ignored    {package}  (conda package with no pip counterpart)")
        if self.dropped_options:
            out.append(
                f"  ignored    {' '.join(self.dropped_options)}  (the model's index options; "
                "MODELSHELF_ENV_MODEL_INDEXES=0)"
            )
        if self.conda_prefix is not None:
            out.append(f"  conda environment {self.conda_prefix}")
        counts = {a: len(self.plan.of(a)) for a in (SATISFIED, CONFLICT, IGNORED)}
        out.append(
            f"  {counts[SATISFIED]} satisfied, {len(self.installed)} installed, "
            f"{counts[CONFLICT]} conflicts, {counts[IGNORED] + len(req.conda_only)} ignored "
            f"in {self.seconds:.2f} s"
        )
        return out


def build(model_dir: Path, settings: Settings | None = None) -> Report:
    """Make the model's requirements importable by the server; the report of what was done."""
    settings = settings or Settings.from_environ()
    started = time.perf_counter()
    if settings.manager == "conda":
        from modelshelf.environment import conda

        return conda.build(model_dir, settings, started)
    requirements = read_model_requirements(model_dir, prefer="pip")
    plan = make_plan(
        requirements.requirements,
        requirements.python_version,
        settings.env_dir,
        conda_unmapped=requirements.conda_unmapped,
    )
    report = Report(model_dir, requirements, plan, settings.env_dir)
    conflicts = plan.of(CONFLICT)
    if conflicts and settings.strict:
        raise EnvironmentBuildError(
            [d.requirement for d in conflicts],
            "the server's own packages would have to change (MODELSHELF_ENV_STRICT=1): "
            + "; ".join(d.detail.split(";")[0] for d in conflicts),
        )
    options = installer_options(
        requirements.pip_options,
        settings.wheels_dir,
        settings.offline,
        settings.installer if plan.of(INSTALL) else "pip",  # no installer to look for then
        model_indexes=settings.model_indexes,
        allow_sdist=settings.allow_sdist,
    )
    report.dropped_options = options.dropped
    if plan.of(INSTALL):
        if not settings.model_indexes:
            _refuse_direct_urls(plan.to_install)
        report.installer = options.installer
        report.installed = resolve(plan.to_install, plan.server, settings.env_dir, options)
        install(report.installed, settings.env_dir, options, plan.to_install)
    report.seconds = time.perf_counter() - started
    return report


def _refuse_direct_urls(requirements: list[str]) -> None:
    """With the model's own indexes turned off, a ``NAME @ URL`` line is one too."""
    direct = [line for line in requirements if " @ " in line or "://" in line]
    if direct:
        raise EnvironmentBuildError(
            direct,
            "a direct URL is the model's own package source, and MODELSHELF_ENV_MODEL_INDEXES=0 "
            "allows only the indexes the server is given (PIP_INDEX_URL…, the wheels folder)",
        )


def unmet_requirements(model_dir: Path, env_dir: Path | None = None) -> list[str]:
    """What this process lacks of the model's requirements (and a Python version warning), one
    line each; ``[]`` when everything is met. The server logs these at load: MLflow's own check
    maps every installed file to its package, which costs a worker about 0.4 s CPU."""
    requirements = read_model_requirements(model_dir, prefer="pip")
    folder = env_dir if env_dir is not None else default_env_dir()
    plan = make_plan(requirements.requirements, requirements.python_version, folder)
    lines = [plan.python_warning] if plan.python_warning else []
    lines.extend(
        f"the model requires {d.requirement}: {d.detail}"
        for d in plan.decisions
        if d.action in (INSTALL, CONFLICT)
    )
    return lines


def record_before_run(env_dir: Path, model_uri: str, failure: str | None) -> None:
    """Leave ``FAILURE_MARK`` in ``env_dir`` for ``model_uri`` with ``failure`` (``before-run``
    starting, or its error), or remove it (``None``: it succeeded).

    The mark is about the folder's last ``before-run`` and names its model (by a hash of the
    URI, so no secret is written): an environment folder outlives a pod's containers and can be
    shared, and a failure for one model must not stop another from loading.
    """
    mark = env_dir / FAILURE_MARK
    if failure is None:
        mark.unlink(missing_ok=True)
        return
    env_dir.mkdir(parents=True, exist_ok=True)
    text = failure.rstrip("\n")
    mark.write_text(f"{_MARK_MODEL}{_model_key(model_uri)}\n{text}\n")


def check_before_run(model_uri: str, env_dir: Path | None = None) -> None:
    """Raise ``ModelLoadError`` for ``model_uri`` when ``before-run`` left its failure mark for
    that model."""
    from modelshelf.errors import ModelLoadError

    mark = (env_dir if env_dir is not None else default_env_dir()) / FAILURE_MARK
    try:
        first, _, failure = mark.read_text().partition("\n")
    except FileNotFoundError:
        return
    if not _mark_concerns(model_uri, first):
        return  # another model's before-run failed
    raise ModelLoadError(
        model_uri,
        f"before-run (modelshelf env) did not succeed, so the model's packages are not all "
        f"installed: {failure.strip() or first} (from {mark}; it goes when before-run succeeds)",
    )


_MARK_MODEL = "model sha256: "


def _model_key(model_uri: str) -> str:
    return hashlib.sha256(model_uri.encode()).hexdigest()


def _mark_concerns(model_uri: str, first_line: str) -> bool:
    """Whether a failure mark is about ``model_uri`` (a mark naming no model concerns all)."""
    if not first_line.startswith(_MARK_MODEL):
        return True
    return first_line[len(_MARK_MODEL) :] == _model_key(model_uri)


def activate(env_dir: str | Path | None = None) -> Path | None:
    """Put the environment folder first on ``sys.path`` (and on ``PYTHONPATH`` for child
    processes) when it exists; the folder, or ``None``."""
    folder = Path(env_dir) if env_dir else default_env_dir()
    if not folder.is_dir():
        return None
    text = str(folder)
    if text not in sys.path:
        sys.path.insert(0, text)
    current = os.environ.get("PYTHONPATH", "")
    if text not in current.split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (text, current) if p)
    return folder
