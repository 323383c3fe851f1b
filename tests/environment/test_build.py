"""The pip builder for real: wheels built here, installed by pip into a separate folder, the
test's own virtualenv unchanged."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import tarfile

import pytest

from modelshelf.environment import EnvironmentBuildError, Settings, build
from wheels import build_wheel

pytestmark = pytest.mark.timeout(240)


def pip_freeze() -> str:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--all"], capture_output=True, text=True, check=True
    )
    return result.stdout


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wheels")
    build_wheel(
        folder, "shelftiny", "0.1.0", "def double(x):\n    return x * 2\n", ("shelfdep>=1,<2",)
    )
    build_wheel(folder, "shelfdep", "1.0.0", "VERSION = 1\n", ("numpy",))
    build_wheel(folder, "shelfdep", "2.0.0", "VERSION = 2\n")
    build_wheel(folder, "shelfold", "1.0.0", "", ("numpy<1.0",))
    return folder


@pytest.fixture(scope="module")
def shared_env(tmp_path_factory):
    """One environment folder the first two tests fill in turn (as restarts of one pod would)."""
    return tmp_path_factory.mktemp("shared-env")


@pytest.fixture(scope="module")
def frozen_before():
    before = pip_freeze()
    yield before
    after = pip_freeze()
    changed = set(before.splitlines()) ^ set(after.splitlines())
    assert after == before, f"the test's own virtualenv changed: {sorted(changed)}"


def model(folder, requirements: str, python: str = "3.11"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "MLmodel").write_text(
        "flavors:\n  python_function:\n    env:\n      virtualenv: python_env.yaml\n"
    )
    (folder / "python_env.yaml").write_text(
        f"python: {python}\nbuild_dependencies: [pip]\ndependencies: [-r requirements.txt]\n"
    )
    (folder / "requirements.txt").write_text(requirements)
    return folder


def settings(tmp_path, wheels, **kwargs) -> Settings:
    kwargs.setdefault("installer", "pip")
    return Settings(env_dir=tmp_path / "env", wheels_dir=wheels, offline=True, **kwargs)


def imported_in_env(env_dir, code: str) -> subprocess.CompletedProcess:
    """``code`` run by this interpreter with the environment folder activated."""
    script = f"from modelshelf.environment import activate; activate({str(env_dir)!r}); {code}"
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)


def test_missing_package_and_its_dependency_installed_then_nothing_on_rerun(
    shared_env, wheels, frozen_before
):
    folder = model(shared_env / "m", "shelftiny==0.1.0\nnumpy>=1.20\n")
    first = build(folder, settings(shared_env, wheels))
    assert sorted(r.pin for r in first.installed) == ["shelfdep==1.0.0", "shelftiny==0.1.0"]
    assert [d.requirement for d in first.plan.of("satisfied")] == ["numpy>=1.20"]
    assert first.installer == "pip"
    text = "\n".join(first.lines())
    assert "installed  shelftiny==0.1.0" in text and "1 satisfied, 2 installed" in text

    ran = imported_in_env(first.env_dir, "import shelftiny, numpy; print(shelftiny.double(21))")
    assert ran.stdout.strip() == "42", ran.stderr
    assert not (first.env_dir / "numpy").exists()  # the server's numpy is used, not reinstalled
    plain = subprocess.run([sys.executable, "-c", "import shelftiny"], capture_output=True)
    assert plain.returncode != 0  # installed into the environment folder only

    again = build(folder, settings(shared_env, wheels))
    assert again.installed == [] and again.installer == ""  # no installer run at all
    assert {d.requirement for d in again.plan.of("satisfied")} == {
        "shelftiny==0.1.0",
        "numpy>=1.20",
    }


def test_newer_version_replaces_the_one_in_the_environment_folder(
    shared_env, wheels, frozen_before
):
    assert (shared_env / "env" / "shelfdep-1.0.0.dist-info").is_dir()  # from the test above
    report = build(model(shared_env / "b", "shelfdep==2.0.0\n"), settings(shared_env, wheels))
    assert [r.pin for r in report.installed] == ["shelfdep==2.0.0"]
    infos = sorted(p.name for p in report.env_dir.glob("shelfdep-*.dist-info"))
    assert infos == ["shelfdep-2.0.0.dist-info"]
    ran = imported_in_env(report.env_dir, "import shelfdep; print(shelfdep.VERSION)")
    assert ran.stdout.strip() == "2", ran.stderr


def test_server_packages_are_kept_and_reported_strict_mode_refuses(tmp_path, wheels, frozen_before):
    folder = model(tmp_path / "m", "numpy==1.0.0\nseldon-core==1.17.0\n")
    report = build(folder, settings(tmp_path, wheels))
    conflicts = report.plan.of("conflict")
    assert [d.requirement for d in conflicts] == ["numpy==1.0.0", "seldon-core==1.17.0"]
    assert "the server runs on seldon-core 1.18.2" in conflicts[1].detail
    assert report.installed == []
    with pytest.raises(EnvironmentBuildError, match="MODELSHELF_ENV_STRICT") as info:
        build(folder, settings(tmp_path, wheels, strict=True))
    assert "numpy==1.0.0" in str(info.value)


def test_a_dependency_that_would_replace_a_server_package_fails_with_pips_message(
    tmp_path, wheels, frozen_before
):
    with pytest.raises(EnvironmentBuildError) as info:
        build(model(tmp_path / "m", "shelfold==1.0.0\n"), settings(tmp_path, wheels))
    message = str(info.value)
    assert "shelfold==1.0.0" in message and "pip failed" in message
    assert "numpy" in message  # pip names the conflict


def test_unknown_package_fails_with_the_requirement_and_pips_message(
    tmp_path, wheels, frozen_before
):
    with pytest.raises(EnvironmentBuildError) as info:
        build(model(tmp_path / "m", "shelfmissing==3.1\n"), settings(tmp_path, wheels))
    assert "cannot install shelfmissing==3.1" in str(info.value)
    assert "No matching distribution found for shelfmissing==3.1" in str(info.value)


def test_markers_and_other_python_versions(tmp_path, wheels):
    folder = model(tmp_path / "m", 'pywin32==306; sys_platform == "win32"\n', python="3.8.10")
    report = build(folder, settings(tmp_path, wheels))
    assert [d.requirement for d in report.plan.of("ignored")] == [
        'pywin32==306; sys_platform == "win32"'
    ]
    text = "\n".join(report.lines())
    assert "WARNING: the model was built with Python 3.8.10" in text


def test_uv_resolves_and_installs_when_asked(tmp_path, wheels, frozen_before):
    """uv resolves too: the missing package and its missing dependency, not the server's numpy."""
    report = build(
        model(tmp_path / "m", "shelftiny==0.1.0\n"), settings(tmp_path, wheels, installer="uv")
    )
    assert report.installer == "uv"
    assert sorted(r.pin for r in report.installed) == ["shelfdep==1.0.0", "shelftiny==0.1.0"]
    ran = imported_in_env(report.env_dir, "import shelftiny, shelfdep; print(shelfdep.VERSION)")
    assert ran.stdout.strip() == "1", ran.stderr
    assert not (report.env_dir / "numpy").exists()


def test_uv_failures_name_the_requirement_with_uvs_message(tmp_path, wheels, frozen_before):
    with pytest.raises(EnvironmentBuildError) as info:
        build(
            model(tmp_path / "m", "shelfold==1.0.0\n"), settings(tmp_path, wheels, installer="uv")
        )
    message = str(info.value)
    assert "cannot install shelfold==1.0.0" in message and "uv failed" in message
    assert "numpy" in message  # uv names the conflict with the server's numpy


# ------------------------------------------------------------------ issue 15.4: NAME @ URL


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_a_name_at_url_requirement_is_installed_by_either_installer(
    tmp_path, wheels, frozen_before, installer
):
    wheel = build_wheel(tmp_path / "direct", "tinyshelfpkg", "0.3.0", "ANSWER = 42\n")
    line = f"tinyshelfpkg @ {wheel.as_uri()}"
    report = build(
        model(tmp_path / "m", f"{line}\nnumpy\n"), settings(tmp_path, wheels, installer=installer)
    )
    assert [r.pin for r in report.installed] == [line]
    assert f"  installed  {line}  (into {report.env_dir}, by {installer})" in report.lines()
    assert "1 satisfied, 1 installed" in report.lines()[-1]
    ran = imported_in_env(report.env_dir, "import tinyshelfpkg; print(tinyshelfpkg.ANSWER)")
    assert ran.stdout.strip() == "42", ran.stderr
    again = build(model(tmp_path / "m", f"{line}\n"), settings(tmp_path, wheels))
    assert again.installed == [] and "URL not fetched" in again.plan.decisions[0].detail


def test_a_uv_line_that_cannot_be_read_stops_the_build():
    from modelshelf.environment.installers import _uv_additions

    found = _uv_additions(" + a==1.0\n + b @ file:///w/b-2.0-py3-none-any.whl\nWould install\n")
    assert [(r.name, r.version, r.pin) for r in found] == [
        ("a", "1.0", "a==1.0"),
        ("b", "2.0", "b @ file:///w/b-2.0-py3-none-any.whl"),
    ]
    with pytest.raises(EnvironmentBuildError, match=r"'c from somewhere', which is not understood"):
        _uv_additions(" + c from somewhere\n")


# ------------------------------------------- issue 15.5: index settings, wheels only, -r / -c


@pytest.fixture
def pip_settings_only_from_variables(monkeypatch):
    """No pip configuration file and none of this machine's PIP_* index variables."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for name in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX"):
        monkeypatch.delenv(name, raising=False)


def online(tmp_path, **kwargs) -> Settings:
    return Settings(env_dir=tmp_path / "env", wheels_dir=tmp_path / "no-wheels", **kwargs)


@pytest.mark.parametrize("installer", ["uv", "pip"])
@pytest.mark.parametrize("variable", ["PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"])
def test_pips_index_variables_reach_either_installer(
    tmp_path, package_index, monkeypatch, pip_settings_only_from_variables, installer, variable
):
    build_wheel(package_index.folder, "shelfindexed", "1.2.0", "FROM = 'index'\n")
    if variable == "PIP_EXTRA_INDEX_URL":  # the main index: an empty one of the same server
        monkeypatch.setenv("PIP_INDEX_URL", package_index.url.replace("/simple", "/empty"))
    monkeypatch.setenv(variable, package_index.url)
    report = build(
        model(tmp_path / "m", "shelfindexed==1.2.0\n"), online(tmp_path, installer=installer)
    )
    assert [r.pin for r in report.installed] == ["shelfindexed==1.2.0"]
    assert package_index.asked_for("shelfindexed")
    assert any(path.startswith("/files/shelfindexed-1.2.0") for path in package_index.requests)


def test_pip_find_links_and_trusted_host_become_uv_options():
    from modelshelf.environment.installers import uv_options_from_pip_variables

    environ = {
        "PIP_INDEX_URL": "http://idx.local/simple",
        "PIP_EXTRA_INDEX_URL": "http://a.local/simple http://b.local/simple",
        "PIP_FIND_LINKS": "/opt/w1 /opt/w2",
        "PIP_TRUSTED_HOST": "idx.local",
    }
    assert uv_options_from_pip_variables(environ, []) == [
        "--index-url", "http://idx.local/simple",
        "--extra-index-url", "http://a.local/simple",
        "--extra-index-url", "http://b.local/simple",
        "--find-links", "/opt/w1", "--find-links", "/opt/w2",
        "--allow-insecure-host", "idx.local",
    ]  # fmt: skip
    # the model's own --index-url wins over the variable, as on pip's command line
    assert "http://idx.local/simple" not in uv_options_from_pip_variables(environ, ["-i", "x"])


def test_pip_options_uv_spells_differently_or_lacks():
    from modelshelf.environment.installers import installer_options

    model_options = ["--trusted-host", "idx.local", "--prefer-binary", "--pre"]
    options = installer_options(model_options, None, False, "uv", environ={}).index_options
    assert options == ("--allow-insecure-host", "idx.local", "--pre", "--no-build")


@pytest.mark.parametrize(
    ("value", "expected"), [(None, True), ("", True), ("1", True), ("0", False), ("false", False)]
)
def test_model_indexes_setting(tmp_path, value, expected):
    environ = {} if value is None else {"MODELSHELF_ENV_MODEL_INDEXES": value}
    assert Settings.from_environ(environ).model_indexes is expected


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_pip_find_links_reaches_either_installer(
    tmp_path, monkeypatch, pip_settings_only_from_variables, installer
):
    build_wheel(tmp_path / "links", "shelflinked", "0.5.0", "")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "links"))
    report = build(
        model(tmp_path / "m", "shelflinked\n"), online(tmp_path, installer=installer, offline=True)
    )
    assert [r.pin for r in report.installed] == ["shelflinked==0.5.0"]


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_model_indexes_off_ignores_the_index_the_models_requirements_name(
    tmp_path, package_index, pip_settings_only_from_variables, installer
):
    build_wheel(package_index.folder, "shelfprivate", "1.0.0", "")
    requirements = f"--index-url {package_index.url}\nshelfprivate==1.0.0\n"
    folder = model(tmp_path / "m", requirements)
    locked = online(tmp_path, installer=installer, offline=True, model_indexes=False)
    with pytest.raises(EnvironmentBuildError, match="shelfprivate"):
        build(folder, locked)
    assert package_index.requests == []

    report = build(folder, online(tmp_path, installer=installer, offline=False))
    assert [r.pin for r in report.installed] == ["shelfprivate==1.0.0"]
    assert package_index.asked_for("shelfprivate")


def test_model_indexes_off_is_reported_and_refuses_direct_urls(tmp_path, wheels):
    wheel = build_wheel(tmp_path / "direct", "tinyshelfpkg", "0.3.0", "")
    folder = model(tmp_path / "m", "--extra-index-url http://x.invalid/simple\nnumpy\n")
    report = build(folder, settings(tmp_path, wheels, model_indexes=False))
    assert (
        "  ignored    --extra-index-url http://x.invalid/simple  (the model's index options; "
        "MODELSHELF_ENV_MODEL_INDEXES=0)"
    ) in report.lines()
    direct = model(tmp_path / "d", f"tinyshelfpkg @ {wheel.as_uri()}\n")
    with pytest.raises(EnvironmentBuildError, match="MODELSHELF_ENV_MODEL_INDEXES=0 allows only"):
        build(direct, settings(tmp_path, wheels, model_indexes=False))


BUILD_BACKEND = """\
import pathlib
pathlib.Path({marker!r}).write_text("the sdist's build code ran")
"""


def sdist(folder, marker) -> None:
    """``shelfsource-1.0.0.tar.gz``, whose in-tree build backend (no build requirements to
    fetch) leaves ``marker`` behind as soon as an installer runs it."""
    source = folder.parent / "shelfsource-1.0.0"
    source.mkdir()
    (source / "backend.py").write_text(BUILD_BACKEND.format(marker=str(marker)))
    (source / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
    )
    (source / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: shelfsource\nVersion: 1.0.0\n")
    with tarfile.open(folder / "shelfsource-1.0.0.tar.gz", "w:gz") as archive:
        archive.add(source, arcname=source.name)


@pytest.mark.parametrize(
    ("installer", "reason"),
    [("uv", "building from source is disabled"), ("pip", "No matching distribution found")],
)
def test_wheels_only_an_sdists_build_code_never_runs_unless_allowed(
    tmp_path, package_index, pip_settings_only_from_variables, installer, reason
):
    marker = tmp_path / "build-code-ran"
    sdist(package_index.folder, marker)
    folder = model(tmp_path / "m", f"--index-url {package_index.url}\nshelfsource==1.0.0\n")
    with pytest.raises(EnvironmentBuildError, match=reason):
        build(folder, online(tmp_path, installer=installer))
    assert package_index.asked_for("shelfsource")
    assert not marker.exists()

    with pytest.raises(EnvironmentBuildError):  # the stand-in backend builds nothing
        build(folder, online(tmp_path, installer=installer, allow_sdist=True))
    assert marker.exists()  # MODELSHELF_ENV_ALLOW_SDIST=1: the sdist's code ran


def test_allow_sdist_drops_the_wheels_only_option():
    from modelshelf.environment.installers import installer_options

    for installer, option in (("uv", "--no-build"), ("pip", "--only-binary=:all:")):
        assert option in installer_options([], None, False, installer).index_options
        allowed = installer_options([], None, False, installer, allow_sdist=True)
        assert option not in allowed.index_options


# ------------------------------------------------ issue 19.5: equivalents, conda names


def test_xgboost_requirements_are_met_by_the_servers_xgboost_cpu(tmp_path, wheels, frozen_before):
    version = importlib.metadata.version("xgboost-cpu")
    folder = model(tmp_path / "m", f"xgboost=={version}\nxgboost-cpu=={version}\nsklearn\n")
    report = build(folder, settings(tmp_path, wheels))
    assert report.installed == [] and report.plan.to_install == []
    lines = report.lines()
    assert (
        f"  satisfied  xgboost=={version}  (xgboost-cpu {version} (the same package as xgboost) "
        "installed)"
    ) in lines
    assert any(line.startswith("  satisfied  sklearn  (scikit-learn ") for line in lines)
    assert not (report.env_dir / "xgboost").exists()


def test_another_xgboost_version_is_a_conflict_not_a_second_xgboost(tmp_path, wheels):
    folder = model(tmp_path / "m", "xgboost==1.7.6\n")
    report = build(folder, settings(tmp_path, wheels))
    assert report.installed == [] and not (report.env_dir / "xgboost").exists()
    [line] = [line for line in report.lines() if "xgboost==1.7.6" in line]
    assert line.startswith("  conflict   xgboost==1.7.6  (the server has xgboost-cpu ")


CONDA_ONLY_YAML = """\
dependencies:
- python=3.11
- nomkl
- conda-forge::py-xgboost-cpu
- mkl=2023.1
- pip<=24.0
- pip:
  - numpy
"""


def test_conda_names_unknown_on_pypi_are_ignored_never_installed(tmp_path, wheels):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "conda.yaml").write_text(CONDA_ONLY_YAML)
    report = build(folder, settings(tmp_path, wheels))
    lines = report.lines()
    assert report.installed == [] and report.installer == ""
    assert (
        "  ignored    nomkl  (conda package not known to be on PyPI under this name: "
        in "\n".join(lines)
    )
    assert any(line.startswith("  satisfied  xgboost-cpu  (xgboost-cpu ") for line in lines)
    assert "  ignored    mkl=2023.1  (conda package with no pip counterpart)" in lines
    assert "2 satisfied, 0 installed, 0 conflicts, 2 ignored" in lines[-1]
    assert not report.env_dir.exists()  # nothing was installed anywhere


def test_two_names_of_one_package_missing_only_the_preferred_one_is_installed(
    tmp_path, frozen_before
):
    """As MLflow's ``xgboost==X`` + ``xgboost-cpu==X`` in an image without xgboost: one
    distribution, never two over the same package folder (here psycopg2's two builds, as
    stand-in wheels, since the suite's virtualenv has xgboost-cpu)."""
    links = tmp_path / "links"
    build_wheel(links, "psycopg2", "2.9.9", "BUILD = 'source'\n")
    build_wheel(links, "psycopg2-binary", "2.9.9", "BUILD = 'binary'\n")
    folder = model(tmp_path / "m", "psycopg2==2.9.9\npsycopg2-binary==2.9.9\n")
    report = build(folder, settings(tmp_path, links, installer="uv"))
    assert [r.pin for r in report.installed] == ["psycopg2-binary==2.9.9"]
    assert (
        "  satisfied  psycopg2==2.9.9  (by psycopg2-binary==2.9.9, installed instead (the same "
        "package))"
    ) in report.lines()
    assert [p.name for p in report.env_dir.glob("psycopg2*.dist-info")] == [
        "psycopg2_binary-2.9.9.dist-info"
    ]
