"""The peers' own virtual environments under ``bench/peers/``, made by uv and kept between runs.

uv (a dependency of our venv) resolves and installs the peers in seconds where pip took 10 to 30
minutes on a loaded machine; pip is the fallback when uv is missing. Each environment is rebuilt
only when its requirements change (a stamp file records them). The frameworks are pinned to the
versions in our own venv, so every system loads the same pickles.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path


def _ours(distribution: str) -> str:
    return version(distribution)


@dataclass(frozen=True)
class PeerEnv:
    """One venv: pip runs once per step (a step is one ``pip install`` argument list)."""

    name: str
    steps: tuple[tuple[str, ...], ...]
    note: str = ""
    # Imported once after the install, so the modules the server loads are compiled to bytecode
    # before round 1 (uv does not compile; compiling whole venvs took minutes).
    warm: tuple[str, ...] = ()

    def folder(self, root: Path) -> Path:
        return root / self.name

    def python(self, root: Path) -> Path:
        return self.folder(root) / "bin" / "python"

    def bin(self, root: Path) -> Path:
        return self.folder(root) / "bin"


@dataclass
class PeerStatus:
    name: str
    ok: bool
    cached: bool
    seconds: float
    versions: dict[str, str] = field(default_factory=dict)
    error: str = ""
    installer: str = ""  # "uv" or "pip"; "" when the venv was reused


def uv_path() -> str | None:
    """uv next to our interpreter (our venv installs it), else on PATH; None: use pip."""
    beside = Path(sys.executable).parent / "uv"
    if beside.exists():
        return str(beside)
    return shutil.which("uv")


def install_commands(
    env: PeerEnv, root: Path, base_python: str, uv: str | None, first_step: int = 0
) -> list[list[str]]:
    """The commands that create ``env`` (unless ``first_step`` > 0: it exists) and install its
    steps from ``first_step`` on, with uv when given, else with the venv module and pip."""
    folder, python = env.folder(root), env.python(root)
    commands: list[list[str]] = []
    if uv:
        if first_step == 0:
            # --seed: pip inside too, so a later run without uv can still add steps.
            commands.append([uv, "venv", "--quiet", "--seed", "--python", base_python, str(folder)])
        for step in env.steps[first_step:]:
            commands.append([uv, "pip", "install", "--quiet", "--python", str(python), *step])
    else:
        if first_step == 0:
            commands.append([base_python, "-m", "venv", "--clear", str(folder)])
        for step in env.steps[first_step:]:
            commands.append([str(python), "-m", "pip", "install", "--quiet", *step])
    return commands


def peer_envs() -> tuple[PeerEnv, ...]:
    sklearn, xgboost, mlflow = _ours("scikit-learn"), _ours("xgboost-cpu"), _ours("mlflow")
    return (
        PeerEnv(
            "mlserver",
            (
                (
                    "mlserver==1.7.1",
                    "mlserver-sklearn==1.7.1",
                    # uvloop 0.22+ kills every MLServer 1.7.1 inference worker ("no current
                    # event loop").
                    "uvloop==0.21.0",
                    f"scikit-learn=={sklearn}",
                    f"xgboost-cpu=={xgboost}",
                ),
                # Without deps: it requires "xgboost", whose wheel drags in ~470 MB of CUDA NCCL;
                # xgboost-cpu (installed above) provides the same module.
                ("--no-deps", "mlserver-xgboost==1.7.1"),
            ),
            warm=("mlserver.cli.main", "mlserver.parallel", "mlserver_sklearn", "mlserver_xgboost"),
        ),
        PeerEnv(
            "kserve",
            (("kserve==0.21.0", f"scikit-learn=={sklearn}", "joblib"),),
            note="the kserve package only: KServe's sklearnserver is not on PyPI",
            warm=("kserve", "kserve.model_server", "sklearn.linear_model", "joblib"),
        ),
        PeerEnv(
            "mlflow",
            # mlflow 3.2's scoring server breaks on fastapi 0.120+ (FastAPI.route removed).
            (
                (
                    f"mlflow-skinny=={mlflow}",
                    f"scikit-learn=={sklearn}",
                    "fastapi<0.120",
                    "uvicorn",
                ),
                ("pandas<3",),  # mlflow-skinny lacks it, yet loading any model's MLmodel needs it
            ),
            warm=(
                "mlflow.cli",
                "mlflow.pyfunc",
                "mlflow.sklearn",
                "mlflow.pyfunc.scoring_server",
                "uvicorn",
                "fastapi",
                "sklearn.linear_model",
            ),
        ),
        PeerEnv("awscli", (("awscli",),), warm=("awscli.clidriver", "awscli.customizations.s3")),
    )


PACKAGES_REPORTED = (
    "mlserver",
    "mlserver-sklearn",
    "mlserver-xgboost",
    "uvloop",
    "kserve",
    "mlflow-skinny",
    "fastapi",
    "uvicorn",
    "scikit-learn",
    "xgboost-cpu",
    "numpy",
    "awscli",
    "botocore",
)


def ensure(env: PeerEnv, root: Path, uv: str | None = None) -> PeerStatus:
    """Create or reuse the venv; never raises: a failure is reported in the status."""
    folder = env.folder(root)
    stamp = folder / ".bench-stamp"
    wanted = json.dumps(env.steps)
    started = time.monotonic()
    log = root / f"{env.name}.install.log"
    done_steps = _done_steps(env, root, stamp)
    if done_steps == list(env.steps):
        return PeerStatus(env.name, True, True, 0.0, _versions(env, root))
    root.mkdir(parents=True, exist_ok=True)
    base = getattr(sys, "_base_executable", sys.executable)
    if not done_steps:
        shutil.rmtree(env.folder(root), ignore_errors=True)  # uv venv will not clear a venv
    commands = install_commands(env, root, base, uv, len(done_steps))
    # Our venv's VIRTUAL_ENV must not leak into the peer's installer.
    child_env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    with open(log, "w") as out:
        try:
            for command in commands:
                out.write("+ " + " ".join(command) + "\n")
                out.flush()
                subprocess.run(
                    command,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=child_env,
                    check=True,
                    timeout=1800,
                )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            tail = log.read_text(errors="replace")[-1500:]
            return PeerStatus(
                env.name,
                False,
                False,
                time.monotonic() - started,
                error=f"{exc}\n{tail}",
                installer="uv" if uv else "pip",
            )
    warm_imports(env.python(root), env.warm, log)
    stamp.write_text(wanted)
    return PeerStatus(
        env.name,
        True,
        False,
        time.monotonic() - started,
        _versions(env, root),
        installer="uv" if uv else "pip",
    )


def warm_imports(python: Path | str, modules: tuple[str, ...], log: Path | None = None) -> float:
    """Import ``modules`` once with ``python`` (writing their bytecode); seconds it took. A module
    that fails to import is only logged: this saves time, it checks nothing."""
    if not modules:
        return 0.0
    code = (
        "import importlib, sys\n"
        f"for name in {list(modules)!r}:\n"
        "    try: importlib.import_module(name)\n"
        "    except Exception as exc: print(f'warm import {name}: {exc!r}', file=sys.stderr)\n"
    )
    # PYTHONDONTWRITEBYTECODE=1 (set on some machines, this one included) would make this a no-op
    # and every cold start would compile its imports from source.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    started = time.monotonic()
    done = subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, timeout=600, check=False, env=env
    )
    if log is not None:
        with open(log, "a") as out:
            out.write(f"+ warm imports {list(modules)}: exit {done.returncode}\n{done.stderr}")
    return time.monotonic() - started


def _done_steps(env: PeerEnv, root: Path, stamp: Path) -> list[tuple[str, ...]]:
    """The steps an earlier run completed, when they begin the wanted ones (only the rest run)."""
    if not env.python(root).exists() or not stamp.exists():
        return []
    try:
        done = [tuple(step) for step in json.loads(stamp.read_text())]
    except (ValueError, TypeError):
        return []
    return done if list(env.steps[: len(done)]) == done else []


def ensure_all(
    envs: tuple[PeerEnv, ...], root: Path, uv: str | None = None
) -> dict[str, PeerStatus]:
    """Install the venvs side by side (downloads dominate, so threads are enough; uv's cache
    takes concurrent installers)."""
    with ThreadPoolExecutor(max_workers=len(envs) or 1) as pool:
        statuses = list(pool.map(lambda e: ensure(e, root, uv), envs))
    return {status.name: status for status in statuses}


def _versions(env: PeerEnv, root: Path) -> dict[str, str]:
    code = (
        "import json, importlib.metadata as m\n"
        "found = {}\n"
        f"for name in {list(PACKAGES_REPORTED)!r}:\n"
        "    try: found[name] = m.version(name)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(found))"
    )
    done = subprocess.run(
        [str(env.python(root)), "-c", code], capture_output=True, text=True, check=False
    )
    return json.loads(done.stdout) if done.returncode == 0 else {}
