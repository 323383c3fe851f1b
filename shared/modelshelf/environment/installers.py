"""Running pip (or uv) so that the model's packages land in the environment folder only.

Two steps, so that the server's own packages can never be touched:

1. ``pip install --dry-run --report`` resolves the missing requirements *against the running
   interpreter* (the environment folder on its path, the server's packages pinned by a constraints
   file): pip keeps what is installed and lists only what has to be added. With uv, ``uv pip
   install --dry-run`` does the same in tens of milliseconds instead of pip's 1-3 s (it sees the
   interpreter's site-packages, not the environment folder: a dependency already there is
   installed again, at the version the resolver picks).
2. Exactly those files are installed with ``--target ENV_DIR --no-deps`` (by uv when present).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

from modelshelf.environment.errors import EnvironmentBuildError


@dataclass(frozen=True)
class Resolved:
    """One distribution the resolver chose to add."""

    name: str
    version: str
    url: str

    @property
    def pin(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class InstallerOptions:
    index_options: tuple[str, ...]  #: --index-url / --find-links / --no-index …
    installer: str  #: "pip" or "uv"


def installer_options(
    model_options: Sequence[str], wheels_dir: Path | None, offline: bool, installer: str
) -> InstallerOptions:
    """pip options from the model's requirement files, the wheels folder and the offline flag."""
    options = list(model_options)
    if wheels_dir is not None and wheels_dir.is_dir():
        options += ["--find-links", str(wheels_dir)]
    if offline and "--no-index" not in options:
        options.append("--no-index")
    return InstallerOptions(tuple(options), choose_installer(installer))


def choose_installer(wanted: str) -> str:
    """``uv`` when asked for, or when ``auto`` and a ``uv`` executable is found; else ``pip``."""
    if wanted not in ("auto", "pip", "uv"):
        raise EnvironmentBuildError(
            [], f"MODELSHELF_ENV_INSTALLER={wanted!r}: expected auto, pip or uv"
        )
    if wanted == "uv" and _uv() is None:
        raise EnvironmentBuildError([], "MODELSHELF_ENV_INSTALLER=uv but no uv executable found")
    if wanted == "auto":
        return "uv" if _uv() is not None else "pip"
    return wanted


def _uv() -> str | None:
    beside = Path(sys.executable).parent / "uv"
    return str(beside) if beside.is_file() else shutil.which("uv")


def resolve(
    requirements: Sequence[str],
    protected: dict[str, str],
    env_dir: Path,
    options: InstallerOptions,
) -> list[Resolved]:
    """What has to be added for ``requirements``, resolved against the running interpreter."""
    with tempfile.TemporaryDirectory(prefix="modelshelf-resolve-") as tmp:
        constraints = Path(tmp) / "server-constraints.txt"
        constraints.write_text("".join(f"{n}=={v}\n" for n, v in sorted(protected.items())))
        if options.installer == "uv":
            command = [
                _uv() or "uv", "pip", "install", "--dry-run", "--python", sys.executable,
                "--constraint", str(constraints), *options.index_options, *requirements,
            ]  # fmt: skip
            found = _uv_additions(_run(command, requirements, env_dir))
        else:
            report = Path(tmp) / "report.json"
            command = [
                sys.executable, "-m", "pip", "install", "--dry-run",
                "--disable-pip-version-check", "--report", str(report),
                "--constraint", str(constraints), *options.index_options, *requirements,
            ]  # fmt: skip
            _run(command, requirements, env_dir)
            found = _pip_additions(json.loads(report.read_text()))
    for item in found:
        if canonicalize_name(item.name) in protected:
            raise EnvironmentBuildError(
                list(requirements),
                f"resolving would replace the server's {item.name} with {item.version}",
            )
    return found


def _pip_additions(report: dict) -> list[Resolved]:
    """The distributions pip's ``--report`` would install (with the file it chose)."""
    added = []
    for item in report.get("install", []):
        meta = item["metadata"]
        name, version = meta["name"], meta["version"]
        url = (item.get("download_info") or {}).get("url") or f"{name}=={version}"
        added.append(Resolved(name, version, url))
    return added


def _uv_additions(output: str) -> list[Resolved]:
    """The `` + NAME==VERSION`` lines of ``uv pip install --dry-run``: what it would install."""
    added = []
    for line in output.splitlines():
        if line.startswith(" + ") and "==" in line:
            name, _, version = line[3:].strip().partition("==")
            added.append(Resolved(name, version, f"{name}=={version}"))
    return added


def install(
    resolved: Sequence[Resolved], env_dir: Path, options: InstallerOptions, asked: Sequence[str]
) -> None:
    """Put exactly ``resolved`` into ``env_dir`` (no dependency resolution at this step)."""
    if not resolved:
        return
    env_dir.mkdir(parents=True, exist_ok=True)
    _remove_older_metadata(env_dir, {canonicalize_name(r.name) for r in resolved})
    targets = [r.url for r in resolved]
    if options.installer == "uv":
        command = [
            _uv() or "uv", "pip", "install", "--python", sys.executable, "--target",
            str(env_dir), "--no-deps", "--quiet", *options.index_options, *targets,
        ]  # fmt: skip
    else:
        command = [
            sys.executable, "-m", "pip", "install", "--target", str(env_dir), "--upgrade",
            "--no-deps", "--quiet", "--disable-pip-version-check", "--no-warn-script-location",
            *options.index_options, *targets,
        ]  # fmt: skip
    _run(command, asked, env_dir)


def _remove_older_metadata(env_dir: Path, names: set[str]) -> None:
    """A version being replaced leaves its ``.dist-info`` behind unless removed first."""
    for info in env_dir.glob("*.dist-info"):
        name = info.name[: -len(".dist-info")].rsplit("-", 1)[0]
        if canonicalize_name(name) in names:
            shutil.rmtree(info)


def _run(command: Sequence[str], asked: Sequence[str], env_dir: Path) -> str:
    """Run the installer; its standard output and error (uv reports on standard error)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(env_dir), env.get("PYTHONPATH", "")) if p)
    env.setdefault("PIP_NO_INPUT", "1")
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        # pip explains a resolver conflict on stdout and names the failure on stderr.
        output = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
        message = "\n".join(_without_progress(output)[-25:])
        tool = "uv" if Path(command[0]).name == "uv" else "pip"
        raise EnvironmentBuildError(
            list(asked), f"{tool} failed (exit {result.returncode}):\n{message}"
        )
    return result.stdout + result.stderr


def _without_progress(lines: list[str]) -> list[str]:
    noise = ("Looking in links", "Looking in indexes", "Processing ", "Collecting ", "Requirement ")
    return [line for line in lines if not line.lstrip().startswith(noise)]
