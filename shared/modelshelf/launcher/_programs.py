"""Where the front ends are: ``modelshelf serve`` in this installation, seldon-core-microservice
beside this Python or on ``PATH``, or both inside the conda environment before-run made."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from modelshelf.errors import ConfigurationError


def modelshelf_serve_available() -> bool:
    """Whether this installation has the ``modelshelf serve`` front end."""
    return importlib.util.find_spec("modelshelf.serve") is not None


def conda_environment(environ: Mapping[str, str]) -> Path | None:
    """With ``MODELSHELF_ENV_MANAGER=conda``, the environment before-run created for the model
    (its path is in ``MODELSHELF_ENV_DIR/conda-prefix``); otherwise ``None``."""
    if environ.get("MODELSHELF_ENV_MANAGER", "").strip().lower() != "conda":
        return None
    from modelshelf.environment import default_env_dir
    from modelshelf.environment.conda import PREFIX_FILE

    record = default_env_dir(environ) / PREFIX_FILE
    if not record.is_file():
        return None
    prefix = Path(record.read_text().strip())
    if not (prefix / "bin" / "python").exists():
        raise ConfigurationError(
            "MODELSHELF_ENV_MANAGER",
            "conda",
            f"a conda environment at {prefix} (named by "
            f"{record}) with bin/python: run before-run again",
            source="environment variable",
        )
    return prefix


def seldon_microservice(bin_dir: Path | None = None) -> tuple[str, ...]:
    """The seldon-core-microservice command: in ``bin_dir``, else beside this Python, else on
    ``PATH``."""
    if bin_dir is not None:
        return (str(bin_dir / "seldon-core-microservice"),)
    beside = Path(sys.executable).parent / "seldon-core-microservice"
    found = str(beside) if beside.exists() else shutil.which("seldon-core-microservice")
    if not found:
        raise ConfigurationError(
            "MODELSHELF_FRONTEND",
            "seldon",
            "seldon-core-microservice on PATH (pip install seldon-core)",
            source="environment variable",
        )
    return (found,)
