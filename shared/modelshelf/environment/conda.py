"""The conda variant (``MODELSHELF_ENV_MANAGER=conda``): one conda environment per model spec.

The spec is the model's ``conda.yaml`` with the server's own requirements added to its ``pip:``
list (so seldon-core and modelshelf run inside it). The environment's folder is named by the
spec's hash: a restart, or another model with the same spec, reuses it instead of solving again.
``ENV_DIR/conda-prefix`` names the environment for the variant's ``run`` script.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from modelshelf.environment.errors import EnvironmentBuildError
from modelshelf.environment.plan import InstallPlan
from modelshelf.environment.sources import (
    ModelRequirements,
    conda_package_name,
    read_model_requirements,
)

if TYPE_CHECKING:
    from modelshelf.environment import Report, Settings

EXECUTABLES = ("micromamba", "mamba", "conda")
PREFIX_FILE = "conda-prefix"
COMPLETE_MARK = ".modelshelf-complete"
SPEC_FILE = "modelshelf-spec.yaml"


def find_executable() -> str:
    """``MODELSHELF_CONDA_EXE``, else the first of micromamba, mamba, conda on ``PATH``."""
    configured = os.environ.get("MODELSHELF_CONDA_EXE")
    if configured:
        found = shutil.which(configured)
        if found is None:
            raise EnvironmentBuildError(
                [], f"MODELSHELF_CONDA_EXE={configured}: no such executable"
            )
        return found
    for name in EXECUTABLES:
        found = shutil.which(name)
        if found:
            return found
    raise EnvironmentBuildError(
        [],
        "MODELSHELF_ENV_MANAGER=conda, but no micromamba, mamba or conda on PATH "
        "(or set MODELSHELF_CONDA_EXE)",
    )


def server_requirements() -> list[str]:
    """What the server itself needs inside the model's environment, pinned to this image's."""
    pins = ["setuptools<81"]
    for name in ("seldon-core", "mlflow-skinny", "modelshelf"):
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return pins


def environment_spec(requirements: ModelRequirements, wheels_dir: Path) -> dict[str, Any]:
    """The model's conda spec plus the server's requirements in its ``pip:`` list."""
    if requirements.conda_file is not None:
        spec = yaml.safe_load(requirements.conda_file.read_text()) or {}
    else:
        python = requirements.python_version or f"{sys.version_info.major}.{sys.version_info.minor}"
        spec = {
            "dependencies": [f"python={python}", "pip", {"pip": list(requirements.requirements)}]
        }
    dependencies = list(spec.get("dependencies") or [])
    pip_section = next((d for d in dependencies if isinstance(d, dict) and "pip" in d), None)
    if pip_section is None:
        pip_section = {"pip": []}
        dependencies.append(pip_section)
    pip_lines = list(pip_section["pip"] or [])
    if wheels_dir.is_dir():
        pip_lines.insert(0, f"--find-links {wheels_dir}")
    pip_lines += [line for line in server_requirements() if line not in pip_lines]
    pip_section["pip"] = pip_lines
    if not any(isinstance(d, str) and conda_package_name(d) == "pip" for d in dependencies):
        dependencies.insert(0, "pip")  # conda's pip, which installs the pip: list
    spec["dependencies"] = dependencies
    spec.pop("prefix", None)
    spec.pop("name", None)
    return spec


def create_command(executable: str, prefix: Path, spec_file: Path) -> list[str]:
    """The command that creates the environment (micromamba's syntax differs from conda's)."""
    if Path(executable).name.startswith("micromamba"):
        return [executable, "create", "--yes", "--prefix", str(prefix), "--file", str(spec_file)]
    return [executable, "env", "create", "--prefix", str(prefix), "--file", str(spec_file)]


def build(model_dir: Path, settings: Settings, started: float) -> Report:
    from modelshelf.environment import Report

    requirements = read_model_requirements(model_dir, prefer="conda")
    spec = environment_spec(requirements, settings.wheels_dir)
    text = yaml.safe_dump(spec, sort_keys=False)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    prefix = settings.env_dir / "conda" / digest
    report = Report(model_dir, requirements, InstallPlan(), settings.env_dir, installer="conda")
    if not (prefix / COMPLETE_MARK).is_file():
        executable = find_executable()
        report.installer = Path(executable).name
        shutil.rmtree(prefix, ignore_errors=True)  # a half-made environment from a killed run
        prefix.parent.mkdir(parents=True, exist_ok=True)
        spec_file = prefix.parent / f"{digest}.yaml"
        spec_file.write_text(text)
        command = create_command(executable, prefix, spec_file)
        try:
            result = subprocess.run(command, capture_output=True, text=True, check=False)
        except OSError as exc:  # not executable, or gone since it was found
            raise EnvironmentBuildError(
                [str(requirements.conda_file or requirements.source)],
                f"cannot run {executable}: {exc.strerror or exc}",
            ) from exc
        if result.returncode != 0:
            shutil.rmtree(prefix, ignore_errors=True)
            output = (result.stderr.strip() or result.stdout.strip()).splitlines()[-25:]
            raise EnvironmentBuildError(
                [str(requirements.conda_file or requirements.source)],
                f"{' '.join(command)} failed (exit {result.returncode}):\n" + "\n".join(output),
            )
        prefix.mkdir(parents=True, exist_ok=True)
        (prefix / SPEC_FILE).write_text(text)
        (prefix / COMPLETE_MARK).write_text(digest)
    else:
        report.installer = "conda (reused)"
    settings.env_dir.mkdir(parents=True, exist_ok=True)
    (settings.env_dir / PREFIX_FILE).write_text(str(prefix))
    report.conda_prefix = prefix
    report.seconds = time.perf_counter() - started
    return report
