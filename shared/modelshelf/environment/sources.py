"""What a model folder says it needs: the MLmodel ``env``, ``python_env.yaml``, ``conda.yaml``,
``requirements.txt``.

Read without importing MLflow (the before-run step must be quick). The result is a flat list of
pip requirement lines plus the pip options found among them (``--index-url`` in a ``conda.yaml``
pip section is kept, not dropped), the Python version the model was built with, and the conda
packages that have no pip counterpart (reported, not installed). A conda package is taken to be
the PyPI distribution of the same name only when it is known to be: a conda-only name can be a
placeholder on PyPI (``nomkl``), or anybody's package (dependency confusion).
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

#: Options of a requirements list that say where packages come from (what
#: ``MODELSHELF_ENV_MODEL_INDEXES=0`` drops), and whether each takes a value.
INDEX_OPTIONS = {
    "--index-url": True,
    "-i": True,
    "--extra-index-url": True,
    "--find-links": True,
    "-f": True,
    "--trusted-host": True,
    "--no-index": False,
}

#: pip options a requirements list may carry, and whether each takes a value.
PIP_OPTIONS = {**INDEX_OPTIONS, "--pre": False, "--prefer-binary": False}

#: Conda package names whose PyPI distribution is called differently.
CONDA_TO_PIP = {
    "py-xgboost": "xgboost",
    "py-xgboost-cpu": "xgboost-cpu",
    "py-xgboost-gpu": "xgboost",
    "pytables": "tables",
    "python-graphviz": "graphviz",
    "py-lightgbm": "lightgbm",
    "py-catboost": "catboost",
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

#: Conda packages known to be the PyPI distribution of the same name. Any other conda name is
#: never looked up on PyPI: the plan reports it as ignored unless the server already has it.
CONDA_SAME_ON_PYPI = frozenset(
    """
    absl-py accelerate aiohttp altair anyio attrs azure-storage-blob bokeh boto3 botocore
    bottleneck catboost category_encoders click cloudpickle colorama cryptography cython dask
    databricks-sdk datasets dill distributed einops emoji fastapi filelock flask fsspec gcsfs
    gensim google-cloud-storage gunicorn h5py holidays httpx huggingface_hub hyperopt
    idna imbalanced-learn importlib-metadata jinja2 joblib jsonschema keras librosa lightgbm
    llvmlite lxml markupsafe matplotlib mlflow mlflow-skinny networkx nltk numba numexpr
    numpy onnx onnxruntime openpyxl optuna packaging pandas pandas-gbq patsy pillow plotly pmdarima
    polars prophet protobuf psutil psycopg2 pyarrow pydantic pyod pyspark python-dateutil
    python-json-logger pytz pyyaml regex requests s3fs safetensors scikit-image scikit-learn scipy
    seaborn sentencepiece shap six sktime spacy sqlalchemy statsmodels sympy tabulate tensorboard
    tensorflow threadpoolctl tokenizers toolz torchvision tqdm transformers typing-extensions
    typing_extensions umap-learn urllib3 xarray xgboost xlrd
    """.split()  # noqa: SIM905 - a word list: 115 names, one a line, would hide the rest
)

_CONDA_SPEC = re.compile(r"^(?P<name>[A-Za-z0-9_.\-]+)\s*(?P<rest>.*)$")


@dataclass
class ModelRequirements:
    """The pip view of a model's environment."""

    source: str  #: which file(s) the requirements came from, for the report
    requirements: list[str] = field(default_factory=list)
    pip_options: list[str] = field(default_factory=list)
    python_version: str | None = None
    conda_only: list[str] = field(default_factory=list)  #: conda packages not installed by pip
    #: conda packages not known to be on PyPI under their name, as requirement lines: met by
    #: what the server has, never installed from PyPI
    conda_unmapped: list[str] = field(default_factory=list)
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
        found = read_conda_file(conda_file, model_dir)
    elif python_env is not None:
        found = read_python_env(python_env, model_dir)
    elif requirements is not None:
        found = ModelRequirements(source=requirements.name)
        _read_requirement_lines(requirements, found, model_dir)
    elif conda_file is not None:
        found = read_conda_file(conda_file, model_dir)
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


def read_python_env(path: Path, model_dir: Path | None = None) -> ModelRequirements:
    """``python_env.yaml``: ``python``, ``build_dependencies`` (not installed), ``dependencies``
    (requirement lines, ``-r requirements.txt`` included; ``model_dir`` bounds what ``-r`` and
    ``-c`` may name, by default the file's folder)."""
    data = _load_yaml(path)
    found = ModelRequirements(source=path.name)
    if data.get("python") is not None:
        found.python_version = str(data["python"])
    for line in data.get("dependencies") or []:
        _add_line(str(line), path, found, model_dir or path.parent)
    return found


def read_conda_file(path: Path, model_dir: Path | None = None) -> ModelRequirements:
    """``conda.yaml``: the ``pip:`` list wherever it sits in ``dependencies``; conda packages
    mapped to pip names where that is known, system libraries reported as conda-only, other
    names kept apart (``conda_unmapped``: never installed from PyPI)."""
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
                _add_line(str(line), path, found, model_dir or path.parent)
            continue
        name, spec = _conda_package(str(item), path)
        key = name.lower()
        if key == "python":
            found.python_version = spec.lstrip("=") or None
        elif key in CONDA_TO_PIP:
            found.requirements.append(CONDA_TO_PIP[key] + spec)
        elif key in CONDA_SAME_ON_PYPI:
            found.requirements.append(name + spec)
        elif key in CONDA_ONLY or key.startswith(("lib", "_")):
            if key not in ("pip", "setuptools", "wheel"):
                found.conda_only.append(str(item))
        else:
            found.conda_unmapped.append(name + spec)
    return found


def _conda_python(path: Path) -> str | None:
    for item in _load_yaml(path).get("dependencies") or []:
        if isinstance(item, str):
            name, spec = _conda_package(item, path)
            if name.lower() == "python":
                return spec.lstrip("=") or None
    return None


def conda_package_name(item: str) -> str:
    """The package name of a conda spec (``conda-forge::pip<24`` → ``pip``)."""
    match = _CONDA_SPEC.match(item.split("::", 1)[-1].strip())
    return match.group("name") if match else item


def _conda_package(item: str, path: Path) -> tuple[str, str]:
    """``conda-forge::numpy=1.24`` → (``numpy``, ``==1.24.*``); a build string is dropped."""
    item = item.split("::", 1)[-1].strip()
    match = _CONDA_SPEC.match(item)
    if match is None:
        raise EnvironmentSpecError(str(path), f"not a conda package spec: {item!r}")
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


def _read_requirement_lines(
    path: Path, found: ModelRequirements, model_dir: Path, depth: int = 0
) -> None:
    if depth > 5:
        raise EnvironmentSpecError(str(path), "-r includes nest deeper than 5 files")
    for raw in path.read_text().splitlines():
        _add_line(raw, path, found, model_dir, depth)


def _inside_model(origin: Path, line: str, value: str, model_dir: Path) -> Path:
    """The file a ``-r`` / ``-c`` line names, which must be in the model's folder: a model
    must not make the builder read the server's files (or another model's)."""
    named = (origin.parent / value).resolve()
    if not named.is_relative_to(model_dir.resolve()):
        raise EnvironmentSpecError(
            str(origin), f"{line!r} names a file outside the model's folder {model_dir}"
        )
    return named


def _add_line(
    raw: str, origin: Path, found: ModelRequirements, model_dir: Path, depth: int = 0
) -> None:
    line = raw.split(" #", 1)[0].strip()
    if not line or line.startswith("#"):
        return
    option, _, value = line.partition(" ")
    if "=" in option and option.startswith("--"):
        option, value = option.split("=", 1)
    value = value.strip()
    if option in ("-r", "--requirement"):
        included = _inside_model(origin, line, value, model_dir)
        if not included.is_file():
            raise EnvironmentSpecError(str(origin), f"{line!r} names a file the folder lacks")
        _read_requirement_lines(included, found, model_dir, depth + 1)
    elif option in ("-c", "--constraint"):
        # constraints narrow versions only; the plan checks what is installed
        _inside_model(origin, line, value, model_dir)
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
