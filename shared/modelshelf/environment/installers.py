"""Running pip (or uv) so that the model's packages land in the environment folder only.

Two steps, so that the server's own packages can never be touched:

1. ``pip install --dry-run --report`` resolves the missing requirements *against the running
   interpreter* (the environment folder on its path, the server's packages pinned by a constraints
   file): pip keeps what is installed and lists only what has to be added. With uv, ``uv pip
   install --dry-run`` does the same in tens of milliseconds instead of pip's 1-3 s (it sees the
   interpreter's site-packages, not the environment folder: a dependency already there is
   installed again, at the version the resolver picks).
2. Exactly those files are installed with ``--target ENV_DIR --no-deps`` (by uv when present).

Both installers get the same inputs: the index settings pip reads from ``PIP_INDEX_URL``,
``PIP_EXTRA_INDEX_URL``, ``PIP_FIND_LINKS`` and ``PIP_TRUSTED_HOST`` are passed to uv as its own
options (uv does not read pip's variables), and both are held to wheels (``--only-binary``): an
sdist runs its build script while it is resolved, and the images have no compiler.
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

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from modelshelf.environment.errors import EnvironmentBuildError
from modelshelf.environment.plan import same_package
from modelshelf.environment.sources import INDEX_OPTIONS


@dataclass(frozen=True)
class Resolved:
    """One distribution the resolver chose to add; ``url`` is what the install step is given (a
    file URL, ``NAME==VERSION``, or ``NAME @ URL`` for a direct reference)."""

    name: str
    version: str
    url: str
    direct: bool = False  #: a ``NAME @ URL`` requirement: installed from that URL

    @property
    def pin(self) -> str:
        return self.url if self.direct else f"{self.name}=={self.version}"


#: pip's environment variables that choose where packages come from, and the uv option each
#: becomes (pip reads them itself; uv reads only its own ``UV_*`` variables).
PIP_INDEX_VARIABLES = {
    "PIP_INDEX_URL": "--index-url",
    "PIP_EXTRA_INDEX_URL": "--extra-index-url",
    "PIP_FIND_LINKS": "--find-links",
    "PIP_TRUSTED_HOST": "--allow-insecure-host",
}

#: What a yes/no environment variable takes for yes.
TRUE_WORDS = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class InstallerOptions:
    index_options: tuple[str, ...]  #: --index-url / --find-links / --no-index / --only-binary …
    installer: str  #: "pip" or "uv"
    #: the model's own index options left out (``MODELSHELF_ENV_MODEL_INDEXES=0``), for the report
    dropped: tuple[str, ...] = ()


def installer_options(
    model_options: Sequence[str],
    wheels_dir: Path | None,
    offline: bool,
    installer: str,
    *,
    model_indexes: bool = True,
    allow_sdist: bool = False,
    environ: dict[str, str] | None = None,
) -> InstallerOptions:
    """The installer's options: the model's (its index options only when ``model_indexes``),
    pip's index variables for uv, the wheels folder, the offline flag, and wheels only unless
    ``allow_sdist``."""
    chosen = choose_installer(installer)
    env = os.environ if environ is None else environ
    kept, dropped = split_model_options(model_options, model_indexes)
    options: list[str] = []
    if chosen == "uv":
        options += uv_options_from_pip_variables(env, kept)
        kept = _uv_spelling(kept)
    options += kept
    if wheels_dir is not None and wheels_dir.is_dir():
        options += ["--find-links", str(wheels_dir)]
    if offline and "--no-index" not in options:
        options.append("--no-index")
    if not allow_sdist:  # uv's --no-build also refuses to build a source folder or VCS URL
        options.append("--no-build" if chosen == "uv" else "--only-binary=:all:")
    return InstallerOptions(tuple(options), chosen, tuple(dropped))


def split_model_options(options: Sequence[str], model_indexes: bool) -> tuple[list[str], list[str]]:
    """The model's options split into (kept, dropped): its index options are dropped when
    ``model_indexes`` is false (a locked-down cluster's packages come from its own index only)."""
    kept: list[str] = []
    dropped: list[str] = []
    position = 0
    while position < len(options):
        option = options[position]
        width = 2 if INDEX_OPTIONS.get(option) else 1
        group = list(options[position : position + width])
        (dropped if option in INDEX_OPTIONS and not model_indexes else kept).extend(group)
        position += width
    return kept, dropped


def uv_options_from_pip_variables(
    environ: dict[str, str] | os._Environ[str], model_options: Sequence[str]
) -> list[str]:
    """pip's index variables as uv options. A model's own ``--index-url`` wins over
    ``PIP_INDEX_URL``, as a command-line option wins over the variable for pip; the others add
    up, as in pip (whose variables hold space-separated lists)."""
    options: list[str] = []
    for variable, option in PIP_INDEX_VARIABLES.items():
        values = environ.get(variable, "").split()
        if option == "--index-url":
            if {"--index-url", "-i"} & set(model_options):
                continue
            values = values[:1]
        for value in values:
            options += [option, value]
    if environ.get("PIP_NO_INDEX", "").strip().lower() in TRUE_WORDS:
        options.append("--no-index")
    return options


def _uv_spelling(options: Sequence[str]) -> list[str]:
    """pip's options as uv spells them; ``--prefer-binary``, which uv lacks, is left out (uv
    is held to wheels unless sdists are allowed)."""
    spelled = {"--trusted-host": "--allow-insecure-host"}
    return [spelled.get(o, o) for o in options if o != "--prefer-binary"]


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
    server: dict[str, str],
    env_dir: Path,
    options: InstallerOptions,
) -> list[Resolved]:
    """What has to be added for ``requirements``, resolved against the running interpreter
    with every distribution of the server (``server``: canonical name -> version) pinned."""
    with tempfile.TemporaryDirectory(prefix="modelshelf-resolve-") as tmp:
        constraints = Path(tmp) / "server-constraints.txt"
        constraints.write_text("".join(f"{n}=={v}\n" for n, v in sorted(server.items())))
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
        same = next((key for key in same_package(item.name) if key in server), None)
        if same is not None:
            what = item.version or item.url
            raise EnvironmentBuildError(
                list(requirements),
                f"resolving would install {item.name} {what} into the env folder, but the server "
                f"has {same} {server[same]}"
                + (" (the same package)" if same != canonicalize_name(item.name) else ""),
            )
    _check_every_requirement_listed(requirements, found, options.installer)
    return found


def _check_every_requirement_listed(
    requirements: Sequence[str], found: Sequence[Resolved], installer: str
) -> None:
    """Each requirement the plan sends must be among what the installer would add: anything
    else means its answer was misread, and the model would start without the package."""
    names = {canonicalize_name(item.name) for item in found}
    for line in requirements:
        try:
            name = canonicalize_name(Requirement(line).name)
        except InvalidRequirement:
            continue  # a path or URL without a name: the installer names what it is
        if name not in names:
            raise EnvironmentBuildError(
                [line], f"{installer} did not list {name} among what it would install"
            )


def _pip_additions(report: dict) -> list[Resolved]:
    """The distributions pip's ``--report`` would install (with the file it chose)."""
    added = []
    for item in report.get("install", []):
        meta = item["metadata"]
        name, version = meta["name"], meta["version"]
        url = (item.get("download_info") or {}).get("url") or f"{name}=={version}"
        direct = bool(item.get("is_direct"))
        added.append(Resolved(name, version, f"{name} @ {url}" if direct else url, direct))
    return added


def _uv_additions(output: str) -> list[Resolved]:
    """The `` + NAME==VERSION`` and `` + NAME @ URL`` lines of ``uv pip install --dry-run``:
    what it would install. A `` + `` line of another form stops the build (never skipped)."""
    added = []
    for line in output.splitlines():
        if not line.startswith(" + "):
            continue
        text = line[3:].strip()
        if " @ " in text:
            name, _, url = text.partition(" @ ")
            added.append(Resolved(name, _wheel_version(url), f"{name} @ {url}", direct=True))
        elif "==" in text:
            name, _, version = text.partition("==")
            added.append(Resolved(name, version, f"{name}=={version}"))
        else:
            raise EnvironmentBuildError([], f"uv would install {text!r}, which is not understood")
    return added


def _wheel_version(url: str) -> str:
    """The version a wheel's file name holds ("" for anything else, e.g. a VCS URL)."""
    try:
        return str(parse_wheel_filename(url.rsplit("/", 1)[-1])[1])
    except InvalidWheelFilename:
        return ""


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
