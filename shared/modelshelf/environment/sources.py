"""What a model folder says it needs: the MLmodel ``env``, ``python_env.yaml``, ``conda.yaml``,
``requirements.txt``.

Read without importing MLflow (the before-run step must be quick). The result is a flat list of
pip requirement lines plus the pip options found among them (``--index-url`` in a ``conda.yaml``
pip section is kept, not dropped), the Python version the model was built with, and the conda
packages that have no pip counterpart (reported, not installed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from modelshelf.environment.errors import EnvironmentSpecError

MLMODEL = "MLmodel"
PYTHON_ENV = "python_env.yaml"
CONDA_ENV = "conda.yaml"
REQUIREMENTS = "requirements.txt"

#: pip options a requirements list may carry, and whether each takes a value.
PIP_OPTIONS = {
    "--index-url": True,
    "-i": True,
    "--extra-index-url": True,
    "--find-links": True,
    "-f": True,
    "--trusted-host": True,
    "--no-index": False,
    "--pre": False,
    "--prefer-binary": False,
}

#: Conda package names whose PyPI distribution is called differently.
CONDA_TO_PIP = {
    "py-xgboost": "xgboost",
    "py-xgboost-cpu": "xgboost",
    "pytorch": "torch",
    "pytorch-cpu": "torch",
    "tensorflow-cpu": "tensorflow",
    "py-opencv": "opencv-python",
    "opencv": "opencv-python",
    "pillow-simd": "pillow",
    "msgpack-python": "msgpack",
}

#: Conda packages that are not Python distributions (compilers, system and GPU libraries).
CONDA_ONLY = {
    "python",
    "pip",
    "setuptools",
    "wheel",
    "cudatoolkit",
    "cudnn",
    "cuda",
    "nccl",
    "mkl",
    "mkl-service",
    "blas",
    "openblas",
    "openssl",
    "ca-certificates",
    "certifi-conda",
    "tk",
    "xz",
    "zlib",
    "sqlite",
    "readline",
    "ncurses",
    "gcc",
    "gxx",
    "make",
    "cmake",
    "_libgcc_mutex",
    "_openmp_mutex",
    "tzdata",
    "bzip2",
    "ld_impl_linux-64",
}

_CONDA_SPEC = re.compile(r"^(?P<name>[A-Za-z0-9_.\-]+)\s*(?P<rest>.*)$")


@dataclass
class ModelRequirements:
    """The pip view of a model's environment."""

    source: str  #: which file(s) the requirements came from, for the report
    requirements: list[str] = field(default_factory=list)
    pip_options: list[str] = field(default_factory=list)
    python_version: str | None = None
    conda_only: list[str] = field(default_factory=list)  #: conda packages not installed by pip
    conda_file: Path | None = None  #: the conda.yaml, for the conda variant


def read_model_requirements(model_dir: Path, prefer: str = "pip") -> ModelRequirements:
    """The model's requirements. ``prefer="pip"`` takes ``python_env.yaml`` / ``requirements.txt``
    over ``conda.yaml``; ``prefer="conda"`` takes ``conda.yaml`` first."""
    if not model_dir.is_dir():
        raise EnvironmentSpecError(str(model_dir), "expected a model folder")
    named = _files_named_by_mlmodel(model_dir)
    conda_file = named.get("conda") or _existing(model_dir / CONDA_ENV)
    python_env = named.get("virtualenv") or _existing(model_dir / PYTHON_ENV)
    requirements = _existing(model_dir / REQUIREMENTS)

    if prefer == "conda" and conda_file is not None:
        found = read_conda_file(conda_file)
    elif python_env is not None:
        found = read_python_env(python_env)
    elif requirements is not None:
        found = ModelRequirements(source=requirements.name)
        _read_requirement_lines(requirements, found)
    elif conda_file is not None:
        found = read_conda_file(conda_file)
    else:
        found = ModelRequirements(
            source="none (no MLmodel env, python_env.yaml, conda.yaml or requirements.txt)"
        )
    if found.python_version is None and conda_file is not None and found.conda_file is None:
        found.python_version = _conda_python(conda_file)
    found.conda_file = conda_file
    return found


def _files_named_by_mlmodel(model_dir: Path) -> dict[str, Path]:
    """The files the ``python_function`` flavor's ``env`` names: a string (a conda file, the
    older form) or a mapping ``{conda: …, virtualenv: …}``."""
    mlmodel = model_dir / MLMODEL
    if not mlmodel.is_file():
        return {}
    data = _load_yaml(mlmodel)
    env = ((data.get("flavors") or {}).get("python_function") or {}).get("env")
    if env is None:
        return {}
    if isinstance(env, str):
        env = {"conda": env}
    if not isinstance(env, dict):
        raise EnvironmentSpecError(
            str(mlmodel), f"python_function env must be a file name or a mapping, got {env!r}"
        )
    found = {}
    for kind in ("conda", "virtualenv"):
        name = env.get(kind)
        if name:
            path = model_dir / str(name)
            if not path.is_file():
                raise EnvironmentSpecError(
                    str(mlmodel), f"env {kind} names {name!r}, which the folder does not hold"
                )
            found[kind] = path
    return found


def read_python_env(path: Path) -> ModelRequirements:
    """``python_env.yaml``: ``python``, ``build_dependencies`` (not installed), ``dependencies``
    (requirement lines, ``-r requirements.txt`` included)."""
    data = _load_yaml(path)
    found = ModelRequirements(source=path.name)
    if data.get("python") is not None:
        found.python_version = str(data["python"])
    for line in data.get("dependencies") or []:
        _add_line(str(line), path, found)
    return found


def read_conda_file(path: Path) -> ModelRequirements:
    """``conda.yaml``: the ``pip:`` list wherever it sits in ``dependencies``; conda packages
    mapped to pip names where that is sound, the rest reported as conda-only."""
    data = _load_yaml(path)
    found = ModelRequirements(source=path.name, conda_file=path)
    dependencies = data.get("dependencies") or []
    if not isinstance(dependencies, list):
        raise EnvironmentSpecError(str(path), "dependencies must be a list")
    for item in dependencies:
        if isinstance(item, dict):
            pip_lines = item.get("pip")
            if pip_lines is None:
                raise EnvironmentSpecError(
                    str(path), f"unexpected mapping in dependencies: {sorted(item)}"
                )
            for line in pip_lines:
                _add_line(str(line), path, found)
            continue
        name, spec = _conda_package(str(item))
        if name.lower() == "python":
            found.python_version = spec.lstrip("=") or None
            continue
        if name.lower() in CONDA_ONLY or name.lower().startswith("lib"):
            if name.lower() not in ("pip", "setuptools", "wheel"):
                found.conda_only.append(str(item))
            continue
        found.requirements.append(CONDA_TO_PIP.get(name.lower(), name) + spec)
    return found


def _conda_python(path: Path) -> str | None:
    for item in _load_yaml(path).get("dependencies") or []:
        if isinstance(item, str):
            name, spec = _conda_package(item)
            if name.lower() == "python":
                return spec.lstrip("=") or None
    return None


def _conda_package(item: str) -> tuple[str, str]:
    """``conda-forge::numpy=1.24`` → (``numpy``, ``==1.24.*``); a build string is dropped."""
    item = item.split("::", 1)[-1].strip()
    match = _CONDA_SPEC.match(item)
    if match is None:
        raise ValueError(f"not a conda package spec: {item!r}")
    name, rest = match.group("name"), match.group("rest").replace(" ", "")
    if not rest:
        return name, ""
    if rest[0].isdigit():  # "numpy 1.24" is conda's "numpy=1.24"
        rest = "=" + rest
    if rest.startswith("=") and not rest.startswith("=="):
        version = rest[1:].split("=", 1)[0]  # "=1.2.3=py310_0": the build string goes
        if version.endswith("*"):
            return name, f"=={version}"
        return name, f"=={version}" if version.count(".") >= 2 else f"=={version}.*"
    return name, rest


def _read_requirement_lines(path: Path, found: ModelRequirements, depth: int = 0) -> None:
    if depth > 5:
        raise EnvironmentSpecError(str(path), "-r includes nest deeper than 5 files")
    for raw in path.read_text().splitlines():
        _add_line(raw, path, found, depth)


def _add_line(raw: str, origin: Path, found: ModelRequirements, depth: int = 0) -> None:
    line = raw.split(" #", 1)[0].strip()
    if not line or line.startswith("#"):
        return
    option, _, value = line.partition(" ")
    if "=" in option and option.startswith("--"):
        option, value = option.split("=", 1)
    value = value.strip()
    if option in ("-r", "--requirement"):
        included = origin.parent / value
        if not included.is_file():
            raise EnvironmentSpecError(str(origin), f"{line!r} names a file the folder lacks")
        _read_requirement_lines(included, found, depth + 1)
    elif option in ("-c", "--constraint"):
        return  # constraints narrow versions only; the plan checks what is installed
    elif option in PIP_OPTIONS:
        found.pip_options.extend([option, value] if PIP_OPTIONS[option] else [option])
    elif line.startswith("-"):
        raise EnvironmentSpecError(str(origin), f"unsupported pip option {line!r}")
    else:
        found.requirements.append(line)


def _existing(path: Path) -> Path | None:
    return path if path.is_file() else None


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise EnvironmentSpecError(str(path), f"not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise EnvironmentSpecError(str(path), "expected a mapping at the top level")
    return data
